"""The fixture served the real way, `python -m bastion.testing.everything --http HOST:PORT`
(uvicorn, httptools, uvloop), against real peers: the official SDK client (mcp 2.3.0) in each
of its modes, and the official conformance suite for both requirement sets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mcp.types as types
import pytest
from mcp import Client

from tests.http.conftest import CAPS, LEGACY, META, MODERN
from tests.live_server import free_port
from tests.schema_check import validate_message

REPO = Path(__file__).resolve().parents[2]
NODE_TOOLS = REPO / "tools" / "mcp-node"
CONFORMANCE = NODE_TOOLS / "node_modules" / ".bin" / "conformance"


@pytest.fixture(scope="module")
def fixture_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.testing.everything", "--http", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                detail = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(detail) from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.returncode in (0, -15), process.returncode


@pytest.mark.timeout(30)
async def test_module_entry_point_serves_both_eras(fixture_url):
    async with httpx.AsyncClient() as http:
        discover = await http.post(fixture_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "server/discover",
            "params": {"_meta": {META: MODERN, CAPS: {}}}},
            headers={"mcp-protocol-version": MODERN, "mcp-method": "server/discover",
                     "accept": "application/json, text/event-stream"})
        assert discover.status_code == 200
        validate_message(discover.json(), MODERN)
        initialize = await http.post(fixture_url, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}},
            headers={"accept": "application/json, text/event-stream"})
        assert initialize.status_code == 200 and initialize.headers["mcp-session-id"]
        validate_message(initialize.json(), LEGACY)
        ended = await http.delete(fixture_url, headers={
            "mcp-session-id": initialize.headers["mcp-session-id"]})
        assert ended.status_code == 204


async def sampling(context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", model="test-model", stop_reason="endTurn",
                                     content=types.TextContent(type="text", text="Paris"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "version"), [
    ("legacy", LEGACY), (MODERN, MODERN), ("auto", MODERN),
])
async def test_sdk_client(fixture_url, mode, version):
    async with Client(fixture_url, mode=mode, sampling_callback=sampling) as client:
        assert client.protocol_version == version
        listing = await client.list_tools()
        assert "test_simple_text" in {tool.name for tool in listing.tools}
        result = await client.call_tool("test_simple_text")
        assert [b.text for b in result.content] == ["This is a simple text response for testing."]

        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        await client.call_tool("test_tool_with_progress", progress_callback=on_progress)
        assert progress == [0, 50, 100]
        sampled = await client.call_tool("test_sampling", {"prompt": "Capital of France?"})
        assert sampled.content[0].text == "LLM response: Paris"  # legacy: a server request;
        # modern: an input_required round trip the SDK answers with the same callback.
        read = await client.read_resource("test://static-text")
        assert read.contents[0].text == "This is the content of the static text resource."


def conformance_available() -> bool:
    return CONFORMANCE.exists() and shutil.which("node", path=str(CONFORMANCE.parent)) is not None


@pytest.mark.skipif(not conformance_available(), reason="tools/mcp-node is not installed")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("requirements", [LEGACY, MODERN])
def test_official_conformance_suite(fixture_url, requirements, tmp_path):
    env = {**os.environ, "PATH": f"{CONFORMANCE.parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        ["npx", "--no-install", "conformance", "server", "--url", fixture_url,
         "--requirements", requirements, "-o", str(tmp_path)],
        cwd=NODE_TOOLS, env=env, capture_output=True, text=True, timeout=280,
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY ==="):]
    assert run.returncode == 0, summary or run.stderr
    assert "Total:" in summary


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "version"), [
    ("legacy", LEGACY), ("modern", MODERN), ("auto", MODERN),
])
async def test_bastion_client(fixture_url, mode, version):
    from bastion.client.http import connect_http
    from bastion.session.client_side import ClientHandlers

    async def answer_sampling(params: dict) -> dict:
        return {"role": "assistant", "model": "m", "content": {"type": "text", "text": "Paris"}}

    handlers = ClientHandlers(sampling=answer_sampling)
    async with connect_http(fixture_url, mode=mode, handlers=handlers) as client:
        assert client.protocol_version == version
        assert "test_simple_text" in {tool["name"] for tool in await client.list_tools()}
        simple = await client.call_tool("test_simple_text")
        assert simple["content"][0]["text"] == "This is a simple text response for testing."
        sampled = await client.call_tool("test_sampling", {"prompt": "Capital of France?"})
        assert sampled["content"][0]["text"] == "LLM response: Paris"
        # A non-ASCII argument travels base64-encoded in Mcp-Param-Region (modern).
        mirrored = await client.call_tool("test_header_tool", {"region": "Hello, 世界"})
        assert mirrored["content"][0]["text"].startswith("region=Hello, 世界")
