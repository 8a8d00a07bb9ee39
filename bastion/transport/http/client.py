"""The Streamable HTTP transport, client side: both eras, and the 2024-11-05 HTTP+SSE fallback.

`StreamableHTTPChannel` is a `Channel`, so the existing `Session` (correlation, ids, timeouts,
progress, cancellation, serving a legacy server's requests) and `ClientConnection` (era
detection) run over HTTP unchanged. The channel turns every HTTP outcome into a JSON-RPC
message for `read_frame`, which is all era detection needs: a 400 carrying -32022 reaches the
probe as that error (modern, fix the version); a 4xx without a modern body reaches it as a
plain error (legacy `initialize` follows); an `initialize` refused with 400/404/405 makes the
channel try the old HTTP+SSE transport before it gives up.

What is HTTP-specific stays here:

* every outgoing message is its own POST; requests run in their own task, so `write_frame`
  never waits on the server, and their JSON body or SSE events go to `read_frame`;
* modern requests carry MCP-Protocol-Version (from `_meta`), Mcp-Method, Mcp-Name and
  Mcp-Param-* (from the `x-mcp-header` annotations of the tools this channel saw listed).
  Tools whose annotations are invalid are removed from tools/list results with a warning; a
  -32020 answer to tools/call re-lists the tools and retries once. Closing the response stream
  is the cancellation, so `notifications/cancelled` for a modern request aborts its POST;
* legacy: MCP-Session-Id and MCP-Protocol-Version learnt from the initialize response; a 404
  re-initializes once and retries; the GET stream after `initialized`; SEP-1699 resumption
  through GET + Last-Event-ID when a POST stream ends before its response; DELETE on close.

Failures with no JSON-RPC body (connection refused, timeouts, an HTTP error page, a broken
SSE stream) are delivered as the error response of the request that failed, code -32603, with
a message that names the cause and `data["http"]` describing it (`http_failure()` reads it);
the connection carries on, because each request is its own exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from bastion import __version__
from bastion.protocol.errors import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    MODERN_ERROR_CODES,
    MCPError,
)
from bastion.protocol.headers import (
    METHOD_HEADER,
    NAME_FIELDS,
    NAME_HEADER,
    PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
    InvalidHeaderAnnotation,
    encode_value,
    header_params,
    param_headers,
)
from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE
from bastion.protocol.meta import PROGRESS_TOKEN, PROTOCOL_VERSION, get_meta
from bastion.transport.base import EndOfStream

logger = logging.getLogger("bastion.transport.http.client")

JSON = dict[str, Any]
RequestId = str | int

ACCEPT_POST = "application/json, text/event-stream"
ACCEPT_SSE = "text/event-stream"
USER_AGENT = f"bastion/{__version__}"
#: How much of an error body is read (it is only quoted in the error message).
ERROR_BODY_LIMIT = 64 * 1024
#: The SSE reconnection delay when the server named none (the SSE spec leaves it to us).
DEFAULT_RETRY_MS = 1000
#: A server's `retry` is obeyed up to this bound, so garbage cannot park a request forever.
MAX_RETRY_MS = 300_000
#: Resumption attempts in a row that bring no new event before a request gives up.
MAX_RESUME_ATTEMPTS = 5
#: Failed GET-stream connections in a row before the channel stops listening.
MAX_LISTEN_FAILURES = 5
MAX_TOOL_PAGES = 100
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


# -- errors ----------------------------------------------------------------------------------


class HTTPTransportError(Exception):
    """An HTTP exchange failed without a JSON-RPC answer (network, timeout, status, SSE)."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None,
                 www_authenticate: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.www_authenticate = www_authenticate

    def details(self) -> JSON:
        """What `data["http"]` of the delivered error says."""
        info: JSON = {"error": type(self).__name__}
        if self.status is not None:
            info["status"] = self.status
        if self.url is not None:
            info["url"] = self.url
        if self.www_authenticate is not None:
            info["wwwAuthenticate"] = self.www_authenticate
        return info


class HTTPStatusError(HTTPTransportError):
    """The server answered with an HTTP error status and no JSON-RPC error body."""


class SSEError(ValueError):
    """A Server-Sent Events stream broke the format or its size bounds."""


class SSELineTooLong(SSEError):
    """One SSE line grew past the bound without a line ending."""


class SSEEventTooLarge(SSEError):
    """The data of one SSE event grew past the bound."""


def http_failure(exc: MCPError) -> JSON | None:
    """The HTTP details of an error this transport delivered itself, or None."""
    data = exc.data
    if isinstance(data, dict) and isinstance(data.get("http"), dict):
        return data["http"]
    return None


