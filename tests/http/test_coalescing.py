"""One socket write per response: `CoalescingTransport` and `CoalescingHttpToolsProtocol`.

Unit level: a `CoalescingTransport` over the real transport of a loopback TCP connection, on
both asyncio's own loop and uvloop (what production serves with). The real transport is
wrapped in `WriteLog`, which records every write it is handed and passes it on, so "two writes
in one loop step reach the socket as one" is observed exactly rather than inferred from how
the receiver's reads happened to fall.

Served: `uvicorn_server` serving the conformance fixture (`bastion.testing.everything`), its
protocol class subclassed only to slip a `WriteLog` under the coalescing transport; raw socket
clients check what arrives (a JSON answer in one segment, a `Connection: close` answer whole
before the close, an SSE answer still streaming). One more check runs the fixture as a child
process (uvloop, the production setup) and reads the answer with a blocking socket.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import uvloop

from bastion.testing.everything import build_server
from bastion.transport.http import uvicorn_server
from bastion.transport.http.coalescing import CoalescingHttpToolsProtocol, CoalescingTransport
from tests.http.conftest import MODERN, Gates, McpHttp, add_test_tools

pytestmark = pytest.mark.timeout(20)


class WriteLog:
    """A real transport, recording each write it is handed before passing it on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


# -- unit level: a real loopback connection ------------------------------------------------


@dataclass
class Sink:
    """The far end of the connection: everything it received, and whether it has ended."""

    data: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    may_read: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.may_read.wait()
        try:
            while chunk := await reader.read(1 << 20):
                self.data += chunk
        except ConnectionError:
            pass  # an aborted connection
        self.ended.set()
        writer.close()


Scenario = Callable[[CoalescingTransport, WriteLog, Sink], Awaitable[None]]
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_scenario(loop_name: str, scenario: Scenario, *, reading: bool = True) -> None:
    """Run `scenario` on a fresh loop of that kind, over a real loopback connection."""

    async def main() -> None:
        sink = Sink()
        if reading:
            sink.may_read.set()
        server = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1])
        log = WriteLog(transport)  # type: ignore[arg-type]
        try:
            await scenario(CoalescingTransport(log, loop), log, sink)  # type: ignore[arg-type]
        finally:
            if not transport.is_closing():
                transport.abort()
            server.close()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(asyncio.wait_for(main(), 10))


async def one_step() -> None:
    """Let the loop run the callbacks scheduled so far (the flush among them)."""
    await asyncio.sleep(0)


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_writes_in_one_step_reach_the_socket_as_one_write(loop_name):
    async def scenario(coalescing: CoalescingTransport, log: WriteLog, sink: Sink) -> None:
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(b'{"ok":')
        coalescing.writelines([b"true", b"}"])
        assert log.writes == []  # gathered until the end of the step
        await one_step()
        assert log.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']
        coalescing.write(b"next")  # a later step is a later write
        await one_step()
        coalescing.write(b"last")
        await one_step()
        assert log.writes[1:] == [b"next", b"last"]
        coalescing.close()
        await sink.ended.wait()
        assert bytes(sink.data) == b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}nextlast'

    run_scenario(loop_name, scenario)


def test_close_flushes_what_was_gathered_first(loop_name):
    async def scenario(coalescing: CoalescingTransport, log: WriteLog, sink: Sink) -> None:
        coalescing.write(b"head ")
        coalescing.write(b"body")
        coalescing.close()
        assert log.writes == [b"head body"] and coalescing.is_closing()
        await one_step()
        assert log.writes == [b"head body"]  # the scheduled flush found nothing left
        await sink.ended.wait()
        assert bytes(sink.data) == b"head body"

    run_scenario(loop_name, scenario)


def test_abort_drops_what_was_gathered(loop_name):
    async def scenario(coalescing: CoalescingTransport, log: WriteLog, sink: Sink) -> None:
        coalescing.write(b"never sent")
        coalescing.abort()
        await one_step()
        await sink.ended.wait()
        assert log.writes == [] and bytes(sink.data) == b""

    run_scenario(loop_name, scenario)


def test_write_buffer_size_counts_gathered_and_socket_bytes(loop_name):
    big = b"z" * (32 << 20)  # more than loopback socket buffers hold while nobody reads

    async def scenario(coalescing: CoalescingTransport, log: WriteLog, sink: Sink) -> None:
        assert coalescing.get_write_buffer_size() == 0
        coalescing.write(b"abc")
        coalescing.write(b"de")
        assert coalescing.get_write_buffer_size() == 5
        await one_step()
        assert coalescing.get_write_buffer_size() == 0  # handed over and sent
        coalescing.write(big)
        await one_step()
        queued = log.transport.get_write_buffer_size()
        assert queued > 0  # the far end is not reading: the real transport holds the rest
        coalescing.write(b"12345")
        assert coalescing.get_write_buffer_size() == queued + 5
        sink.may_read.set()
        coalescing.close()
        await sink.ended.wait()
        assert sink.data == b"abcde" + big + b"12345"  # in order, nothing lost

    run_scenario(loop_name, scenario, reading=False)


