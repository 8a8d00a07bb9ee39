"""A lean HTTP/1.1 client for MCP endpoints: pooled keep-alive connections on asyncio protocols.

Why not aiohttp or httpx: on the gateway's hot path every proxied call is one POST to an
upstream, and a general-purpose client costs more than the rest of the relay (measured in
`bench/http_client_choice.py`: aiohttp ~180 µs of CPU per POST on loopback, httpx more, this
client ~45 µs). What MCP needs of HTTP is small: POST, GET and DELETE with a handful of headers,
bodies that are JSON or a Server-Sent Events stream, keep-alive, TLS and bounded waits. The
response parser is httptools (llhttp, the one uvicorn uses), so no HTTP parsing is hand-written.

Shape: `HTTPClient.request()` returns a `Response` whose headers have arrived; its body is read
with `chunks()` (or `read()`), and leaving `async with` (or `close()`) hands the connection back
to its origin's pool when the body was read to the end, or closes it otherwise. Every wait is
bounded: connecting (`connect_timeout`), silence while waiting for bytes (`read_timeout`), and
optionally the whole exchange (`total_timeout`). Failures are `HTTPClientError` subclasses that
say what happened. Request headers are checked for CR, LF and NUL, so a configured header or an
echoed session id cannot smuggle another header or request.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools

#: Bytes of status line and headers a response may have before it is refused.
MAX_HEAD_SIZE = 64 * 1024
#: Body bytes buffered for a reader that is behind before the socket stops being read.
READ_HIGH_WATER = 1024 * 1024
#: Idle keep-alive connections are dropped after this long (below common server keep-alives,
#: uvicorn's 5 s among them, so a reused connection is rarely one the server is closing).
IDLE_TIMEOUT = 4.0
#: RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

#: `resolve(host, port)`: the IP address a new connection to `host` goes to. An egress
#: policy resolves and checks the name once and pins the answer for the connection, while
#: the TLS server name and the Host header stay the name (SPEC-SSRF-04).
Resolver = Callable[[str, int], Awaitable[str]]


class HTTPClientError(Exception):
    """An HTTP exchange failed before a complete response; the message says how."""


class ConnectError(HTTPClientError):
    """The TCP (or TLS) connection could not be opened."""

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class ConnectTimeout(HTTPClientError):
    """No connection within the connect timeout (or no free pooled connection in time)."""


class ReadTimeout(HTTPClientError):
    """The server sent nothing for the read timeout."""


class TotalTimeout(HTTPClientError):
    """The exchange did not complete within its total timeout."""


class ServerDisconnected(HTTPClientError):
    """The server closed the connection before the response headers."""


class IncompleteBody(HTTPClientError):
    """The connection ended in the middle of the response body."""


class ProtocolError(HTTPClientError):
    """The server's bytes are not an acceptable HTTP/1.1 response."""


