"""Bastion's HTTP client (`connect_http`) against real and deliberately broken HTTP servers.

Real peer: an official SDK (`mcp` 2.3.0) `MCPServer` run as a child process over Streamable
HTTP (SSE or JSON responses, stateful or stateless) and over the 2024-11-05 HTTP+SSE
transport. It is dual-era: `legacy` must negotiate 2025-11-25, `modern` and `auto` 2026-07-28.

Broken peers: `RawServer`, a tiny asyncio HTTP/1.1 server in this file whose handlers write
exactly the bytes a test needs: silence, junk SSE, an expired session, invalid tool headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bastion.client import ClientHandlers, connect_http
from bastion.protocol.errors import MCPError
from bastion.session.errors import EraDetectionError, RequestTimeout
from bastion.transport.http.client import StreamableHTTPChannel
from bastion.transport.http.sse_parser import SSEDecoder, SSEEventTooLarge, SSELineTooLong
from bastion.transport.http.wire import http_failure
from tests.live_server import free_port

pytestmark = pytest.mark.timeout(60)

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
MODES = {"legacy": LEGACY, "modern": MODERN, "auto": MODERN}


# -- the SDK peer ------------------------------------------------------------------------------

PEER_SOURCE = r'''
"""An SDK (mcp 2.3.0) MCPServer over HTTP: argv PORT TRANSPORT [json] [stateless]."""

import sys
from typing import Annotated

from mcp.server.mcpserver import (
    Context, Elicit, ElicitationResult, ListRoots, MCPServer, Resolve, Sample,
)
from mcp.types import CreateMessageResult, ListRootsResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field

srv = MCPServer("http-peer")


@srv.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@srv.tool()
async def slow_count(steps: int, ctx: Context) -> str:
    """Reports progress once per step."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
    return f"counted {steps}"


class Contact(BaseModel):
    username: str


def ask_contact() -> Elicit[Contact]:
    return Elicit("Who are you?", Contact)


@srv.tool()
def whoami(contact: Annotated[ElicitationResult[Contact], Resolve(ask_contact)]) -> str:
    """Elicits a username."""
    if contact.action == "accept":
        return f"accept:{contact.data.username}"
    return contact.action


def ask_llm(question: str) -> Sample:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=question))
    return Sample([message], max_tokens=50)


