"""Bastion's HTTP/1.1 client (`bastion.transport.http.h1client`) against real sockets.

The peers are raw `asyncio.start_server` servers written here (`Peer`): each reads request
heads and writes exactly the bytes a test needs (well-formed, slow, silent, truncated or
hostile), and counts the connections it accepts, which is how pooling and keep-alive are
observed from the outside. One test runs a plain ASGI app under uvicorn (httptools) as a real,
well-behaved server.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import uvicorn

from bastion.transport.http import h1client
from bastion.transport.http.h1client import (
    MAX_HEAD_SIZE,
    READ_HIGH_WATER,
    ConnectError,
    ConnectTimeout,
    HTTPClient,
    HTTPClientError,
    IncompleteBody,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
    TotalTimeout,
)
from tests.live_server import free_port

pytestmark = pytest.mark.timeout(20)

JSON_BODY = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"ok": True}})


# -- a raw peer ------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the peer read it: the raw head lines, and the body."""

    request_line: str
    header_lines: list[str]
    body: bytes

    def names(self) -> list[str]:
        return [line.partition(":")[0].lower() for line in self.header_lines]

    def header(self, name: str) -> str:
        values = [line.partition(":")[2].strip() for line in self.header_lines
                  if line.partition(":")[0].lower() == name.lower()]
        assert len(values) == 1, f"{name}: {values}"
        return values[0]


