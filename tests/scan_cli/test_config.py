"""`bastion scan --config FILE`: every upstream of a configuration, reached as the gateway
reaches it, with tool names under the upstream prefix and cross-server checks."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
from rich.console import Console

from bastion.commands.scan import Target, _reach
from bastion.commands.upstream_probe import connect_upstream
from bastion.config import load_config
from tests.scan_cli.support import (
    POISONED,
    SOC_EDR,
    by_name,
    codes,
    one_red_line,
    scan_cli,
    scan_json,
)

pytestmark = pytest.mark.timeout(40)


def write_config(tmp_path: Path, *, variant: str = "base", prefix: str | None = None,
                 extra: str = "") -> Path:
    """A configuration with upstreams `edr` (the clean demo server) and `notes` (poisoned)."""
    prefixes = f"    prefix: {json.dumps(prefix)}\n" if prefix is not None else ""
    path = tmp_path / "bastion.yaml"
    path.write_text(
        "mcpServers:\n"
        f"  edr:\n    command: {json.dumps(SOC_EDR[0])}\n    args: {json.dumps(SOC_EDR[1:])}\n"
        f"{prefixes}"
        f"  notes:\n    command: {json.dumps(POISONED[0])}\n    args: {json.dumps(POISONED[1:])}\n"
        f"    env: {{NOTES_VARIANT: {variant}}}\n{prefixes}{extra}")
    return path


def test_SCAN_two_upstreams_are_scanned_under_their_prefixes(tmp_path):
    config = write_config(tmp_path)
    code, document = scan_json("--config", config)
    assert code == 1 and document["errors"] == []
    items = by_name(document)
    assert {name for name, item in items.items() if item["kind"] == "tool"} == {
        "edr__list_hosts", "edr__isolate_host", "edr__release_host", "notes__list_notes",
        "notes__summarize_note", "notes__fetch_weather", "notes__paint_note"}
    assert {item["server"] for item in document["tools"]} == {"edr", "notes"}
    blocked = {name for name, item in items.items() if item["verdict"] == "block"}
    assert blocked == {"notes__summarize_note", "notes__fetch_weather", "notes__paint_note"}
    assert document["summary"] == {"blocked": 3, "warned": 0, "passed": len(items) - 3}

    text = scan_cli("--config", config)
    assert text.exit_code == 1
    assert "edr: 4 definitions, 0 blocked" in text.stdout
    assert "notes: 6 definitions, 3 blocked" in text.stdout


def test_E_TP02_reference_to_another_upstreams_tool_is_found(tmp_path):
    code, document = scan_json("--config", write_config(tmp_path, variant="shadow"))
    assert code == 1
    items = by_name(document)
    assert "E-TP02.reference" in codes(items["notes__log_host"])
    # Under their prefixes the two `isolate_host` tools do not collide: no false alarm.
    assert items["notes__isolate_host"]["verdict"] == "pass"
    assert items["edr__isolate_host"]["verdict"] == "pass"


def test_E_TP02_collision_without_prefixes_is_blocked_on_the_later_upstream(tmp_path):
    code, document = scan_json("--config", write_config(tmp_path, variant="shadow", prefix=""))
    assert code == 1
    isolate = [item for item in document["tools"] if item["name"] == "isolate_host"]
    assert [(item["server"], item["verdict"]) for item in isolate] == [
        ("edr", "pass"), ("notes", "block")]
    assert codes(isolate[1]) == {"E-TP02.collision"}


def test_SCAN_an_unreachable_upstream_is_reported_and_the_others_still_scanned(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, extra=f"  dead:\n    url: http://127.0.0.1:{port}/mcp\n"
                                          "    connect_timeout: 2\n")
    result = scan_cli("--config", config)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot scan dead: ") and "cannot connect" in line
    assert "notes: 6 definitions, 3 blocked" in result.stdout
    assert "; 1 server not reached" in result.stdout
    code, document = scan_json("--config", config)
    assert code == 2 and [e["server"] for e in document["errors"]] == ["dead"]


@pytest.mark.parametrize(("content", "expected"), [
    ("mcpServers: [1, 2]\n", "mcpServers"),
    ("mcpServers:\n  a:\n    command: x\n    enabled: false\n", "no enabled upstream"),
    ("mcpServers: {\n", "YAML"),
])
def test_SCAN_a_bad_configuration_is_one_red_line_exit_2(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = scan_cli("--config", path)
    assert result.exit_code == 2
    assert expected in one_red_line(result)


def test_SCAN_a_missing_configuration_is_one_red_line_exit_2(tmp_path):
    result = scan_cli("--config", tmp_path / "absent.yaml")
    assert result.exit_code == 2
    assert "absent.yaml" in one_red_line(result)


def test_SCAN_progress_is_shown_on_a_terminal_while_connecting(tmp_path):
    config = load_config(write_config(tmp_path))
    screen = io.StringIO()
    errors = Console(file=screen, force_terminal=True, width=100)
    targets = [Target(u.name, lambda u=u: connect_upstream(u), 20, u.effective_prefix)
               for u in config.upstreams]
    sources, failures = _reach(targets, errors)
    assert failures == [] and [s.server for s in sources] == ["edr", "notes"]
    assert "connecting to 2 servers" in screen.getvalue()