# -- Server-Sent Events ----------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; `data` stays bytes because it goes straight to a JSON parser."""

    event: str
    data: bytes
    id: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class SSEDecoder:
    """An incremental `text/event-stream` parser with bounded memory (WHATWG rules).

    Lines end in CRLF, LF or CR (also across chunk boundaries); `:` lines are comments
    (keep-alives); `id` and `retry` are remembered for reconnection. A line longer than
    `max_line` or an event whose data passes `max_event` raises a named `SSEError`.
    """

    def __init__(self, *, max_line: int = DEFAULT_MAX_MESSAGE_SIZE + 1024,
                 max_event: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._buffer = bytearray()
        self._scanned = 0
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume bytes; return the events they complete."""
        if not chunk:
            return []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        self._after_cr = False
        buffer = self._buffer
        buffer += chunk
        if not self._started and len(buffer) >= 3:
            self._started = True
            if buffer[:3] == b"\xef\xbb\xbf":
                del buffer[:3]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer, self._scanned):
            line = bytes(buffer[start:match.start()])
            start = match.end()
            if len(line) > self.max_line:
                raise SSELineTooLong(f"an SSE line of {len(line)} bytes exceeds the "
                                     f"{self.max_line}-byte limit")
            event = self._line(line)
            if event is not None:
                events.append(event)
        if start:
            if buffer[start - 1:start] == b"\r" and start == len(buffer):
                self._after_cr = True
            del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self.max_line:
            raise SSELineTooLong(f"an SSE line grew past the {self.max_line}-byte limit "
                                 "without a line ending")
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[:1] == b":":
            return None  # a comment: keep-alive
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise SSEEventTooLarge(f"an SSE event's data exceeds the {self.max_event}-byte "
                                       "limit")
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry_ms = min(int(value), MAX_RETRY_MS)
        return None  # unknown fields are ignored, as the SSE spec says

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return SSEEvent(event or "message", b"\n".join(data), self.last_event_id)


# -- the channel -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPTimeouts:
    """Every HTTP wait is bounded; the session's own request timeout applies on top."""

    #: Opening a TCP (and TLS) connection.
    connect: float = 10.0
    #: Silence on a response (before its headers, or between bytes of its body or stream).
    read: float = 300.0
    #: Whole exchanges that should be quick: notifications, replies, the SSE endpoint.
    short: float = 30.0
    #: The DELETE that ends a legacy session when the channel closes.
    close: float = 5.0


@dataclass(slots=True)
class _InFlight:
    method: str
    modern: bool
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Reply:
    """The JSON-RPC answer to one POST, with the HTTP facts that steer recovery."""

    message: JSON
    status: int
    session_id: str | None = None
    #: The message as received, when it can be handed on unchanged (no re-serializing).
    raw: bytes | None = None

    @property
    def error_code(self) -> int | None:
        error = self.message.get("error")
        return error.get("code") if isinstance(error, dict) else None


class StreamableHTTPChannel:
    """A `Channel` to one MCP endpoint over Streamable HTTP (or 2024-11-05 HTTP+SSE)."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = None,
        timeouts: HTTPTimeouts | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        listen: bool = True,
        http: aiohttp.ClientSession | None = None,
        ssl: Any = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        #: The URL without credentials or query, for messages and logs.
        self.display_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        self.timeouts = timeouts or HTTPTimeouts()
        self.max_message_size = max_message_size
        self.listen = listen
        self._base_headers = {"User-Agent": USER_AGENT, **(headers or {}), **(auth or {})}
        self._http = http
        self._owns_http = http is None
        self._ssl = ssl
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self._inflight: dict[RequestId, _InFlight] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._internal_ids = itertools.count(1)
        # legacy state
        self.session_id: str | None = None
        self.legacy_version: str | None = None
        self._init_message: JSON | None = None
        self._reinit_lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        # 2024-11-05 HTTP+SSE state
        self.sse_endpoint: str | None = None
        self._sse_pending: dict[RequestId, str] = {}
        # modern state
        self.modern_version: str | None = None
        #: `{tool name: {header name: property path}}` from modern tools/list results.
        self.tool_headers: dict[str, dict[str, tuple[str, ...]]] = {}
        #: Tools removed from tools/list for invalid x-mcp-header annotations, and why.
        self.rejected_tools: dict[str, str] = {}
        self.protocol_errors = 0
        #: The last failure delivered as an error (it explains a failed era detection).
        self.last_failure: HTTPTransportError | None = None
        #: Message events read from SSE streams (the GET stream uses it to tell life from flapping).
        self.events_received = 0

    # -- Channel -------------------------------------------------------------------------

    async def read_frame(self) -> bytes:
        frame = await self._inbox.get()
        if frame is None:
            self._inbox.put_nowait(None)  # every later read ends too
            raise EndOfStream
        return frame

    async def write_frame(self, data: bytes) -> None:
        if self._closed:
            raise EndOfStream
        message = orjson.loads(data)
        method = message.get("method")
        if method is None:
            await self._send_reply(message, data)
        elif "id" in message:
            self._start_request(message, data)
        elif method == "notifications/cancelled":
            self._cancel(message, data)
        else:
            await self._send_notification(message, data)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [f.task for f in self._inflight.values() if f.task is not None]
        tasks += list(self._background)
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        if self.session_id is not None and self.sse_endpoint is None and self._http is not None:
            await self._delete_session()
        if self._owns_http and self._http is not None:
            await self._http.close()
        self._inbox.put_nowait(None)

    # -- plumbing ------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30, ssl=self._ssl),
                # Auto-decompression stays on; cookies are not MCP state: ignore them.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    def _timeout(self, *, read: float | None, total: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total, sock_connect=self.timeouts.connect,
                                     sock_read=read)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _deliver_frame(self, frame: bytes) -> None:
        if not self._closed:
            self._inbox.put_nowait(frame)

    def _deliver_error(self, request_id: RequestId, exc: HTTPTransportError) -> None:
        self.last_failure = exc
        self._deliver_frame(orjson.dumps({
            "jsonrpc": "2.0", "id": request_id,
            "error": {"code": INTERNAL_ERROR, "message": str(exc),
                      "data": {"http": exc.details()}},
        }))

    def _internal_id(self) -> str:
        # The session numbers its requests with integers: strings never collide with them.
        return f"bastion-http-{next(self._internal_ids)}"

    def _post_headers(self, message: JSON, modern: bool) -> dict[str, str]:
        headers = {**self._base_headers, "Accept": ACCEPT_POST,
                   "Content-Type": "application/json"}
        method = message.get("method")
        if modern:
            params = message.get("params") or {}
            version = get_meta(params).get(PROTOCOL_VERSION) or self.modern_version
            if isinstance(version, str):
                headers[PROTOCOL_VERSION_HEADER] = version
            if isinstance(method, str):
                headers[METHOD_HEADER] = method
                headers.update(self._routing_headers(method, params))
            return headers
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        if self.legacy_version is not None and method != "initialize":
            headers[PROTOCOL_VERSION_HEADER] = self.legacy_version
        return headers

    def _routing_headers(self, method: str, params: JSON) -> dict[str, str]:
        headers: dict[str, str] = {}
        field_name = NAME_FIELDS.get(method)
        name = params.get(field_name) if field_name else None
        if isinstance(name, str):
            headers[NAME_HEADER] = encode_value(name)
        if method == "tools/call" and isinstance(name, str):
            if name in self.rejected_tools:
                raise HTTPTransportError(
                    f"tool {name!r} was rejected for invalid x-mcp-header annotations "
                    f"({self.rejected_tools[name]}); it cannot be called over HTTP")
            try:
                headers.update(param_headers(self.tool_headers.get(name, {}),
                                             params.get("arguments")))
            except ValueError as exc:
                raise HTTPTransportError(
                    f"tools/call {name!r}: an argument cannot be mirrored into its "
                    f"Mcp-Param header: {exc}") from None
        return headers

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        """Turn library and format errors into an `HTTPTransportError` that names the cause."""
        try:
            yield
        except HTTPTransportError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise HTTPTransportError(
                f"{what}: could not connect within {self.timeouts.connect:g} s",
                url=self.display_url) from None
        except aiohttp.SocketTimeoutError:
            raise HTTPTransportError(
                f"{what}: the server sent nothing for {self.timeouts.read:g} s (read timeout)",
                url=self.display_url) from None
        except TimeoutError:
            raise HTTPTransportError(f"{what}: timed out", url=self.display_url) from None
        except aiohttp.ClientConnectorError as exc:
            raise HTTPTransportError(f"{what}: cannot connect: {exc.os_error}",
                                     url=self.display_url) from None
        except aiohttp.ServerDisconnectedError:
            raise HTTPTransportError(f"{what}: the server closed the connection",
                                     url=self.display_url) from None
        except aiohttp.ClientPayloadError as exc:
            raise HTTPTransportError(f"{what}: the response body was cut off ({exc})",
                                     url=self.display_url) from None
        except aiohttp.ClientError as exc:
            raise HTTPTransportError(f"{what}: {type(exc).__name__}: {exc}",
                                     url=self.display_url) from None
        except SSEError as exc:
            raise HTTPTransportError(f"{what}: invalid SSE stream: {exc}",
                                     url=self.display_url) from None

    async def _read_body(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        if response.content_length is not None and response.content_length > limit:
            raise HTTPTransportError(
                f"{what}: a body of {response.content_length} bytes exceeds the {limit}-byte "
                "limit", status=response.status, url=self.display_url)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise HTTPTransportError(f"{what}: the body exceeds the {limit}-byte limit",
                                         status=response.status, url=self.display_url)
            chunks.append(chunk)
        return b"".join(chunks)

    def _decoder(self) -> SSEDecoder:
        return SSEDecoder(max_line=self.max_message_size + 1024, max_event=self.max_message_size)

    # -- incoming messages ---------------------------------------------------------------

    def _parse(self, data: bytes, where: str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            self.protocol_errors += 1
            logger.warning("%s sent a message that is not JSON (%s): %r", self.display_url,
                           where, data[:120])
            return None

    def _receive(self, message: Any, raw: bytes, *, modern: bool,
                 own_id: RequestId | None = None) -> JSON | None:
        """Route one message from a response body or stream; return it if it is `own_id`'s."""
        if not isinstance(message, dict):
            self._deliver_frame(raw)  # the session judges (and logs) anything else
            return None
        if "method" in message:
            if modern and "id" in message:
                # Modern streams carry no server requests (MRTR replaced them): refuse to act.
                self.protocol_errors += 1
                logger.warning("%s sent a %r request on a modern response stream; ignored",
                               self.display_url, message.get("method"))
                return None
            self._deliver_frame(raw)
            return None
        request_id = message.get("id")
        if own_id is not None and request_id == own_id:
            return message
        self._deliver_reply(message, raw)
        return None

    def _deliver_reply(self, message: JSON, raw: bytes | None = None) -> None:
        """Hand a response to the session, after the transport's own bookkeeping."""
        request_id = message.get("id")
        inflight = self._inflight.get(request_id) if isinstance(request_id, str | int) else None
        if inflight is not None:
            if inflight.task is not None and inflight.task is not asyncio.current_task():
                # Answered on another stream (GET, resumption): its POST has nothing to wait for.
                inflight.task.cancel()
            if (inflight.modern and inflight.method == "tools/list"
                    and self._learn_tools(message)):
                raw = None
        self._deliver_frame(raw if raw is not None else orjson.dumps(message))

    def _learn_tools(self, message: JSON) -> bool:
        """Record each listed tool's header parameters and drop invalid tools (True if any)."""
        result = message.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return False
        kept: list[Any] = []
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str):
                kept.append(tool)
                continue
            try:
                params = header_params(tool.get("inputSchema"))
            except InvalidHeaderAnnotation as exc:
                logger.warning("%s: tool %r dropped from tools/list: %s", self.display_url,
                               name, exc)
                self.rejected_tools[name] = str(exc)
                self.tool_headers.pop(name, None)
                continue
            self.rejected_tools.pop(name, None)
            self.tool_headers[name] = params
            kept.append(tool)
        if len(kept) == len(tools):
            return False
        result["tools"] = kept
        return True

    # -- requests ------------------------------------------------------------------------

    def _start_request(self, message: JSON, data: bytes) -> None:
        request_id = message["id"]
        modern = PROTOCOL_VERSION in get_meta(message.get("params"))
        if modern:
            version = get_meta(message.get("params")).get(PROTOCOL_VERSION)
            self.modern_version = version if isinstance(version, str) else self.modern_version
        inflight = _InFlight(message["method"], modern)
        self._inflight[request_id] = inflight
        inflight.task = asyncio.create_task(self._run_request(message, data, inflight),
                                            name=f"http:{message['method']}:{request_id}")

    async def _run_request(self, message: JSON, data: bytes, inflight: _InFlight) -> None:
        request_id = message["id"]
        try:
            reply = await self._request_with_recovery(message, data, inflight.modern)
            if reply is not None:
                if message["method"] == "initialize":
                    self._apply_initialize(message, reply)
                self._deliver_reply(reply.message, reply.raw)
        except asyncio.CancelledError:
            raise
        except HTTPTransportError as exc:
            self._deliver_error(request_id, exc)
        except Exception as exc:  # a bug must not leave the caller waiting for its timeout
            logger.exception("%s: %s failed", self.display_url, message["method"])
            self._deliver_error(request_id, HTTPTransportError(
                f"{message['method']}: the HTTP client failed: {exc!r}", url=self.display_url))
        finally:
            if self._inflight.get(request_id) is inflight:
                del self._inflight[request_id]

    async def _request_with_recovery(self, message: JSON, data: bytes,
                                     modern: bool) -> _Reply | None:
        method = message["method"]
        if self.sse_endpoint is not None:
            await self._post_request_to_endpoint(message, data)
            return None  # the answer arrives on the SSE stream
        stale_session = self.session_id
        try:
            reply = await self._roundtrip(message, data, modern)
        except HTTPStatusError as exc:
            if exc.status == 404 and stale_session is not None and method != "initialize":
                await self._reinitialize(stale_session)
                return await self._roundtrip(message, data, modern)
            if (method == "initialize" and exc.status in (400, 404, 405)
                    and await self._open_sse_transport()):
                await self._post_request_to_endpoint(message, data)
                return None
            raise
        if reply.status == 404 and stale_session is not None and method != "initialize":
            await self._reinitialize(stale_session)
            return await self._roundtrip(message, data, modern)
        if (method == "initialize" and reply.status in (400, 404, 405)
                and reply.error_code not in MODERN_ERROR_CODES
                and await self._open_sse_transport()):
            await self._post_request_to_endpoint(message, data)
            return None
        if modern and method == "tools/call" and reply.error_code == HEADER_MISMATCH:
            # The tool's annotations may have changed since we listed it (spec: re-list, retry).
            logger.info("%s: tools/call got HeaderMismatch; re-listing tools and retrying",
                        self.display_url)
            await self._relist_tools(message)
            return await self._roundtrip(message, data, modern)
        return reply

    async def _roundtrip(self, message: JSON, data: bytes, modern: bool) -> _Reply:
        """POST one request; its answer from a JSON body, an SSE stream, or a resumed stream.

        Other messages on the stream (progress, logs, a legacy server's requests) go to the
        session as they arrive. Raises HTTPTransportError when no JSON-RPC answer comes.
        """
        method = message["method"]
        request_id = message["id"]
        headers = self._post_headers(message, modern)
        what = f"POST {self.display_url} ({method})"
        resume_from: tuple[str, int] | None = None
        with self._failures(what):
            async with self._client().post(
                self.url, data=data, headers=headers, timeout=self._timeout(read=self.timeouts.read)
            ) as response:
                status = response.status
                session_id = response.headers.get(SESSION_HEADER)
                if 200 <= status < 300 and status != 202:
                    if response.content_type == ACCEPT_SSE:
                        decoder = self._decoder()
                        found = await self._read_stream(response, decoder, request_id, modern)
                        if found is not None:
                            return _Reply(found[0], status, session_id, found[1])
                        if modern or decoder.last_event_id is None:
                            raise HTTPTransportError(
                                f"{what}: the server ended the SSE stream without answering"
                                + ("" if modern else " and gave no event id to resume from"),
                                status=status, url=self.display_url)
                        resume_from = (decoder.last_event_id,
                                       decoder.retry_ms if decoder.retry_ms is not None
                                       else DEFAULT_RETRY_MS)
                    else:
                        body = await self._read_body(response, self.max_message_size, what)
                        answer = self._answer_in_body(body, request_id, what, status)
                        raw = body if answer.get("id") == request_id else None
                        return _Reply(answer, status, session_id, raw)
                elif status == 202:
                    raise HTTPTransportError(
                        f"{what}: 202 Accepted with no body, but a request needs a response",
                        status=status, url=self.display_url)
                else:
                    return await self._error_reply(response, request_id, what, session_id)
        assert resume_from is not None
        answer, raw = await self._resume(request_id, *resume_from, what)
        return _Reply(answer, 200, None, raw)

    def _answer_in_body(self, body: bytes, request_id: RequestId, what: str,
                        status: int) -> JSON:
        answer = self._parse(body, "JSON body")
        if isinstance(answer, dict) and "method" not in answer:
            if answer.get("id") == request_id:
                return answer
            if answer.get("id") is None:  # an error the server could not tie to the request
                return {**answer, "id": request_id}
        raise HTTPTransportError(f"{what}: the body is not the JSON-RPC response to the request "
                                 f"({body[:80]!r})", status=status, url=self.display_url)

    async def _error_reply(self, response: aiohttp.ClientResponse, request_id: RequestId,
                           what: str, session_id: str | None) -> _Reply:
        status = response.status
        try:
            body = await self._read_body(response, ERROR_BODY_LIMIT, what)
        except HTTPTransportError:
            body = b""
        error = _jsonrpc_error(body)
        if error is not None:
            # The server explained itself in JSON-RPC: that is the answer (ids may be null).
            return _Reply({"jsonrpc": "2.0", "id": request_id, "error": error}, status,
                          session_id)
        excerpt = body[:200].decode("utf-8", "replace").strip()
        raise HTTPStatusError(
            f"{what}: HTTP {status} {response.reason or ''}".rstrip()
            + (f": {excerpt}" if excerpt else ""),
            status=status, url=self.display_url,
            www_authenticate=response.headers.get("WWW-Authenticate"))

    async def _read_stream(self, response: aiohttp.ClientResponse, decoder: SSEDecoder,
                           request_id: RequestId | None,
                           modern: bool) -> tuple[JSON, bytes] | None:
        """Read SSE events until `request_id`'s answer (returned, with its bytes) or the end."""
        where = "SSE stream"
        async for chunk in response.content.iter_any():
            for event in decoder.feed(chunk):
                if event.event != "message":
                    logger.debug("%s: ignoring SSE event %r", self.display_url, event.event)
                    continue
                if not event.data.strip():
                    continue  # a priming event: it only carries an id (and maybe retry)
                self.events_received += 1
                message = self._parse(event.data, where)
                if message is None:
                    continue
                answer = self._receive(message, event.data, modern=modern, own_id=request_id)
                if answer is not None:
                    return answer, event.data
        return None

    async def _resume(self, request_id: RequestId, last_event_id: str, retry_ms: int,
                      what: str) -> tuple[JSON, bytes]:
        """SEP-1699: after `retry` ms, GET with Last-Event-ID until the answer comes."""
        attempts = 0
        while True:
            await asyncio.sleep(retry_ms / 1000)
            headers = self._get_headers()
            headers["Last-Event-ID"] = last_event_id
            resume_what = f"GET {self.display_url} (resuming {what})"
            with self._failures(resume_what):
                async with self._client().get(
                    self.url, headers=headers, timeout=self._timeout(read=self.timeouts.read)
                ) as response:
                    if response.status != 200 or response.content_type != ACCEPT_SSE:
                        # Not an HTTPStatusError: a 404 here must not re-send the request,
                        # which the server may already have carried out.
                        raise HTTPTransportError(
                            f"{what}: the SSE stream ended before the response, and resuming "
                            f"it failed with HTTP {response.status}",
                            status=response.status, url=self.display_url)
                    decoder = self._decoder()
                    decoder.last_event_id = last_event_id
                    answer = await self._read_stream(response, decoder, request_id, False)
            if answer is not None:
                return answer
            attempts = 0 if decoder.last_event_id != last_event_id else attempts + 1
            if attempts >= MAX_RESUME_ATTEMPTS:
                raise HTTPTransportError(
                    f"{what}: gave up after {attempts} resumptions that brought nothing new",
                    url=self.display_url)
            last_event_id = decoder.last_event_id or last_event_id
            if decoder.retry_ms is not None:
                retry_ms = decoder.retry_ms

    def _get_headers(self) -> dict[str, str]:
        headers = {**self._base_headers, "Accept": ACCEPT_SSE}
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        if self.legacy_version is not None:
            headers[PROTOCOL_VERSION_HEADER] = self.legacy_version
        return headers

    async def _internal_request(self, method: str, params: JSON, modern: bool) -> JSON:
        """A request of the transport's own (re-initialize, re-list): its result."""
        message = {"jsonrpc": "2.0", "id": self._internal_id(), "method": method,
                   "params": params}
        reply = await self._roundtrip(message, orjson.dumps(message), modern)
        error = reply.message.get("error")
        if isinstance(error, dict):
            raise HTTPTransportError(f"{method} failed: {error.get('message')}",
                                     status=reply.status, url=self.display_url)
        if method == "initialize":
            self._apply_initialize(message, reply)
        result = reply.message.get("result")
        return result if isinstance(result, dict) else {}

    # -- legacy session ------------------------------------------------------------------

    def _apply_initialize(self, message: JSON, reply: _Reply) -> None:
        result = reply.message.get("result")
        if not isinstance(result, dict):
            return
        self._init_message = message
        version = result.get("protocolVersion")
        self.legacy_version = version if isinstance(version, str) else None
        if reply.session_id is not None:
            if not _VISIBLE_ASCII.match(reply.session_id):
                raise HTTPTransportError(
                    f"{self.display_url} assigned a session id with characters outside visible "
                    f"ASCII: {reply.session_id[:40]!r}", url=self.display_url)
            self.session_id = reply.session_id

    async def _reinitialize(self, stale_session: str) -> None:
        """The server forgot our session (404): start a new one, once, for everyone."""
        async with self._reinit_lock:
            if self.session_id != stale_session:
                return  # another request already did it
            if self._init_message is None:
                raise HTTPTransportError("the session expired before it was initialized",
                                         status=404, url=self.display_url)
            logger.info("%s: session %s expired (404); initializing a new one",
                        self.display_url, stale_session[:12])
            self.session_id = None
            if self._listener is not None:
                self._listener.cancel()
                self._listener = None
            await self._internal_request("initialize", self._init_message.get("params") or {},
                                         False)
            await self._send_notification({"jsonrpc": "2.0",
                                           "method": "notifications/initialized"}, None)

    def _start_listener(self) -> None:
        if self.listen and self.sse_endpoint is None and not self._closed:
            if self._listener is not None:
                self._listener.cancel()
            self._listener = asyncio.create_task(self._listen(), name="http:get-stream")

    async def _listen(self) -> None:
        """The legacy GET stream: server requests and notifications unrelated to any POST."""
        last_event_id: str | None = None
        failures = 0
        delay_ms = DEFAULT_RETRY_MS
        what = f"GET {self.display_url}"
        while not self._closed:
            headers = self._get_headers()
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            received = self.events_received
            progressed = False
            try:
                with self._failures(what):
                    async with self._client().get(
                        self.url, headers=headers, timeout=self._timeout(read=None)
                    ) as response:
                        if response.status == 405:
                            logger.debug("%s offers no GET stream (405)", self.display_url)
                            return
                        if response.status != 200 or response.content_type != ACCEPT_SSE:
                            if 400 <= response.status < 500 and response.status != 429:
                                logger.info("%s: GET stream refused with HTTP %s; not "
                                            "listening", self.display_url, response.status)
                                return
                            raise HTTPStatusError(f"{what}: HTTP {response.status}",
                                                  status=response.status)
                        decoder = self._decoder()
                        decoder.last_event_id = last_event_id
                        try:
                            await self._read_stream(response, decoder, None, False)
                        finally:
                            progressed = decoder.last_event_id != last_event_id
                            last_event_id = decoder.last_event_id
                            if decoder.retry_ms is not None:
                                delay_ms = decoder.retry_ms
                failures = 0 if progressed or self.events_received > received else failures + 1
            except HTTPTransportError as exc:
                failures += 1
                logger.info("%s: GET stream failed (%s)", self.display_url, exc)
            if failures >= MAX_LISTEN_FAILURES:
                logger.warning("%s: GET stream failed %d times in a row; not listening",
                               self.display_url, failures)
                return
            # A stream that brings nothing backs off, so a flapping server is not hammered.
            await asyncio.sleep(min(delay_ms * 2 ** failures, MAX_RETRY_MS) / 1000)

    async def _delete_session(self) -> None:
        headers = {**self._base_headers}
        headers[SESSION_HEADER] = self.session_id or ""
        if self.legacy_version is not None:
            headers[PROTOCOL_VERSION_HEADER] = self.legacy_version
        try:
            async with self._client().delete(
                self.url, headers=headers,
                timeout=self._timeout(read=self.timeouts.close, total=self.timeouts.close),
            ) as response:
                if response.status not in (200, 202, 204, 404, 405):
                    logger.info("%s: DELETE of the session answered HTTP %s", self.display_url,
                                response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("%s: DELETE of the session failed: %r", self.display_url, exc)

    # -- one-way messages ----------------------------------------------------------------

    def _cancel(self, message: JSON, data: bytes) -> None:
        """`notifications/cancelled`: modern closes the stream; legacy also tells the server."""
        params = message.get("params") or {}
        request_id = params.get("requestId")
        known = isinstance(request_id, str | int)
        inflight = self._inflight.get(request_id) if known else None
        if inflight is not None and inflight.task is not None:
            inflight.task.cancel()
        if known:
            self._sse_pending.pop(request_id, None)
        modern = inflight.modern if inflight is not None else self.legacy_version is None
        if not modern:
            # Not awaited: a request that timed out must not wait for a hung server again.
            self._spawn(self._notify_quietly(message, data))

    async def _notify_quietly(self, message: JSON, data: bytes) -> None:
        try:
            await self._send_notification(message, data)
        except HTTPTransportError as exc:
            logger.info("%s: %s", self.display_url, exc)

    async def _send_notification(self, message: JSON, data: bytes | None) -> None:
        data = data if data is not None else orjson.dumps(message)
        method = message["method"]
        if self.sse_endpoint is not None:
            await self._post_to_endpoint(data, method)
            return
        stale_session = self.session_id
        try:
            await self._post_oneway(message, data, method)
        except HTTPStatusError as exc:
            if exc.status != 404 or stale_session is None or method == "notifications/initialized":
                raise
            await self._reinitialize(stale_session)
            await self._post_oneway(message, data, method)
        if method == "notifications/initialized":
            self._start_listener()

    async def _send_reply(self, message: JSON, data: bytes) -> None:
        """A legacy server's request answered by the session: POST it (errors are logged)."""
        try:
            if self.sse_endpoint is not None:
                await self._post_to_endpoint(data, "a response")
            else:
                await self._post_oneway(message, data, "a response")
        except HTTPTransportError as exc:
            logger.warning("%s: could not deliver the answer to request %r: %s",
                           self.display_url, message.get("id"), exc)

    async def _post_oneway(self, message: JSON, data: bytes, what_method: str) -> None:
        """POST a notification or a response; the server says 202 (or another 2xx)."""
        modern = self.legacy_version is None and self.modern_version is not None
        headers = self._post_headers(message, modern)
        what = f"POST {self.display_url} ({what_method})"
        with self._failures(what):
            async with self._client().post(
                self.url, data=data, headers=headers,
                timeout=self._timeout(read=self.timeouts.short, total=self.timeouts.short),
            ) as response:
                if 200 <= response.status < 300:
                    return
                reply = await self._error_reply(response, 0, what, None)  # raises if no body
                error = reply.message["error"]
                raise HTTPStatusError(
                    f"{what}: HTTP {response.status}: {error.get('message')} "
                    f"(code {error.get('code')})", status=response.status, url=self.display_url)

    # -- 2024-11-05 HTTP+SSE ---------------------------------------------------------------

    async def _open_sse_transport(self) -> bool:
        """GET the URL; a first `endpoint` event means the old HTTP+SSE transport."""
        what = f"GET {self.display_url} (HTTP+SSE endpoint)"
        response: aiohttp.ClientResponse | None = None
        decoder = self._decoder()
        events: list[SSEEvent] = []
        target: str | None = None
        try:
            with self._failures(what):
                response = await self._client().get(
                    self.url, headers={**self._base_headers, "Accept": ACCEPT_SSE},
                    timeout=self._timeout(read=None))
                if response.status == 200 and response.content_type == ACCEPT_SSE:
                    async with asyncio.timeout(self.timeouts.short):
                        async for chunk in response.content.iter_any():
                            events = decoder.feed(chunk)
                            if events:
                                break
                if events and events[0].event == "endpoint":
                    target = urljoin(self.url, events[0].text.strip())
                    if _origin(target) != _origin(self.url):
                        logger.warning("%s: the HTTP+SSE endpoint %r is on another origin; "
                                       "refused", self.display_url, target)
                        target = None
        except HTTPTransportError as exc:
            logger.debug("%s: no HTTP+SSE transport either (%s)", self.display_url, exc)
        finally:
            if target is None and response is not None:
                response.close()
        if target is None or response is None:
            return False
        self.sse_endpoint = target
        logger.info("%s speaks the 2024-11-05 HTTP+SSE transport; posting to %s",
                    self.display_url, target)
        self._spawn(self._read_sse_transport(response, decoder, events[1:]))
        return True

    async def _read_sse_transport(self, response: aiohttp.ClientResponse, decoder: SSEDecoder,
                                  pending: list[SSEEvent]) -> None:
        where = "HTTP+SSE stream"
        try:
            for event in pending:
                self._on_transport_event(event, where)
            with self._failures(f"GET {self.display_url}"):
                async for chunk in response.content.iter_any():
                    for event in decoder.feed(chunk):
                        self._on_transport_event(event, where)
            logger.info("%s closed the HTTP+SSE stream", self.display_url)
        except HTTPTransportError as exc:
            logger.warning("%s: the HTTP+SSE stream failed: %s", self.display_url, exc)
        finally:
            response.close()
            # The old transport has no resumption: without its stream the session is over.
            self._inbox.put_nowait(None)

    def _on_transport_event(self, event: SSEEvent, where: str) -> None:
        if event.event != "message" or not event.data.strip():
            return
        message = self._parse(event.data, where)
        if message is None:
            return
        if isinstance(message, dict) and "method" not in message:
            request_id = message.get("id")
            method = self._sse_pending.pop(request_id, None) if isinstance(
                request_id, str | int) else None
            result = message.get("result")
            if method == "initialize" and isinstance(result, dict):
                version = result.get("protocolVersion")
                self.legacy_version = version if isinstance(version, str) else None
        self._receive(message, event.data, modern=False)

    async def _post_request_to_endpoint(self, message: JSON, data: bytes) -> None:
        # Remembered until the answer arrives on the stream (the POST only says 202).
        self._sse_pending[message["id"]] = message["method"]
        try:
            await self._post_to_endpoint(data, message["method"])
        except BaseException:
            self._sse_pending.pop(message["id"], None)
            raise

    async def _post_to_endpoint(self, data: bytes, method: str) -> None:
        assert self.sse_endpoint is not None
        what = f"POST {self.sse_endpoint} ({method})"
        with self._failures(what):
            async with self._client().post(
                self.sse_endpoint, data=data,
                headers={**self._base_headers, "Content-Type": "application/json"},
                timeout=self._timeout(read=self.timeouts.short, total=self.timeouts.short),
            ) as response:
                if not 200 <= response.status < 300:
                    body = await self._read_body(response, ERROR_BODY_LIMIT, what)
                    raise HTTPStatusError(
                        f"{what}: HTTP {response.status}: "
                        f"{body[:200].decode('utf-8', 'replace').strip()}",
                        status=response.status, url=self.sse_endpoint)

    # -- modern tools ----------------------------------------------------------------------

    async def _relist_tools(self, failed: JSON) -> None:
        meta = dict(get_meta(failed.get("params")))
        meta.pop(PROGRESS_TOKEN, None)
        cursor: str | None = None
        for _page in range(MAX_TOOL_PAGES):
            params: JSON = {"_meta": meta}
            if cursor is not None:
                params["cursor"] = cursor
            result = await self._internal_request("tools/list", params, True)
            self._learn_tools({"result": result})
            cursor = result.get("nextCursor") if isinstance(result.get("nextCursor"), str) else None
            if not cursor:
                return


def _jsonrpc_error(body: bytes) -> JSON | None:
    """The `error` member of a JSON-RPC error body, or None when the body is anything else."""
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if (isinstance(error, dict) and isinstance(error.get("code"), int)
            and not isinstance(error.get("code"), bool) and isinstance(error.get("message"), str)):
        return error
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


__all__ = [
    "HTTPStatusError",
    "HTTPTimeouts",
    "HTTPTransportError",
    "SSEDecoder",
    "SSEError",
    "SSEEvent",
    "SSEEventTooLarge",
    "SSELineTooLong",
    "StreamableHTTPChannel",
    "http_failure",
]