class ResponseHeaders(dict[str, str]):
    """Response headers by lowercased name (repeated headers joined with ", ")."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one exchange at a time (no pipelining)."""

    def __init__(self, pool: _OriginPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = ""
        self.headers = ResponseHeaders()
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: HTTPClientError | None = None
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.head_size = 0
        self.head_fields = 0
        self._paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols, which MCP never asks for"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP response: {exc}"))
        else:
            # Counted from the bytes while the head is incomplete, and from the parsed
            # fields once it is (a whole head can come in one read).
            if self.head_size > MAX_HEAD_SIZE and (not self.headers_done or self.head_fields
                                                    > MAX_HEAD_SIZE):
                self._fail(ProtocolError(
                    f"the response headers exceed {MAX_HEAD_SIZE} bytes"))
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            if not self.headers_done:
                self.error = ServerDisconnected("the server closed the connection"
                                                + (f" ({exc})" if exc else ""))
            elif self.headers.get("content-length") is None and \
                    "chunked" not in self.headers.get("transfer-encoding", ""):
                self.complete = True  # a body delimited by the end of the connection
            else:
                self.error = IncompleteBody("the connection ended in the middle of the body")
        self.pool.forget(self)
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")
        self.head_fields += len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_fields += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        dict.__setitem__(self.headers, key, text if previous is None else f"{previous}, {text}")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        # Read here, as uvicorn does: llhttp resets its flags once the message completes.
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # -- the exchange ----------------------------------------------------------------------

    def _fail(self, error: HTTPClientError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self.error is None and not self.complete:
            self.error = HTTPClientError("the exchange was abandoned and its connection closed")
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def send(self, data: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(data)

    def take(self) -> bytes | None:
        """The next buffered body chunk, or None."""
        if not self.body:
            return None
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self._paused and self.buffered <= READ_HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def wait(self, read_timeout: float | None, deadline: float | None) -> None:
        """Until more has arrived (or failed); bounded by the read timeout and the deadline."""
        loop = asyncio.get_running_loop()
        limit = read_timeout
        total = False  # which bound the timer stands for (the error is made only if it fires)
        if deadline is not None:
            left = deadline - loop.time()
            if limit is None or left < limit:
                limit = max(left, 0.0)
                total = True
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(limit, _expire, waiter) if limit is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if waiter.result() is _EXPIRED:
            self.close()
            if total:
                raise TotalTimeout("the exchange did not complete in time")
            raise ReadTimeout(f"the server sent nothing for {read_timeout:g} s (read timeout)")


_EXPIRED: Any = object()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)


class Response:
    """A response whose status and headers have arrived; the body is read from it."""

    def __init__(self, connection: _Connection, url: str, read_timeout: float | None,
                 deadline: float | None) -> None:
        self._connection = connection
        self.url = url
        self.status = connection.status
        self.reason = connection.reason
        self.headers = connection.headers
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._released = False

    @property
    def content_type(self) -> str:
        """The media type, lowercased, without parameters ("" when there is none)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (de-chunked)."""
        connection = self._connection
        while True:
            chunk = connection.take()
            if chunk is not None:
                yield chunk
                continue
            if connection.error is not None:
                raise connection.error
            if connection.complete:
                return
            await connection.wait(self._read_timeout, self._deadline)

    async def read(self, limit: int) -> bytes:
        """The whole body; `ProtocolError` once it passes `limit` bytes."""
        length = self.content_length
        if length is not None and length > limit:
            raise ProtocolError(f"a body of {length} bytes exceeds the {limit}-byte limit")
        connection = self._connection
        if connection.complete and len(connection.body) == 1:  # the common case: all here
            body = connection.take()
            assert body is not None
            if len(body) > limit:
                raise ProtocolError(f"the body exceeds the {limit}-byte limit")
            return body
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise ProtocolError(f"the body exceeds the {limit}-byte limit")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Hand the connection back (body read to the end, keep-alive) or close it."""
        if self._released:
            return
        self._released = True
        connection = self._connection
        reusable = (connection.complete and connection.error is None and not connection.body
                    and not connection.closed and connection.keep_alive)
        if not reusable:
            connection.close()
        connection.pool.release(connection, reusable)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.close()


class _OriginPool:
    """The connections to one scheme://host:port, at most `limit` of them."""

    def __init__(self, scheme: str, host: str, port: int, ssl: ssl_module.SSLContext | None,
                 limit: int, connect_timeout: float, resolve: Resolver | None = None) -> None:
        self.scheme = scheme
        self.resolve = resolve
        self.host = host
        self.port = port
        self.ssl = ssl
        self.limit = limit
        self.connect_timeout = connect_timeout
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal is bracketed
        default_port = 443 if scheme == "https" else 80
        self.host_header = name if port == default_port else f"{name}:{port}"
        self._idle: list[_Connection] = []
        #: Every connection made and not yet lost (idle or carrying an exchange).
        self._connections: set[_Connection] = set()
        self._open = 0
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, deadline: float | None) -> _Connection:
        now = time.monotonic()
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and now - connection.idle_since < IDLE_TIMEOUT:
                    return connection
                connection.close()
            if self._open < self.limit:
                break
            # Woken when a connection comes back (idle, taken above) or goes away (room).
            await self._wait_for_room(deadline)
            now = time.monotonic()
        self._open += 1
        try:
            return await self._connect(deadline)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _wait_for_room(self, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._queue.append(waiter)
        limit = self.connect_timeout
        if deadline is not None:
            limit = min(limit, max(deadline - loop.time(), 0.0))
        try:
            async with asyncio.timeout(limit):
                await waiter
        except TimeoutError:
            raise ConnectTimeout(f"all {self.limit} connections stayed busy for {limit:g} s"
                                 ) from None
        finally:
            if waiter in self._queue:
                self._queue.remove(waiter)

    async def _connect(self, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = self.connect_timeout
        if deadline is not None:
            limit = min(limit, max(deadline - loop.time(), 0.0))
        try:
            async with asyncio.timeout(limit):
                address = self.host if self.resolve is None else await self.resolve(
                    self.host, self.port)
                _, connection = await loop.create_connection(
                    lambda: _Connection(self), address, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None)
        except TimeoutError:
            raise ConnectTimeout(f"could not connect within {limit:g} s") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}", exc) from None
        self._connections.add(connection)
        return connection

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        self._wake_one()

    def forget(self, connection: _Connection) -> None:
        """A connection ended: it no longer counts (called once, from connection_lost)."""
        self._open -= 1
        self._connections.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close every connection; exchanges still running fail with HTTPClientError."""
        for connection in list(self._connections):
            connection.close()
        self._idle.clear()


class HTTPClient:
    """Pools of keep-alive connections, one per origin.

    `ssl`: True verifies with the system's trust store, False does not verify (tests only),
    or an `ssl.SSLContext`. `limit` bounds the connections per origin. `resolve` (see
    `Resolver`) chooses the address of every new connection; its errors end the request.
    """

    def __init__(self, *, connect_timeout: float = 10.0, limit: int = 64,
                 ssl: ssl_module.SSLContext | bool = True,
                 resolve: Resolver | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.limit = limit
        self.resolve = resolve
        self._ssl_setting = ssl
        self._ssl_context: ssl_module.SSLContext | None = None
        self._pools: dict[tuple[str, str, int], _OriginPool] = {}
        self._targets: dict[str, tuple[_OriginPool, str]] = {}
        self._closed = False

    def _tls(self) -> ssl_module.SSLContext:
        if self._ssl_context is None:
            setting = self._ssl_setting
            if isinstance(setting, ssl_module.SSLContext):
                self._ssl_context = setting
            else:
                context = ssl_module.create_default_context()
                if setting is False:
                    context.check_hostname = False
                    context.verify_mode = ssl_module.CERT_NONE
                self._ssl_context = context
        return self._ssl_context

    def _route(self, url: str) -> tuple[_OriginPool, str]:
        known = self._targets.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        # On the raw URL: urlsplit silently drops CR, LF and TAB.
        if any(ord(c) <= 0x20 or c == "\x7f" for c in url):
            raise ValueError(f"the URL {url!r} contains whitespace or control characters")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname.lower(), port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _OriginPool(
                parts.scheme, parts.hostname, port,
                self._tls() if parts.scheme == "https" else None, self.limit,
                self.connect_timeout, self.resolve)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if len(self._targets) < 256:  # a client talks to a few URLs; do not grow unbounded
            self._targets[url] = (pool, target)
        return pool, target

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      body: bytes | None = None, *, read_timeout: float | None = 300.0,
                      total_timeout: float | None = None) -> Response:
        """Send one request; returns once the response headers are in (body still to read)."""
        if self._closed:
            raise HTTPClientError("the HTTP client is closed")
        pool, target = self._route(url)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {pool.host_header}\r\n"]
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if "\r" in value or "\n" in value or "\x00" in value:
                raise ValueError(f"the {name} header contains CR, LF or NUL, which HTTP "
                                 "headers cannot carry")
            lines.append(f"{name}: {value}\r\n")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total_timeout if total_timeout is not None else None
        connection = await pool.acquire(deadline)
        try:
            connection.send(head + body if body else head)
            while not connection.headers_done and connection.error is None:
                await connection.wait(read_timeout, deadline)
            if connection.error is not None:  # a bad head, an upgrade, a lost connection
                raise connection.error
        except BaseException:
            connection.close()
            pool.release(connection, False)
            raise
        return Response(connection, url, read_timeout, deadline)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()


__all__ = [
    "IDLE_TIMEOUT",
    "ConnectError",
    "ConnectTimeout",
    "HTTPClient",
    "HTTPClientError",
    "IncompleteBody",
    "ProtocolError",
    "ReadTimeout",
    "Resolver",
    "Response",
    "ResponseHeaders",
    "ServerDisconnected",
    "TotalTimeout",
]
