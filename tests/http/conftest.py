"""Helpers for the Streamable HTTP server tests: a live endpoint and a checking client.

`serve(**options)` starts the conformance fixture (plus a few test-only tools) with uvicorn on
a free loopback port in this event loop. `McpHttp` posts to it with httpx and parses every
answer (JSON or SSE); every JSON-RPC message the server sends is validated against the
official schema of the version in force, and results against their method's result type.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from bastion.server import Context, Server
from bastion.testing.everything import build_server
from bastion.transport.http import McpHttpEndpoint, uvicorn_server
from tests.live_server import start_uvicorn
from tests.schema_check import validate_def, validate_message
from tests.wire_check import MESSAGE_TYPES, RESULT_TYPES

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT_BOTH = "application/json, text/event-stream"
META = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"


class Gates:
    """Test-only tools' rendezvous points."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = asyncio.Event()


def add_test_tools(server: Server, gates: Gates) -> None:
    @server.tool("test_wait_forever")
    async def wait_forever() -> str:
        """Waits until cancelled."""
        gates.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            gates.cancelled.set()
            raise
        return "never"

    @server.tool("test_gated")
    async def gated(ctx: Context) -> str:
        """Progress 1, then waits for the test to release it, then progress 2 and a reply."""
        await ctx.report_progress(1, 3, "one")
        gates.started.set()
        await gates.release.wait()
        await ctx.report_progress(2, 3, "two")
        gates.finished.set()
        return "gated done"

    @server.tool("test_silent")
    async def silent() -> str:
        """Says nothing for a while, then answers."""
        await asyncio.sleep(0.35)
        return "silent done"


@dataclass
class Live:
    url: str
    port: int
    server: Server
    endpoint: McpHttpEndpoint
    gates: Gates
    uvicorn: Any
    task: asyncio.Task[None]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Live]]]:
    """`await serve(**endpoint_options)`: a running fixture server; stopped after the test."""
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(**options: Any) -> Live:
        server = build_server()
        gates = Gates()
        add_test_tools(server, gates)
        uv = uvicorn_server(server, "127.0.0.1", 0, **options)
        task, port = await start_uvicorn(uv)
        running.append((uv, task))
        endpoint = uv.config.app
        assert isinstance(endpoint, McpHttpEndpoint)
        return Live(f"http://127.0.0.1:{port}/mcp", port, server, endpoint, gates, uv, task)

    yield start
    for uv, task in running:
        uv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


# -- SSE and JSON answers -------------------------------------------------------------------------


@dataclass
class Event:
    id: str | None = None
    retry: int | None = None
    data: str = ""
    comment: bool = False

    @property
    def message(self) -> dict[str, Any] | None:
        return orjson.loads(self.data) if self.data else None


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of an SSE body, comments included (as `comment=True` events)."""
    event = Event()
    started = False
    async for line in response.aiter_lines():
        if line == "":
            if started:
                yield event
            event, started = Event(), False
        elif line.startswith(":"):
            yield Event(comment=True)
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            started = True
            if name == "id":
                event.id = value
            elif name == "retry":
                event.retry = int(value)
            elif name == "data":
                event.data = f"{event.data}\n{value}" if event.data else value
    if started:
        yield event


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, Any]]:
        if self.body is not None:
            return [self.body]
        return [m for m in (e.message for e in self.events) if m is not None]

    @property
    def last(self) -> dict[str, Any]:
        return self.messages[-1]

    @property
    def is_sse(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")


class Checker:
    """Validates what the server sends: every message, and results by their request."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.methods: dict[Any, str] = {}
        self.checked = 0

    def sent(self, message: dict[str, Any]) -> None:
        if "id" in message and "method" in message:
            self.methods[message["id"]] = message["method"]

    def check(self, message: dict[str, Any]) -> None:
        validate_message(message, self.version)
        self.checked += 1
        if "method" in message:
            kind = MESSAGE_TYPES.get(message["method"])
            if kind is not None:
                validate_def(message, self.version, kind)
            return
        result = message.get("result")
        method = self.methods.get(message.get("id"))
        kind = RESULT_TYPES.get(method) if method else None
        if result is not None and kind and result.get("resultType", "complete") == "complete":
            if "task" in result:
                kind = "CreateTaskResult"
            validate_def(result, self.version, kind)


class McpHttp:
    """A raw client for one era, with every answer parsed and schema-checked."""

    def __init__(self, client: httpx.AsyncClient, url: str, version: str) -> None:
        self.client = client
        self.url = url
        self.checker = Checker(version)
        self.session_id: str | None = None
        self.ids = iter(range(1, 1_000_000))

    @property
    def version(self) -> str:
        return self.checker.version

    def headers(self, message: dict[str, Any] | None, extra: dict[str, str] | None = None,
                *, routing: bool = True) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": ACCEPT_BOTH}
        if self.version == MODERN and routing and message is not None:
            headers["mcp-protocol-version"] = MODERN
            if "id" in message and "method" in message:
                headers["mcp-method"] = message["method"]
                params = message.get("params") or {}
                name = params.get("uri" if message["method"] == "resources/read" else "name")
                if message["method"] in ("tools/call", "prompts/get", "resources/read"):
                    headers["mcp-name"] = name
        elif self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
            headers["mcp-protocol-version"] = self.version
        headers.update(extra or {})
        return {k: v for k, v in headers.items() if v is not None}

    def request(self, method: str, params: dict[str, Any] | None = None, *,
                capabilities: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
        params = dict(params or {})
        if self.version == MODERN:
            params["_meta"] = {META: MODERN, CAPS: capabilities or {}, **meta,
                               **params.get("_meta", {})}
        elif meta:
            params["_meta"] = {**meta, **params.get("_meta", {})}
        return {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}

    async def post(self, message: dict[str, Any] | bytes, extra: dict[str, str] | None = None,
                   *, routing: bool = True, timeout: float = 10) -> Reply:
        """POST and read the whole answer (JSON, or an SSE stream to its end)."""
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        headers = self.headers(None if isinstance(message, bytes) else message, extra,
                               routing=routing)
        if isinstance(message, dict):
            self.checker.sent(message)
        async with self.client.stream("POST", self.url, content=body, headers=headers,
                                      timeout=timeout) as response:
            return await self.read(response)

    async def read(self, response: httpx.Response) -> Reply:
        reply = Reply(response.status_code, response.headers)
        if reply.is_sse:
            reply.events = [event async for event in sse_events(response)]
        else:
            raw = await response.aread()
            if raw and response.headers.get("content-type", "").startswith("application/json"):
                reply.body = orjson.loads(raw)
        for message in reply.messages:
            self.checker.check(message)
        return reply

    async def initialize(self, capabilities: dict[str, Any] | None = None) -> Reply:
        reply = await self.post({"jsonrpc": "2.0", "id": next(self.ids), "method": "initialize",
                                 "params": {"protocolVersion": self.version,
                                            "capabilities": capabilities or {},
                                            "clientInfo": {"name": "t", "version": "1"}}})
        assert reply.status == 200, reply
        self.session_id = reply.headers["mcp-session-id"]
        notified = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert notified.status == 202
        return reply


def error_of(reply: Reply) -> dict[str, Any]:
    assert reply.body is not None and "error" in reply.body, reply
    return reply.body["error"]


async def raw_http(port: int, request: bytes, *, read: bool = True,
                   timeout: float = 5) -> bytes:
    """Send raw bytes on a fresh connection; the whole answer (until the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if not read:
            return b""
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
