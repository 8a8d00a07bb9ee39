"""A server whose stdin and stdout are regular files answers everything it was sent."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.schema_check import validate_message

MODERN = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
          "io.modelcontextprotocol/clientCapabilities": {}}


def test_requests_piped_from_a_file_all_get_answers(tmp_path):
    requests = tmp_path / "requests.jsonl"
    lines = [
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                      "params": {"_meta": MODERN}}),
        b"this is not json",
        orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"_meta": MODERN, "name": "test_tool_with_progress",
                                 "arguments": {}}}),
    ]
    requests.write_bytes(b"\n".join(lines) + b"\n")
    output = tmp_path / "out.jsonl"
    with requests.open("rb") as stdin, output.open("wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "bastion.testing.everything"],
                              stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    replies = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    by_id = {reply.get("id"): reply for reply in replies}
    assert by_id[None]["error"]["code"] == -32700
    assert by_id[1]["result"]["supportedVersions"] == ["2026-07-28"]
    assert by_id[2]["result"]["content"][0]["type"] == "text"
    for reply in replies:
        validate_message(reply, "2026-07-28")