@srv.tool()
def ask(question: str, answer: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    """Samples the client's LLM."""
    return f"LLM said: {answer.content.text}"


def get_roots() -> ListRoots:
    return ListRoots()


@srv.tool()
def client_roots(roots: Annotated[ListRootsResult, Resolve(get_roots)]) -> str:
    """Lists the client's roots."""
    return ",".join(str(root.uri) for root in roots.roots)


@srv.tool()
def regional(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
             query: str) -> str:
    """Mirrors its region argument into Mcp-Param-Region (modern)."""
    return f"{region}|{query}"


@srv.resource("peer://readme", mime_type="text/plain", description="A static text")
def readme() -> str:
    return "peer readme"


@srv.prompt()
def greet(name: str) -> str:
    """Greets someone."""
    return f"Hello, {name}!"


if __name__ == "__main__":
    port, transport, flags = int(sys.argv[1]), sys.argv[2], set(sys.argv[3:])
    if transport == "sse":
        srv.run(transport="sse", host="127.0.0.1", port=port)
    else:
        srv.run(transport="streamable-http", host="127.0.0.1", port=port,
                json_response="json" in flags, stateless_http="stateless" in flags)
'''

#: name -> the peer's argv after the port.
PEER_CONFIGS = {
    "sse": ["streamable-http"],
    "json": ["streamable-http", "json"],
    "stateless-json": ["streamable-http", "json", "stateless"],
    "http+sse": ["sse"],
}


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SDK peer exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the SDK peer did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def sdk_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Starts each SDK peer configuration once per module; gives its URL."""
    script = tmp_path_factory.mktemp("http_peer") / "http_peer.py"
    script.write_text(PEER_SOURCE, encoding="utf-8")
    running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def start(config: str) -> str:
        if config not in running:
            port = free_port()
            log = Path(script.parent / f"{config}.log").open("wb")  # noqa: SIM115
            process = subprocess.Popen(
                [sys.executable, str(script), str(port), *PEER_CONFIGS[config]],
                stdout=log, stderr=subprocess.STDOUT,
            )
            wait_listening(port, process)
            path = "/sse" if config == "http+sse" else "/mcp"
            running[config] = (process, f"http://127.0.0.1:{port}{path}")
        return running[config][1]

    yield start
    for process, _url in running.values():
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def of(self, kind: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == kind]


def handlers_for(recorder: Recorder) -> ClientHandlers:
    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("sampling", params))
        return {"role": "assistant", "content": {"type": "text", "text": "Paris"},
                "model": "test-model", "stopReason": "endTurn"}

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("elicitation", params))
        return {"action": "accept", "content": {"username": "ada"}}

    async def roots() -> list[dict[str, Any]]:
        recorder.calls.append(("roots", None))
        return [{"uri": "file:///work/project", "name": "project"}]

    return ClientHandlers(sampling=sampling, elicitation=elicitation, roots=roots)


def texts(result: dict[str, Any]) -> list[str]:
    return [block["text"] for block in result.get("content", []) if block.get("type") == "text"]


def channel_of(client: Any) -> StreamableHTTPChannel:
    return client.connection.session.channel


# -- against the SDK peer ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("config", ["sse", "json", "stateless-json"])
async def test_era_tools_resources_prompts(sdk_peers: Callable[[str], str], config: str,
                                           mode: str):
    async with connect_http(sdk_peers(config), mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == MODES[mode]
        assert client.era.value == ("legacy" if mode == "legacy" else "modern")
        assert client.server.server_info is not None
        assert client.server.server_info["name"] == "http-peer"
        channel = channel_of(client)
        if mode == "legacy" and config != "stateless-json":
            assert channel.session_id is not None
        else:
            assert channel.session_id is None  # modern is sessionless; stateless mints none

        tools = {tool["name"] for tool in await client.list_tools()}
        assert {"add", "slow_count", "whoami", "ask", "client_roots", "regional"} <= tools
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert result["isError"] is False
        assert result["structuredContent"] == {"result": 42}
        assert (result.get("resultType") == "complete") == (mode != "legacy")

        resources = await client.list_resources()
        assert [r["uri"] for r in resources] == ["peer://readme"]
        read = await client.read_resource("peer://readme")
        assert read["contents"][0]["text"] == "peer readme"
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert prompt["messages"][0]["content"]["text"] == "Hello, Ada!"


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_progress_over_sse(sdk_peers: Callable[[str], str], mode: str):
    seen: list[tuple[float, float | None, str | None]] = []
    async with connect_http(sdk_peers("sse"), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            "slow_count", {"steps": 3},
            on_progress=lambda value, total, message: seen.append((value, total, message)),
        )
    assert texts(result) == ["counted 3"]
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.mark.parametrize(("config", "mode"), [
    ("sse", "legacy"),          # server requests on the POST's SSE stream, answered by POST
    ("sse", "modern"),          # input_required rounds (MRTR)
    ("json", "modern"),         # MRTR needs no stream at all
])
async def test_elicitation_sampling_roots(sdk_peers: Callable[[str], str], config: str,
                                          mode: str):
    recorder = Recorder()
    async with connect_http(sdk_peers(config), mode=mode,  # type: ignore[arg-type]
                            handlers=handlers_for(recorder)) as client:
        assert texts(await client.call_tool("whoami", {})) == ["accept:ada"]
        assert texts(await client.call_tool("ask", {"question": "Capital of France?"})) == [
            "LLM said: Paris"]
        assert texts(await client.call_tool("client_roots", {})) == ["file:///work/project"]
    assert recorder.of("elicitation")[0]["message"] == "Who are you?"
    sampled = recorder.of("sampling")[0]
    assert sampled["messages"][0]["content"]["text"] == "Capital of France?"
    assert len(recorder.of("roots")) == 1


async def test_legacy_session_is_deleted_on_close(sdk_peers: Callable[[str], str]):
    url = sdk_peers("sse")
    async with connect_http(url, mode="legacy") as client:
        session_id = channel_of(client).session_id
        assert session_id
    # The server forgot the session: the same id now gets 404.
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers={
        "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY,
        "Accept": "application/json, text/event-stream",
    }) as response:
        assert response.status == 404


async def test_modern_param_headers_and_header_mismatch_relist(
        sdk_peers: Callable[[str], str], caplog: pytest.LogCaptureFixture):
    async with connect_http(sdk_peers("sse"), mode="modern") as client:
        await client.list_tools()
        channel = channel_of(client)
        assert channel.tool_headers["regional"] == {"Region": ("region",)}
        # The SDK checks Mcp-Param-Region against the body (base64 for non-ASCII values).
        result = await client.call_tool("regional", {"region": "Zürich, 世界", "query": "q"})
        assert texts(result) == ["Zürich, 世界|q"]
        # A client that has not (or no longer) seen the schema sends no Mcp-Param header:
        # the server answers -32020, and the client re-lists the tools and retries once.
        channel.tool_headers.clear()
        with caplog.at_level(logging.INFO, logger="bastion.transport.http.client"):
            result = await client.call_tool("regional", {"region": "eu-west", "query": "x"})
        assert texts(result) == ["eu-west|x"]
        assert "re-listing tools" in caplog.text
        assert channel.tool_headers["regional"] == {"Region": ("region",)}


async def test_http_sse_fallback_2024_11_05(sdk_peers: Callable[[str], str]):
    recorder = Recorder()
    async with connect_http(sdk_peers("http+sse"), mode="auto",
                            handlers=handlers_for(recorder)) as client:
        channel = channel_of(client)
        assert channel.sse_endpoint is not None and "/messages/" in channel.sse_endpoint
        assert client.era.value == "legacy"
        assert (await client.call_tool("add", {"a": 1, "b": 2}))["structuredContent"] == {
            "result": 3}
        assert texts(await client.call_tool("whoami", {})) == ["accept:ada"]
    assert recorder.of("elicitation")


async def test_modern_mode_refuses_a_legacy_only_endpoint(sdk_peers: Callable[[str], str]):
    with pytest.raises(EraDetectionError, match="does not speak the modern protocol") as caught:
        async with connect_http(sdk_peers("http+sse"), mode="modern", probe_timeout=2.0):
            pass
    assert "HTTP 405" in str(caught.value)  # the reason is not lost


# -- a raw HTTP server for the bad cases ---------------------------------------------------------


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def rpc_method(self) -> str | None:
        body = self.json
        return body.get("method") if isinstance(body, dict) else None


@dataclass
class Responder:
    """Writes one response; `stream()` leaves the connection to the handler, then closes it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    close: bool = False
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                   content_type: str = "application/json") -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        if body:
            head.append(f"Content-Type: {content_type}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()

    async def json(self, message: Any, status: int = 200,
                   headers: dict[str, str] | None = None) -> None:
        await self.send(status, orjson.dumps(message), headers)

    async def stream(self, headers: dict[str, str] | None = None) -> None:
        self.close = True
        head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def hang(self) -> None:
        """Never answer; return when the client closes the connection."""
        self.close = True
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(1024):
                pass
        self.disconnected.set()


Handler = Callable[[RawRequest, Responder], Awaitable[None]]


class RawServer:
    """A minimal HTTP/1.1 server on loopback whose handler decides every byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[RawRequest] = []
        self.responders: list[Responder] = []
        self._server: asyncio.Server | None = None
        self._url = ""
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return self._url

    def of(self, rpc_method: str) -> list[RawRequest]:
        return [r for r in self.requests if r.rpc_method == rpc_method]

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                responder = Responder(reader, writer)
                self.responders.append(responder)
                await self.handler(request, responder)
                if responder.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawRequest(method, path, headers, body)


async def hang_forever(request: RawRequest, respond: Responder) -> None:
    await respond.hang()


def result_of(request: RawRequest, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request.json["id"], "result": result}


INIT_RESULT = {"protocolVersion": LEGACY, "capabilities": {"tools": {}},
               "serverInfo": {"name": "raw", "version": "1"}}
DISCOVER_RESULT = {"resultType": "complete", "supportedVersions": [MODERN],
                   "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "private",
                   "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "raw",
                                                                     "version": "1"}}}


def legacy_server(on_call: Handler, *, session: str = "s-1",
                  tools: list[dict[str, Any]] | None = None) -> Handler:
    """A legacy server: plain 400 to discover, JSON initialize, `on_call` for tools/call."""

    async def handle(request: RawRequest, respond: Responder) -> None:
        method = request.rpc_method
        if request.method == "GET":
            await respond.send(405)
        elif request.method == "DELETE":
            await respond.send(200)
        elif method == "server/discover":
            await respond.send(400, b"Bad Request: no session", content_type="text/plain")
        elif method == "initialize":
            await respond.json(result_of(request, INIT_RESULT), headers={"Mcp-Session-Id": session})
        elif method is not None and "id" not in request.json:
            await respond.send(202)
        elif method == "tools/list":
            await respond.json(result_of(request, {"tools": tools or []}))
        else:
            await on_call(request, respond)

    return handle


def modern_server(on_call: Handler, *, tools: list[dict[str, Any]] | None = None) -> Handler:
    """A modern server: discover, tools/list, and `on_call` for tools/call."""

    async def handle(request: RawRequest, respond: Responder) -> None:
        method = request.rpc_method
        if request.method != "POST":
            await respond.send(405)
        elif method == "server/discover":
            await respond.json(result_of(request, DISCOVER_RESULT))
        elif method == "tools/list":
            await respond.json(result_of(request, {"resultType": "complete",
                                                   "tools": tools or []}))
        else:
            await on_call(request, respond)

    return handle


def complete(text: str) -> dict[str, Any]:
    return {"resultType": "complete", "content": [{"type": "text", "text": text}],
            "isError": False}


# -- timeouts ------------------------------------------------------------------------------------


async def test_silent_server_read_timeout_names_the_cause():
    async with RawServer(hang_forever) as server:
        with pytest.raises(MCPError) as caught:
            async with connect_http(server.url, probe_timeout=0.3, read_timeout=0.8):
                pass
    message = str(caught.value)
    assert "initialize" in message and "read timeout" in message and "0.8 s" in message
    failure = http_failure(caught.value)
    assert failure is not None and failure["url"] == server.url
    # The probe came first (modern), then the legacy handshake.
    assert [r.rpc_method for r in server.requests][:2] == ["server/discover", "initialize"]


async def test_unreachable_server_names_the_cause():
    port = free_port()  # nothing listens there
    with pytest.raises(MCPError, match="cannot connect"):
        async with connect_http(f"http://127.0.0.1:{port}/mcp", probe_timeout=1.0):
            pass


async def test_unauthorized_names_the_status_and_the_challenge():
    challenge = 'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource"'

    async def unauthorized(request: RawRequest, respond: Responder) -> None:
        await respond.send(401, b"no token", headers={"WWW-Authenticate": challenge},
                           content_type="text/plain")

    async with RawServer(unauthorized) as server:
        with pytest.raises(MCPError, match="HTTP 401") as caught:
            async with connect_http(server.url):
                pass
        failure = http_failure(caught.value)
        assert failure is not None
        assert failure["status"] == 401 and failure["wwwAuthenticate"] == challenge
        with pytest.raises(EraDetectionError, match="HTTP 401"):
            async with connect_http(server.url, mode="modern"):
                pass


async def test_legacy_request_timeout_cancels_and_connection_survives():
    async with (
        RawServer(legacy_server(hang_forever)) as server,
        connect_http(server.url, request_timeout=5.0) as client,
    ):
        assert client.era.value == "legacy"
        with pytest.raises(RequestTimeout, match=r"tools/call got no response within 0\.5 s"):
            await client.call_tool("stuck", {}, timeout=0.5)
        # Legacy cancels explicitly (a disconnect is not a cancellation there).
        for _ in range(100):
            if server.of("notifications/cancelled"):
                break
            await asyncio.sleep(0.02)
        cancelled = server.of("notifications/cancelled")[0]
        assert cancelled.json["params"]["requestId"] == server.of("tools/call")[0].json["id"]
        assert cancelled.headers["mcp-session-id"] == "s-1"
        assert await client.list_tools() == []  # the connection carries on


async def test_modern_timeout_closes_the_stream_instead_of_notifying():
    async def hang(request: RawRequest, respond: Responder) -> None:
        await respond.stream()
        await respond.write(b": keep-alive\n\n")
        await respond.hang()

    async with (
        RawServer(modern_server(hang)) as server,
        connect_http(server.url, mode="modern") as client,
    ):
        with pytest.raises(RequestTimeout):
            await client.call_tool("stuck", {}, timeout=0.4)
        call = server.responders[[r.rpc_method for r in server.requests].index("tools/call")]
        await asyncio.wait_for(call.disconnected.wait(), 5)
        assert not server.of("notifications/cancelled")


# -- garbage on the wire -------------------------------------------------------------------------


async def test_garbage_sse_events_are_skipped_and_the_answer_still_arrives():
    async def junk_then_answer(request: RawRequest, respond: Responder) -> None:
        await respond.stream()
        await respond.write(b"\xef\xbb\xbf: comment\r\nid: 1\r\nretry: 10\r\n\r\n")
        await respond.write(b"data: not json at all\n\n")
        await respond.write(b"data: \xff\xfe\x00garbage\n\n")
        await respond.write(b"event: surprise\ndata: {\"ignored\": true}\n\n")
        await respond.write(b"bogus-field: x\ndata: [1, 2\n\n")
        answer = orjson.dumps(result_of(request, {"content": [], "isError": False}))
        # Split across writes, with CRLF broken between two chunks.
        await respond.write(b"data: " + answer[:10])
        await respond.write(answer[10:] + b"\r")
        await respond.write(b"\n\r\n")

    async with (
        RawServer(legacy_server(junk_then_answer)) as server,
        connect_http(server.url) as client,
    ):
        result = await client.call_tool("x", {})
        assert result == {"content": [], "isError": False}
        assert channel_of(client).protocol_errors >= 2


async def test_overlong_sse_line_fails_the_request_not_the_connection():
    async def endless_line(request: RawRequest, respond: Responder) -> None:
        await respond.stream()
        await respond.write(b"data: " + b"x" * 50_000)  # no line ending, past the bound
        await respond.hang()

    async with (
        RawServer(legacy_server(endless_line)) as server,
        connect_http(server.url, max_message_size=4096) as client,
    ):
        with pytest.raises(MCPError) as caught:
            await client.call_tool("x", {})
        assert "invalid SSE stream" in str(caught.value)
        assert "SSE line" in str(caught.value)
        assert http_failure(caught.value) is not None
        assert await client.list_tools() == []


async def test_modern_stream_that_ends_without_an_answer():
    async def hang_up(request: RawRequest, respond: Responder) -> None:
        await respond.stream()
        await respond.write(b"id: e1\ndata: \n\n")

    async with (
        RawServer(modern_server(hang_up)) as server,
        connect_http(server.url, mode="modern") as client,
    ):
        with pytest.raises(MCPError, match="ended the SSE stream without answering"):
            await client.call_tool("x", {})


async def test_modern_stream_refuses_server_requests():
    async def request_on_stream(request: RawRequest, respond: Responder) -> None:
        await respond.stream()
        sneaky = {"jsonrpc": "2.0", "id": 99, "method": "sampling/createMessage", "params": {}}
        await respond.write(b"data: " + orjson.dumps(sneaky) + b"\n\n")
        await respond.write(b"data: " + orjson.dumps(result_of(request, complete("ok"))) + b"\n\n")

    recorder = Recorder()
    async with (
        RawServer(modern_server(request_on_stream)) as server,
        connect_http(server.url, mode="modern", handlers=handlers_for(recorder)) as client,
    ):
        assert texts(await client.call_tool("x", {})) == ["ok"]
        assert channel_of(client).protocol_errors == 1
    assert not recorder.of("sampling")


def test_sse_decoder_rules():
    decoder = SSEDecoder()
    events = decoder.feed(b"\xef\xbb\xbfid: a\r\nevent: message\r\ndata: {\"x\":\r")
    assert events == []
    events = decoder.feed(b"\ndata: 1}\r\n\r\n: ping\n\nretry: 1500\nretry: soon\nid: b\0c\n\n")
    assert [(e.event, e.data, e.id) for e in events] == [("message", b'{"x":\n1}', "a")]
    assert decoder.retry_ms == 1500 and decoder.last_event_id == "a"  # ids with NUL are ignored
    assert decoder.feed(b"data:no-space\n\n")[0].data == b"no-space"
    with pytest.raises(SSELineTooLong):
        SSEDecoder(max_line=16).feed(b"data: " + b"y" * 32)
    with pytest.raises(SSEEventTooLarge):
        SSEDecoder(max_event=10).feed(b"data: 123456\ndata: 123456\n")


# -- sessions, resumption and headers ------------------------------------------------------------


async def test_expired_session_reinitializes_once_and_retries():
    state: dict[str, Any] = {"sessions": 0, "valid": set(), "expired": False}

    async def handle(request: RawRequest, respond: Responder) -> None:
        method = request.rpc_method
        session = request.headers.get("mcp-session-id")
        if request.method != "POST":
            await respond.send(405)
        elif method == "server/discover":
            await respond.send(404)
        elif method == "initialize":
            assert session is None  # a new session starts without the old id
            state["sessions"] += 1
            new_session = f"s-{state['sessions']}"
            state["valid"].add(new_session)
            await respond.json(result_of(request, INIT_RESULT),
                               headers={"Mcp-Session-Id": new_session})
        elif session not in state["valid"] or (method == "tools/list" and not state["expired"]):
            state["expired"] = True  # the server forgets the session under the client's feet
            state["valid"].discard(session)
            await respond.send(404, b"session not found", content_type="text/plain")
        elif "id" not in request.json:
            await respond.send(202)
        else:
            await respond.json(result_of(request, {"tools": [{"name": "t", "inputSchema": {
                "type": "object"}}]}))

    async with (
        RawServer(handle) as server,
        connect_http(server.url) as client,
    ):
        tools = await client.list_tools()
        assert [t["name"] for t in tools] == ["t"]
        assert channel_of(client).session_id == "s-2"
    trail = [(r.rpc_method, r.headers.get("mcp-session-id")) for r in server.requests
             if r.method == "POST"]
    assert trail == [
        ("server/discover", None),
        ("initialize", None),
        ("notifications/initialized", "s-1"),
        ("tools/list", "s-1"),
        ("initialize", None),
        ("notifications/initialized", "s-2"),
        ("tools/list", "s-2"),
    ]


async def test_sse_resumption_after_retry_with_last_event_id():
    timeline: dict[str, float] = {}

    async def handle(request: RawRequest, respond: Responder) -> None:
        if request.method == "GET" and request.headers.get("last-event-id") == "call-1":
            timeline["resumed"] = time.monotonic()
            await respond.stream()
            pending = server.of("tools/call")[0]
            await respond.write(b"id: call-2\ndata: " + orjson.dumps(
                result_of(pending, {"content": [], "isError": False})) + b"\n\n")
        elif request.method == "GET":
            await respond.send(405)
        elif request.rpc_method == "tools/call":
            await respond.stream()
            await respond.write(b"id: call-1\nretry: 300\ndata: \n\n")
            timeline["closed"] = time.monotonic()  # close before the response (SEP-1699)
        else:
            await legacy_server(hang_forever)(request, respond)

    async with (
        RawServer(handle) as server,
        connect_http(server.url) as client,
    ):
        assert (await client.call_tool("slow", {}))["isError"] is False
    assert timeline["resumed"] - timeline["closed"] >= 0.28
    resume = next(r for r in server.requests if r.headers.get("last-event-id"))
    assert resume.headers["mcp-session-id"] == "s-1"
    assert resume.headers["mcp-protocol-version"] == LEGACY


async def test_get_stream_notifications_and_server_requests_answered_by_post():
    notifications: list[Any] = []
    recorder = Recorder()
    answered = asyncio.Event()

    async def handle(request: RawRequest, respond: Responder) -> None:
        if request.method == "GET":
            assert request.headers["mcp-session-id"] == "s-1"
            await respond.stream()
            await respond.write(b"id: g1\nretry: 100\ndata: \n\n")
            changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
            roots = {"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"}
            await respond.write(b"id: g2\ndata: " + orjson.dumps(changed) + b"\n\n")
            await respond.write(b"id: g3\ndata: " + orjson.dumps(roots) + b"\n\n")
            await respond.hang()
        elif request.json and request.json.get("id") == "srv-1":
            await respond.send(202)
            answered.set()
        else:
            await legacy_server(hang_forever)(request, respond)

    async def on_notification(notification: Any) -> None:
        notifications.append(notification.method)

    handlers = handlers_for(recorder)
    handlers.on_notification = on_notification
    async with (
        RawServer(handle) as server,
        connect_http(server.url, mode="legacy", handlers=handlers),
    ):
        await asyncio.wait_for(answered.wait(), 5)
        reply = next(r for r in server.requests if r.json and r.json.get("id") == "srv-1")
        assert reply.json["result"] == {"roots": [{"uri": "file:///work/project",
                                                   "name": "project"}]}
        assert reply.headers["mcp-session-id"] == "s-1"
        assert reply.headers["mcp-protocol-version"] == LEGACY
        for _ in range(100):
            if notifications:
                break
            await asyncio.sleep(0.02)
        assert notifications == ["notifications/tools/list_changed"]


INVALID_TOOLS = [
    {"name": "valid", "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "note": {"type": "string"}}}},
    {"name": "on_number", "inputSchema": {"type": "object", "properties": {
        "score": {"type": "number", "x-mcp-header": "Score"}}}},
    {"name": "duplicate", "inputSchema": {"type": "object", "properties": {
        "a": {"type": "string", "x-mcp-header": "Same"},
        "b": {"type": "string", "x-mcp-header": "same"}}}},
    {"name": "in_items", "inputSchema": {"type": "object", "properties": {
        "list": {"type": "array", "items": {"type": "string", "x-mcp-header": "Item"}}}}},
    {"name": "bad_token", "inputSchema": {"type": "object", "properties": {
        "v": {"type": "string", "x-mcp-header": "Has Space"}}}},
]


async def test_invalid_x_mcp_header_tools_are_dropped_and_headers_mirrored(
        caplog: pytest.LogCaptureFixture):
    async def answer(request: RawRequest, respond: Responder) -> None:
        await respond.json(result_of(request, complete("done")))

    async with (
        RawServer(modern_server(answer, tools=INVALID_TOOLS)) as server,
        connect_http(server.url, mode="modern") as client,
    ):
        with caplog.at_level(logging.WARNING, logger="bastion.transport.http.client"):
            tools = await client.list_tools()
        assert [tool["name"] for tool in tools] == ["valid"]
        for name in ("on_number", "duplicate", "in_items", "bad_token"):
            assert f"tool {name!r} dropped" in caplog.text
        assert set(channel_of(client).rejected_tools) == {
            "on_number", "duplicate", "in_items", "bad_token"}

        await client.call_tool("valid", {"region": " padded ", "count": 7, "note": "n"})
        with pytest.raises(MCPError, match="rejected for invalid x-mcp-header"):
            await client.call_tool("on_number", {"score": 1.5})
    call = server.of("tools/call")[0]
    assert call.headers["mcp-method"] == "tools/call"
    assert call.headers["mcp-name"] == "valid"
    assert call.headers["mcp-protocol-version"] == MODERN
    assert call.headers["mcp-param-region"] == "=?base64?IHBhZGRlZCA=?="
    assert call.headers["mcp-param-count"] == "7"
    assert not any(name.startswith("mcp-param-note") for name in call.headers)
    assert len(server.of("tools/call")) == 1  # the rejected tool never went on the wire


async def test_unsupported_version_error_keeps_the_client_modern():
    async def handle(request: RawRequest, respond: Responder) -> None:
        if request.rpc_method == "server/discover" and len(server.of("server/discover")) == 1:
            await respond.json({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32022, "message": "Unsupported protocol version",
                "data": {"supported": [MODERN], "requested": "1999-01-01"}}}, status=400)
            return
        await modern_server(hang_forever)(request, respond)

    async with (
        RawServer(handle) as server,
        connect_http(server.url) as client,
    ):
        assert client.era.value == "modern"
    assert not server.of("initialize")
    assert len(server.of("server/discover")) == 2


async def test_plain_4xx_to_the_probe_means_legacy():
    async with (
        RawServer(legacy_server(hang_forever)) as server,
        connect_http(server.url) as client,
    ):
        assert client.era.value == "legacy"
        assert client.protocol_version == LEGACY
    posts = [r for r in server.requests if r.method == "POST"]
    assert posts[0].rpc_method == "server/discover"
    assert posts[0].headers["mcp-method"] == "server/discover"
    assert posts[0].headers["mcp-protocol-version"] == MODERN
    assert "mcp-protocol-version" not in posts[1].headers  # initialize
    assert posts[2].headers["mcp-protocol-version"] == LEGACY  # notifications/initialized
    # DELETE ended the session on close.
    assert [r.method for r in server.requests][-1] == "DELETE"


async def test_bearer_and_custom_headers_on_every_request():
    async with (
        RawServer(legacy_server(hang_forever)) as server,
        connect_http(server.url, headers={"X-Tenant": "blue"}, bearer_token="t0ken") as client,
    ):
        await client.list_tools()
    assert server.requests
    for request in server.requests:
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.headers["x-tenant"] == "blue"


# -- the conformance client's own logic ----------------------------------------------------------


async def test_conformance_client_applies_elicitation_defaults():
    from bastion.testing.conformance_client import arguments_for, mode_for, on_elicitation

    schema = {"type": "object", "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
        "confirmed": {"type": "boolean"},
    }, "required": []}
    answer = await on_elicitation({"message": "defaults", "requestedSchema": schema})
    assert answer == {"action": "accept", "content": {
        "name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": True,
        "confirmed": True}}
    assert arguments_for({"type": "object", "properties": {"a": {"type": "number"},
                                                          "b": {"type": "string"}},
                          "required": ["a"]}) == {"a": 1}
    assert (mode_for("2025-11-25"), mode_for("2025-06-18"), mode_for("2026-07-28")) == (
        "legacy", "legacy", "modern")
