"""`bastion scan --tools-file F`: good and bad files, the SARIF form, usage errors, and how
text from a server is made safe to print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.commands.scan import MAX_FILE_BYTES, MAX_ITEMS, shown
from bastion.guard.scan import CODES
from tests.scan_cli.poisoned_server import HIDDEN, as_tags
from tests.scan_cli.support import by_name, codes, one_red_line, scan_cli, scan_json

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
CLEAN = {"name": "get_forecast", "description": "The weather forecast for a city.",
         "inputSchema": SCHEMA}
POISONED = [
    CLEAN,
    {"name": "summarize_page", "description": "Summarize a web page." + as_tags(HIDDEN),
     "inputSchema": SCHEMA},
    # A zero-width space in the name and a right-to-left override in the description.
    {"name": "send\u200bmail", "description": "Send a mail to \u202eexample.com@finance.",
     "inputSchema": SCHEMA},
]


def write(tmp_path: Path, content: object, name: str = "tools.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_SCAN_a_clean_tools_file_passes_in_both_shapes(tmp_path):
    listed = scan_cli("--tools-file", write(tmp_path, [CLEAN]))
    assert listed.exit_code == 0, listed.output
    assert "tools.json: 1 definition, 0 blocked" in listed.stdout
    code, document = scan_json("--tools-file", write(tmp_path, {
        "tools": [CLEAN], "prompts": [{"name": "daily", "description": "A daily summary."}],
        "resourceTemplates": [{"uriTemplate": "weather://{city}", "name": "weather"}],
        "resources": [{"uri": "weather://paris", "name": "paris"}],
        "instructions": "Forecasts for European cities.", "nextCursor": None}))
    assert code == 0
    assert [(i["kind"], i["name"], i["verdict"]) for i in document["tools"]] == [
        ("instructions", "instructions", "pass"), ("tool", "get_forecast", "pass"),
        ("prompt", "daily", "pass"), ("resource", "weather://paris", "pass"),
        ("template", "weather://{city}", "pass")]


def test_E_HU01_hidden_characters_are_shown_as_escapes_never_raw(tmp_path):
    result = scan_cli("--tools-file", write(tmp_path, POISONED))
    out = result.stdout
    assert result.exit_code == 1
    assert f"hidden text (decoded): {HIDDEN}" in out
    assert "send\\u200bmail" in out and "\\u202eexample.com@finance" in out
    assert not any(ch in out for ch in "\u200b\u202e\x1b")
    assert not any(0xE0000 <= ord(ch) <= 0xE007F for ch in out)
    code, document = scan_json("--tools-file", write(tmp_path, POISONED))
    items = by_name(document)
    assert code == 1 and items["get_forecast"]["verdict"] == "pass"
    assert codes(items["summarize_page"]) == {"E-HU02"}
    assert {"E-HU01.zero-width", "E-HU01.bidi"} <= codes(items["send\u200bmail"])


def test_E_LIM_items_that_are_not_objects_are_blocked_not_a_crash(tmp_path):
    code, document = scan_json("--tools-file", write(tmp_path, [CLEAN, 42, "tool", None, []]))
    assert code == 1
    verdicts = [(item["name"], item["verdict"]) for item in document["tools"]]
    assert verdicts == [("get_forecast", "pass"), ("#1", "block"), ("#2", "block"),
                        ("#3", "block"), ("#4", "block")]
    assert all(codes(item) == {"E-LIM.type"} for item in document["tools"][1:])


def test_E_LIM_a_list_longer_than_the_limit_is_cut_and_blocked(tmp_path):
    code, document = scan_json("--tools-file", write(tmp_path, [0] * (MAX_ITEMS + 1)))
    assert code == 1 and len(document["tools"]) == MAX_ITEMS + 1
    last = document["tools"][-1]
    assert codes(last) == {"E-LIM.size"} and last["verdict"] == "block"
    assert f"lists {MAX_ITEMS + 1} tools" in last["findings"][0]["message"]


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "is not JSON"),
    ("", "is not JSON"),
    ("42", "holds a number"),
    ('"tools"', "holds a string"),
    ('{"name": "x"}', 'holds an object without "tools"'),
    ('{"tools": {"name": "x"}}', '"tools" in the tools file'),
    ('{"tools": [], "prompts": 3}', '"prompts" in the tools file'),
    ('{"tools": [], "instructions": ["x"]}', '"instructions" in the tools file'),
    ("\xff\xfe[]", "is not JSON"),
])
def test_SCAN_a_bad_tools_file_is_one_red_line_exit_2(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("latin-1"))
    result = scan_cli("--tools-file", path)
    assert result.exit_code == 2
    assert expected in one_red_line(result)


def test_SCAN_a_missing_or_unreadable_or_huge_tools_file_is_one_red_line(tmp_path):
    missing = scan_cli("--tools-file", tmp_path / "absent.json")
    assert missing.exit_code == 2 and "No such file" in one_red_line(missing)
    folder = scan_cli("--tools-file", tmp_path)
    assert folder.exit_code == 2 and "Is a directory" in one_red_line(folder)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (MAX_FILE_BYTES + 1))
    too_big = scan_cli("--tools-file", huge)
    assert too_big.exit_code == 2 and "is over 16 MiB" in one_red_line(too_big)


def test_SCAN_sarif_has_the_2_1_0_structure(tmp_path):
    path = write(tmp_path, POISONED)
    result = scan_cli("--format", "sarif", "--tools-file", path)
    assert result.exit_code == 1 and result.stdout.isascii()
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "bastion-scan" and isinstance(driver["version"], str)
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) and rule_ids == sorted(rule_ids)
    for rule in driver["rules"]:
        family = rule["id"].split(".")[0]
        assert rule["shortDescription"]["text"].startswith(CODES[family].title)
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert "security" in rule["properties"]["tags"]
        assert 0 <= float(rule["properties"]["security-severity"]) <= 10
    assert run["invocations"] == [{"executionSuccessful": True}]
    levels = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
              "info": "note"}
    seen = set()
    for found in run["results"]:
        assert driver["rules"][found["ruleIndex"]]["id"] == found["ruleId"]
        assert found["level"] == levels[found["properties"]["severity"]]
        assert found["message"]["text"]
        (location,) = found["locations"]
        (logical,) = location["logicalLocations"]
        assert logical["fullyQualifiedName"] == f"tools.json/{logical['name']}"
        assert location["physicalLocation"]["artifactLocation"]["uri"] == path.as_uri()
        assert found["properties"]["pointer"].startswith("/")
        seen.add((logical["name"], found["ruleId"]))
    assert ("summarize_page", "E-HU02") in seen and ("send\u200bmail", "E-HU01.bidi") in seen
    assert not any(name == "get_forecast" for name, _ in seen)


def test_SCAN_sarif_of_a_clean_file_has_no_results(tmp_path):
    result = scan_cli("--format", "sarif", "--tools-file", write(tmp_path, [CLEAN]))
    assert result.exit_code == 0
    (run,) = json.loads(result.stdout)["runs"]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []


@pytest.mark.parametrize("args", [
    [],
    ["http://127.0.0.1:1/mcp", "--tools-file", "x.json"],
    ["--config", "a.yaml", "--tools-file", "x.json"],
    ["http://127.0.0.1:1/mcp", "extra"],
    ["--era", "ancient", "--", "true"],
    ["--format", "xml", "--tools-file", "x.json"],
    ["--timeout", "0", "--", "true"],
    ["http://", "--timeout", "1"],
])
def test_SCAN_bad_usage_exits_2_without_a_traceback(args):
    result = scan_cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""


def test_SCAN_shown_makes_server_text_safe_for_a_terminal():
    assert shown("plain text") == "plain text"
    assert shown("a\x1b[2Jb\x9bc") == "a\\u001b[2Jb\\u009bc"
    assert shown("x\u200by\u202ez\u2066") == "x\\u200by\\u202ez\\u2066"
    assert shown("line\nnext\ttab\r") == "line\\nnext\\ttab\\u000d"
    assert shown(as_tags("hi")) == "\\U000e0068\\U000e0069"
    assert shown("abcdef", limit=3) == "abc…"
    assert shown(42) == "42"