def test_everything_else_is_the_real_transports(loop_name):
    async def scenario(coalescing: CoalescingTransport, log: WriteLog, sink: Sink) -> None:
        real = log.transport
        assert coalescing.get_extra_info("peername") == real.get_extra_info("peername")
        assert coalescing.get_extra_info("sockname") == real.get_extra_info("sockname")
        assert not coalescing.is_closing()
        coalescing.pause_reading()
        assert not real.is_reading()
        coalescing.resume_reading()
        assert real.is_reading()
        with pytest.raises(AttributeError):
            coalescing.no_such_method()  # type: ignore[attr-defined]

    run_scenario(loop_name, scenario)


# -- served by uvicorn_server ----------------------------------------------------------------


@dataclass
class Served:
    port: int
    gates: Gates
    logs: list[WriteLog]
    mcp: McpHttp  # builds modern messages and their headers (it never sends: raw sockets do)

    def post(self, message: dict[str, Any], *extra: str) -> bytes:
        return raw_post(self.port, self.mcp, message, *extra)


def raw_post(port: int, mcp: McpHttp, message: dict[str, Any], *extra: str) -> bytes:
    """The bytes of a POST of `message` to /mcp, with the headers its era wants."""
    body = orjson.dumps(message)
    lines = ["POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}",
             *(f"{name}: {value}" for name, value in mcp.headers(message).items()),
             f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The fixture server under `uvicorn_server`, with a `WriteLog` under each connection."""
    server = build_server()
    gates = Gates()
    add_test_tools(server, gates)
    uv = uvicorn_server(server, "127.0.0.1", 0)
    assert uv.config.http is CoalescingHttpToolsProtocol  # what the gateway serves with
    logs: list[WriteLog] = []

    class Logged(CoalescingHttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            logs.append(WriteLog(transport))
            super().connection_made(logs[-1])  # type: ignore[arg-type]

    uv.config.http = Logged
    task = asyncio.create_task(uv.serve())
    deadline = time.monotonic() + 10
    while not uv.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield Served(port, gates, logs, modern_builder(port))
    uv.should_exit = True
    await asyncio.wait_for(task, 10)


def modern_builder(port: int) -> McpHttp:
    return McpHttp(None, f"http://127.0.0.1:{port}/mcp", MODERN)  # type: ignore[arg-type]


def split_response(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines)}
    return status, headers, body


async def test_a_json_answer_is_one_write_and_arrives_in_the_first_read(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        message = served.mcp.request("server/discover")
        writer.write(served.post(message))
        first = await asyncio.wait_for(reader.read(1 << 16), 5)
        status, headers, body = split_response(first)
        assert status == "HTTP/1.1 200 OK" and headers["content-type"] == "application/json"
        assert len(body) == int(headers["content-length"])  # the body came with the head
        assert orjson.loads(body)["id"] == message["id"]
        assert served.logs[-1].writes == [first]  # status line, headers and body: one write
    finally:
        writer.close()


async def test_a_connection_close_answer_arrives_whole_before_the_close(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(served.post(served.mcp.request("tools/list"), "Connection: close"))
        everything = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        status, headers, body = split_response(everything)
        assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert len(body) == int(headers["content-length"]) > 0
        assert "tools" in orjson.loads(body)["result"]
        assert served.logs[-1].writes == [everything]  # close() flushed it first
    finally:
        writer.close()


async def test_an_sse_answer_still_streams(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        call = served.mcp.request("tools/call", {"name": "test_gated", "arguments": {}},
                                  progressToken="p1")
        writer.write(served.post(call))
        received = b""
        while b'"message":"one"' not in received:  # the first progress event...
            received += await asyncio.wait_for(reader.read(1 << 16), 5)
        assert received.startswith(b"HTTP/1.1 200 OK") and b"text/event-stream" in received
        assert not served.gates.finished.is_set()  # ...while the tool is still held
        assert b"gated done" not in received
        served.gates.release.set()
        while not received.endswith(b"\r\n0\r\n\r\n"):  # the end of the chunked body
            received += await asyncio.wait_for(reader.read(1 << 16), 5)
        assert received.index(b'"message":"one"') < received.index(b'"message":"two"') \
            < received.index(b"gated done")
        first_write = served.logs[-1].writes[0]  # the head and the first event: sent at once
        assert b'"message":"one"' in first_write and b'"message":"two"' not in first_write
    finally:
        writer.close()


# -- the production setup: a child process on uvloop ---------------------------------------------


@pytest.fixture
def child_server() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "bastion.testing.everything", "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the child server did not start"
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        if child.stderr is not None:
            child.stderr.close()


def test_a_child_process_answer_arrives_in_one_segment(child_server):
    mcp = modern_builder(child_server)
    request = raw_post(child_server, mcp, mcp.request("server/discover"))
    for _ in range(5):  # the client is already waiting in recv() when the answer is written
        with socket.create_connection(("127.0.0.1", child_server), timeout=5) as raw:
            raw.sendall(request)
            first = raw.recv(1 << 16)
        status, headers, body = split_response(first)
        assert status == "HTTP/1.1 200 OK"
        assert len(body) == int(headers["content-length"]), first