Handler = Callable[["Peer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Peer:
    """A loopback HTTP/1.1 server whose handler (one per connection) decides every byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[Received] = []
        self.request_arrived = asyncio.Event()
        self.port = 0
        self.host = "127.0.0.1"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str = "127.0.0.1") -> Peer:
        self.host = host
        self._server = await asyncio.start_server(self._accept, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/mcp") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.create_task(self._run(reader, writer))
        self._tasks.add(task)  # held here, so that stop() can end handlers that never return
        task.add_done_callback(self._tasks.discard)

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> Received | None:
        """The next request on this connection; None once the client has closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            return None
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        received = Received(request_line, header_lines, b"")
        if "content-length" in received.names():
            received.body = await reader.readexactly(int(received.header("content-length")))
        self.requests.append(received)
        self.request_arrived.set()
        return received


def response(body: bytes = JSON_BODY, *headers: str, status: str = "200 OK",
             content_type: str = "application/json") -> bytes:
    """A complete response with a Content-Length."""
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replying(answer: bytes, *, delay: float = 0.0, close: bool = False) -> Handler:
    """A handler that answers every request on a connection with `answer`."""

    async def handler(peer: Peer, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        while await peer.read_request(reader) is not None:
            if delay:
                await asyncio.sleep(delay)
            writer.write(answer)
            await writer.drain()
            if close:
                return

    return handler


def after_request(then: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> Handler:
    """A handler that reads one request, then runs `then` with the writer (and closes)."""

    async def handler(peer: Peer, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if await peer.read_request(reader) is not None:
            await then(writer)

    return handler


@pytest.fixture
async def peer() -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    """`await peer(handler, host=...)`: a running raw peer, stopped after the test."""
    started: list[Peer] = []

    async def start(handler: Handler, host: str = "127.0.0.1") -> Peer:
        started.append(Peer(handler))
        return await started[-1].start(host)

    yield start
    for each in started:
        await each.stop()


@pytest.fixture
async def client() -> AsyncIterator[HTTPClient]:
    http = HTTPClient(connect_timeout=2.0)
    yield http
    await http.aclose()


async def get(client: HTTPClient, url: str, **options: Any) -> bytes:
    """GET `url` and read the whole body."""
    async with await client.request("GET", url, {}, **options) as answer:
        return await answer.read(1 << 20)


# -- well-formed answers -----------------------------------------------------------------------


async def test_json_answer_is_read_whole_with_case_insensitive_headers(peer, client):
    server = await peer(replying(response(
        JSON_BODY, "X-Twice: one", "x-twice: two", content_type="application/json; charset=utf-8")))
    async with await client.request("POST", server.url(), {"Accept": "application/json"},
                                     b"{}") as answer:
        assert (answer.status, answer.reason) == (200, "OK")
        assert answer.headers["CONTENT-TYPE"] == "application/json; charset=utf-8"
        assert "Content-Length" in answer.headers and "nope" not in answer.headers
        assert answer.headers.get("X-TWICE") == "one, two"
        assert answer.content_type == "application/json"
        assert answer.content_length == len(JSON_BODY)
        assert await answer.read(len(JSON_BODY)) == JSON_BODY  # exactly at the limit


async def test_the_request_bytes_the_server_receives(peer, client):
    server = await peer(replying(response()))
    body = b'{"jsonrpc":"2.0","id":7,"method":"ping"}'
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "Mcp-Session-Id": "abc"}
    async with await client.request("POST", server.url("/mcp?x=1&y=2"), headers, body):
        pass
    async with await client.request("DELETE", server.url(), {}):
        pass
    post, delete = server.requests
    assert post.request_line == "POST /mcp?x=1&y=2 HTTP/1.1"
    assert post.header("host") == f"127.0.0.1:{server.port}"
    assert post.header("content-length") == str(len(body))
    assert post.header("mcp-session-id") == "abc"
    assert post.body == body
    names = post.names()
    assert len(names) == len(set(names)) == 5, post.header_lines  # nothing twice, nothing extra
    assert delete.request_line == "DELETE /mcp HTTP/1.1"
    assert "content-length" not in delete.names() and delete.body == b""


async def test_chunked_answer_streams_each_chunk_before_the_next_is_sent(peer, client):
    events = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
    seen = [asyncio.Event() for _ in events]

    async def stream(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for event, was_seen in zip(events, seen, strict=True):
            await asyncio.sleep(0.02)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.wait_for(was_seen.wait(), 2)  # the client has it: only now go on
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3600)

    server = await peer(after_request(stream))
    received = b""
    async with await client.request("GET", server.url(), {}) as answer:
        assert answer.content_type == "text/event-stream" and answer.content_length is None
        async for chunk in answer.chunks():
            received += chunk
            for event, was_seen in zip(events, seen, strict=True):
                if event in received:
                    was_seen.set()
    assert received == b"".join(events)


async def test_body_delimited_by_the_end_of_the_connection(peer, client):
    server = await peer(replying(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, end",
                                 close=True))
    assert await get(client, server.url()) == b"hello, end"
    assert await get(client, server.url()) == b"hello, end"
    assert server.connections == 2


async def test_real_uvicorn_server_json_stream_and_keep_alive():
    clients: list[Any] = []

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        clients.append(scope["client"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"data: %d\n\n" % i,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps({"echo": body.decode()})})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools",
                                           lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    http = HTTPClient(connect_timeout=2.0)
    try:
        while not server.started:
            assert not serving.done()
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        for word in ("a", "b", "c"):
            answer = await http.request("POST", f"{url}/json", {}, word.encode())
            async with answer:
                assert orjson.loads(await answer.read(1000)) == {"echo": word}
        async with await http.request("GET", f"{url}/stream", {}) as answer:
            assert answer.headers["transfer-encoding"] == "chunked"
            streamed = b"".join([chunk async for chunk in answer.chunks()])
        assert streamed == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert len(clients) == 4 and len(set(clients)) == 1  # one connection, kept alive
    finally:
        await http.aclose()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


# -- the pool ----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_keep_alive_connection(peer, client):
    server = await peer(replying(response()))
    for _ in range(5):
        assert await get(client, server.url()) == JSON_BODY
    assert (server.connections, len(server.requests)) == (1, 5)


async def test_connection_close_answer_means_a_new_connection_next_time(peer, client):
    server = await peer(replying(response(JSON_BODY, "Connection: close")))
    for _ in range(3):
        assert await get(client, server.url()) == JSON_BODY
    assert server.connections == 3


async def test_a_connection_the_server_dropped_while_idle_is_not_reused(peer, client):
    async def answer_then_hang_up(peer: Peer, reader, writer) -> None:
        await peer.read_request(reader)
        writer.write(response())
        await asyncio.sleep(0.05)  # like a server's keep-alive timeout, without saying so

    server = await peer(answer_then_hang_up)
    assert await get(client, server.url()) == JSON_BODY
    await asyncio.sleep(0.2)
    assert await get(client, server.url()) == JSON_BODY
    assert server.connections == 2


async def test_idle_connections_expire(peer, client, monkeypatch):
    monkeypatch.setattr(h1client, "IDLE_TIMEOUT", 0.1)
    server = await peer(replying(response()))
    assert await get(client, server.url()) == JSON_BODY
    await asyncio.sleep(0.2)
    assert await get(client, server.url()) == JSON_BODY
    await asyncio.sleep(0.05)
    assert (server.connections, server.closed_by_client) == (2, 1)  # the stale one was closed


@pytest.mark.parametrize("sent", ["all", "half"])
async def test_an_answer_not_read_to_the_end_does_not_return_its_connection(peer, client, sent):
    body = b"x" * 5000

    async def answer(peer: Peer, reader, writer) -> None:
        while await peer.read_request(reader) is not None:
            whole = response(body)
            writer.write(whole if sent == "all" or peer.connections > 1 else whole[:-2500])
            await writer.drain()

    server = await peer(answer)
    async with await client.request("GET", server.url(), {}) as first:
        assert first.status == 200  # ...and the body is left unread
    assert await get(client, server.url()) == body
    assert server.connections == 2
    await asyncio.sleep(0.05)
    assert server.closed_by_client >= 1  # the abandoned connection was closed, not parked


@pytest.mark.parametrize("keep_alive", [True, False],
                         ids=["keep-alive", "close"])
async def test_pool_limit_one_second_request_waits_then_succeeds(peer, keep_alive):
    extra = () if keep_alive else ("Connection: close",)
    server = await peer(replying(response(JSON_BODY, *extra), delay=0.3))
    http = HTTPClient(connect_timeout=1.0, limit=1)
    try:
        first = asyncio.create_task(get(http, server.url()))
        await server.request_arrived.wait()
        second = asyncio.create_task(get(http, server.url()))
        await asyncio.sleep(0.1)
        assert server.connections == 1 and not second.done()  # waiting for room
        started = time.monotonic()
        assert await first == JSON_BODY and await second == JSON_BODY
        assert time.monotonic() - started < 0.9  # handed over, not after the connect timeout
        assert server.connections == (1 if keep_alive else 2)
    finally:
        await http.aclose()


async def test_pool_limit_one_second_request_gives_up_after_the_connect_timeout(peer):
    server = await peer(replying(response(), delay=2.0))
    http = HTTPClient(connect_timeout=0.2, limit=1)
    try:
        first = asyncio.create_task(get(http, server.url()))
        await server.request_arrived.wait()
        started = time.monotonic()
        with pytest.raises(ConnectTimeout, match="busy"):
            await get(http, server.url())
        assert 0.15 <= time.monotonic() - started < 1.0
        assert server.connections == 1
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    finally:
        await http.aclose()


# -- failures ----------------------------------------------------------------------------------


async def test_server_closing_before_answering_is_server_disconnected(peer, client):
    server = await peer(after_request(lambda writer: asyncio.sleep(0)))
    with pytest.raises(ServerDisconnected, match="closed the connection"):
        await client.request("GET", server.url(), {})


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_server_closing_mid_body_is_incomplete_body(peer, client, framing):
    async def truncated(writer: asyncio.StreamWriter) -> None:
        if framing == "content-length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123")
        await writer.drain()

    server = await peer(after_request(truncated))
    async with await client.request("GET", server.url(), {}) as answer:
        with pytest.raises(IncompleteBody):
            await answer.read(1000)


@pytest.mark.parametrize("where", ["head", "body"])
async def test_a_silent_server_is_a_read_timeout_within_the_bound(peer, client, where):
    async def quiet(writer: asyncio.StreamWriter) -> None:
        if where == "body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await asyncio.sleep(3600)

    server = await peer(after_request(quiet))
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match=r"0\.3 s"):
        await get(client, server.url(), read_timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize("where", ["head", "body"])
async def test_total_timeout_bounds_a_trickling_exchange(peer, client, where):
    async def trickle(writer: asyncio.StreamWriter) -> None:
        if where == "head":
            await asyncio.sleep(3600)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # a byte every 50 ms: never silent for the read timeout
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await peer(after_request(trickle))
    started = time.monotonic()
    with pytest.raises(TotalTimeout):
        await get(client, server.url(), read_timeout=5.0, total_timeout=0.4)
    assert 0.35 <= time.monotonic() - started < 1.5


async def test_refused_port_is_connect_error_naming_host_and_port(client):
    port = free_port()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}") as caught:
        await client.request("GET", f"http://127.0.0.1:{port}/mcp", {})
    assert isinstance(caught.value.os_error, OSError)


@pytest.mark.parametrize("garbage", [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                                     b"\x00\x01\x02 binary noise"])
async def test_garbage_is_a_protocol_error(peer, client, garbage):
    server = await peer(replying(garbage))
    with pytest.raises(ProtocolError, match="invalid HTTP response"):
        await client.request("GET", server.url(), {})


async def test_invalid_chunk_framing_is_a_protocol_error(peer, client):
    server = await peer(replying(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"))
    with pytest.raises(ProtocolError):
        await get(client, server.url())


@pytest.mark.parametrize("ending", ["unfinished", "finished"])
async def test_a_head_over_max_head_size_is_a_protocol_error(peer, client, ending):
    padding = "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(MAX_HEAD_SIZE // 1000 + 2))
    head = f"HTTP/1.1 200 OK\r\n{padding}".encode()
    head += b"Content-Length: 0\r\n\r\n" if ending == "finished" else b""
    server = await peer(after_request(lambda writer: _write_and_hang(writer, head)))
    with pytest.raises(ProtocolError, match="exceed"):
        await get(client, server.url())


async def test_a_head_just_under_max_head_size_is_fine(peer, client):
    padding = "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(MAX_HEAD_SIZE // 1000 - 4))
    server = await peer(replying(f"HTTP/1.1 200 OK\r\n{padding}".encode() + response()[17:]))
    assert await get(client, server.url()) == JSON_BODY


async def _write_and_hang(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    await asyncio.sleep(3600)


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_a_body_over_the_read_limit_is_a_protocol_error(peer, client, framing):
    body = b"y" * 2000
    answers = {
        "content-length": response(body),
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"3e8\r\n%s\r\n3e8\r\n%s\r\n0\r\n\r\n" % (body[:1000], body[1000:]),
        "until-close": b"HTTP/1.1 200 OK\r\n\r\n" + body,
    }
    server = await peer(replying(answers[framing], close=framing == "until-close"))
    async with await client.request("GET", server.url(), {}) as answer:
        with pytest.raises(ProtocolError, match="1999-byte limit"):
            await answer.read(1999)
    assert await get(client, server.url()) == body  # the same answer within the limit


async def test_switching_protocols_is_a_protocol_error(peer, client):
    server = await peer(replying(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n"))
    with pytest.raises(ProtocolError, match="switched protocols"):
        await client.request("GET", server.url(), {})


# -- bad input: nothing is sent ----------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"X-Evil": "a\r\nX-Injected: y"}, {"X-Evil": "a\nb"}, {"X-Evil": "a\rb"},
    {"X-Evil": "a\x00b"}, {"X-A:b": "v"}, {"X A": "v"}, {"": "v"}, {"X-\u00e9": "v"},
])
async def test_header_injection_is_refused_before_anything_is_sent(peer, client, headers):
    server = await peer(replying(response()))
    with pytest.raises(ValueError, match="header"):
        await client.request("GET", server.url(), headers)
    await asyncio.sleep(0.05)
    assert server.connections == 0


@pytest.mark.parametrize("suffix", [
    "/a\r\nX-Injected: y", "/a\nb", "/a?q=\r\nX: y", "/a\x00b", "/a b", "/a\tb",
])
async def test_a_url_with_cr_lf_or_nul_is_refused_before_anything_is_sent(peer, client, suffix):
    server = await peer(replying(response()))
    with pytest.raises(ValueError):
        await client.request("GET", server.url("") + suffix, {})
    await asyncio.sleep(0.05)
    assert server.connections == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http:///no-host",
                                 "not a url", "127.0.0.1:80/mcp", ""])
async def test_a_non_http_url_is_a_value_error(client, url):
    with pytest.raises(ValueError, match="not an http"):
        await client.request("GET", url, {})


# -- closing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["head", "body"])
async def test_aclose_fails_a_waiting_exchange_promptly(peer, where):
    async def quiet(writer: asyncio.StreamWriter) -> None:
        if where == "body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await asyncio.sleep(3600)

    server = await peer(after_request(quiet))
    http = HTTPClient(connect_timeout=2.0)
    exchange = asyncio.create_task(get(http, server.url(), read_timeout=30.0))
    await server.request_arrived.wait()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await http.aclose()
    with pytest.raises(HTTPClientError):
        await asyncio.wait_for(exchange, 2.0)
    assert time.monotonic() - started < 1.0
    with pytest.raises(HTTPClientError, match="closed"):
        await http.request("GET", server.url(), {})


# -- flow control ------------------------------------------------------------------------------


async def test_a_large_body_read_slowly_is_flow_controlled_and_arrives_in_order(peer, client):
    body = os.urandom(48 * 1024 * 1024)
    written = 0

    async def large(writer: asyncio.StreamWriter) -> None:
        nonlocal written
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        view = memoryview(body)
        for start in range(0, len(body), 256 * 1024):
            writer.write(view[start:start + 256 * 1024])
            await writer.drain()
            written = start + 256 * 1024

    server = await peer(after_request(large))
    digest = hashlib.sha256()
    received = 0
    async with await client.request("GET", server.url(), {}) as answer:
        await asyncio.sleep(0.5)  # not reading: the client must stop reading the socket
        stalled_at = written
        async for chunk in answer.chunks():
            digest.update(chunk)
            received += len(chunk)
            if received // (4 << 20) != (received - len(chunk)) // (4 << 20):
                await asyncio.sleep(0.01)  # a slow reader, every 4 MiB
    assert stalled_at < len(body) // 2, (stalled_at, READ_HIGH_WATER)
    assert received == len(body) and digest.digest() == hashlib.sha256(body).digest()


# -- IPv6 --------------------------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
async def test_ipv6_loopback_request_sends_a_bracketed_host_header(peer, client):
    server = await peer(replying(response()), host="::1")
    assert await get(client, server.url()) == JSON_BODY
    assert server.requests[0].header("host") == f"[::1]:{server.port}"
