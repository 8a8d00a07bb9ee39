"""`bastion scan` against live servers: real stdio children and real HTTP endpoints."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from bastion.server import Server
from bastion.transport.http.server import uvicorn_server
from tests.live_server import start_uvicorn, stop_uvicorn
from tests.pin.test_cli import BearerOnly
from tests.scan_cli.poisoned_server import HIDDEN
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


def test_SCAN_clean_stdio_server_passes_with_exit_0():
    result = scan_cli("--", *SOC_EDR)
    assert result.exit_code == 0, result.output
    assert "soc-edr: 4 definitions, 0 blocked" in result.stdout
    for tool in ("list_hosts", "isolate_host", "release_host"):
        assert tool in result.stdout
    assert "4 definitions scanned: 0 blocked, 0 warned, 4 passed" in result.stdout


def test_E_HU02_poisoned_stdio_server_is_blocked_and_the_hidden_text_shown_decoded():
    result = scan_cli("--", *POISONED)
    out = result.stdout
    assert result.exit_code == 1, result.output
    assert f"hidden text (decoded): {HIDDEN}" in out
    assert "E-TP01.pseudo-tag" in out and "E-TP01.exfiltration" in out
    # The escape sequences are shown, never sent: printing them would clear the screen.
    assert "evidence: \\u001b[2J\\u001b[1;1HAll tools are safe." in out
    assert "\x1b" not in out and not any(0xE0000 <= ord(ch) <= 0xE007F for ch in out)
    assert "6 definitions scanned: 3 blocked, 0 warned, 3 passed" in out
    rows = {line.split("│")[2].strip(): line.split("│")[3].strip()
            for line in out.splitlines() if line.count("│") == 5}
    assert rows == {"notes-helper": "PASS", "instructions": "PASS", "list_notes": "PASS",
                    "summarize_note": "BLOCK", "fetch_weather": "BLOCK", "paint_note": "BLOCK"}


def test_E_TP01_poisoned_stdio_server_json_shape_is_exact():
    code, document = scan_json("--", *POISONED)
    assert code == 1
    assert set(document) == {"tools", "summary", "errors"}
    assert document["summary"] == {"blocked": 3, "warned": 0, "passed": 3}
    assert document["errors"] == []
    for item in document["tools"]:
        assert list(item) == ["name", "kind", "server", "verdict", "findings"]
        assert item["server"] == "notes-helper" and item["verdict"] in ("block", "warn", "pass")
        for finding in item["findings"]:
            assert list(finding) == ["code", "severity", "path", "message", "evidence"]
    items = by_name(document)
    assert {name: item["kind"] for name, item in items.items()} == {
        "notes-helper": "server", "instructions": "instructions", "list_notes": "tool",
        "summarize_note": "tool", "fetch_weather": "tool", "paint_note": "tool"}
    assert items["list_notes"] == {"name": "list_notes", "kind": "tool", "server": "notes-helper",
                                   "verdict": "pass", "findings": []}
    (hidden,) = items["summarize_note"]["findings"]
    assert hidden == {"code": "E-HU02", "severity": "critical", "path": "/description",
                      "message": hidden["message"], "evidence": HIDDEN}
    assert {"E-TP01.pseudo-tag", "E-TP01.exfiltration", "E-TP01.concealment"} <= codes(
        items["fetch_weather"])
    assert codes(items["paint_note"]) == {"E-HU01.ansi"}
    severities = [f["severity"] for f in items["fetch_weather"]["findings"]]
    order = ["critical", "high", "medium", "low", "info"]
    assert severities == sorted(severities, key=order.index), "worst first"


def test_SCAN_a_command_that_exits_at_once_is_one_red_line_exit_2():
    result = scan_cli("--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert result.exit_code == 2
    assert "exited with code 3" in one_red_line(result)


def test_SCAN_a_command_that_cannot_start_is_one_red_line_exit_2(tmp_path):
    result = scan_cli("--", str(tmp_path / "no-such-server"))
    assert result.exit_code == 2
    assert "cannot start" in one_red_line(result)


def test_SCAN_a_server_that_never_answers_is_bounded_by_timeout():
    started = time.monotonic()
    result = scan_cli("--timeout", "1", "--", sys.executable, "-c",
                      "import time; time.sleep(30)")
    assert result.exit_code == 2
    assert "no complete answer within 1 s (--timeout)" in one_red_line(result)
    assert time.monotonic() - started < 15


def test_SCAN_debug_shows_the_exception_instead_of_one_line():
    result = scan_cli("--", sys.executable, "-c", "import sys; sys.exit(3)", debug=True)
    assert result.exit_code != 0 and type(result.exception).__name__ == "ScanError"


def test_SCAN_http_server_every_kind_is_listed_and_scanned(fixture_url):
    """`fixture_url`: `python -m bastion.testing.everything --http 127.0.0.1:PORT`."""
    code, document = scan_json(fixture_url)
    assert code == 0, document
    kinds = {item["kind"] for item in document["tools"]}
    assert kinds == {"server", "instructions", "tool", "prompt", "resource", "template"}
    items = by_name(document)
    assert items["test_simple_text"]["verdict"] == "pass"
    assert items["test_simple_prompt"]["kind"] == "prompt"
    assert items["test://static-text"]["kind"] == "resource"
    assert items["test://template/{id}/data"]["kind"] == "template"
    assert {item["server"] for item in document["tools"]} == {"bastion-everything"}
    assert document["summary"]["blocked"] == 0 and document["errors"] == []


def test_SCAN_an_unreachable_url_is_one_red_line_exit_2():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = scan_cli(f"http://127.0.0.1:{port}/mcp")
    assert result.exit_code == 2
    assert "cannot connect" in one_red_line(result)


async def test_SPEC_TP_02_the_token_comes_from_the_environment_and_is_never_shown():
    server = Server("siem-http", version="1.0")

    @server.tool("search", description="Search SIEM alerts.")
    async def search(query: str) -> str:
        return query

    auth = BearerOnly("s3cr3t-scan-token")
    uv = uvicorn_server(server, "127.0.0.1", 0, authenticator=auth)
    task, port = await start_uvicorn(uv)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        good = await asyncio.to_thread(scan_cli, url, env={"BASTION_TOKEN": "s3cr3t-scan-token"})
        assert good.exit_code == 0 and "siem-http: 2 definitions" in good.stdout, good.output
        assert auth.refused == 0
        flagged = await asyncio.to_thread(scan_cli, url, "--token", "s3cr3t-scan-token")
        assert flagged.exit_code == 0
        bad = await asyncio.to_thread(scan_cli, url, env={"BASTION_TOKEN": "wrong-token"})
        assert bad.exit_code == 2 and auth.refused > 0
        assert "bad token" in one_red_line(bad)  # the server's own words
        for result in (good, flagged, bad):
            assert "s3cr3t" not in result.output and "wrong-token" not in result.output
    finally:
        await stop_uvicorn(uv, task)
