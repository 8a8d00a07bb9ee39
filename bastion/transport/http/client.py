"""The Streamable HTTP transport, client side: both eras, and the 2024-11-05 HTTP+SSE fallback.

`StreamableHTTPChannel` is a `Channel`, so the existing `Session` (correlation, ids, timeouts,
progress, cancellation, serving a legacy server's requests) and `ClientConnection` (era
detection) run over HTTP unchanged. The channel turns every HTTP outcome into a JSON-RPC
message for `read_frame`, which is all era detection needs: a 400 carrying -32022 reaches the
probe as that error (modern, fix the version); a 4xx without a modern body reaches it as a
plain error (legacy `initialize` follows); an `initialize` refused with 400/404/405 makes the
channel try the old HTTP+SSE transport (`http_sse_fallback.py`) before it gives up.

What is HTTP-specific stays here:

* every outgoing message is its own POST; requests run in their own task, so `write_frame`
  never waits on the server, and their JSON body or SSE events go to `read_frame`;
* modern requests carry MCP-Protocol-Version (from `_meta`), Mcp-Method, Mcp-Name and
  Mcp-Param-* (from the `x-mcp-header` annotations of the tools this channel saw listed).
  Tools whose annotations are invalid are removed from tools/list results with a warning; a
  -32020 answer to tools/call re-lists the tools and retries once (`modern_headers.py`).
  Closing the response stream is the cancellation, so `notifications/cancelled` for a modern
  request aborts its POST;
* legacy: MCP-Session-Id and MCP-Protocol-Version learnt from the initialize response; a 404
  re-initializes once and retries; the GET stream after `initialized`; SEP-1699 resumption
  through GET + Last-Event-ID when a POST stream ends before its response; DELETE on close;
* with an auth provider (`wire.HTTPAuth`, e.g. the OAuth client), every request carries its
  current `Authorization`; a 401, or a 403 (step-up), goes to the provider, and when it says
  new credentials may help the request is sent once more, never twice, so a server that
  keeps refusing cannot loop the client.

Failures with no JSON-RPC body (connection refused, timeouts, an HTTP error page, a broken
SSE stream) are delivered as the error response of the request that failed, code -32603, with
a message that names the cause and `data["http"]` describing it (`wire.http_failure()` reads
it); the connection carries on, because each request is its own exchange.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from bastion.protocol.errors import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    MODERN_ERROR_CODES,
)
from bastion.protocol.headers import PROTOCOL_VERSION_HEADER, SESSION_HEADER
from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE, JSONObject, RequestId
from bastion.protocol.meta import PROTOCOL_VERSION, get_meta, is_modern_request
from bastion.transport.base import EndOfStream
from bastion.transport.http.h1client import HTTPClient, HTTPClientError
from bastion.transport.http.http_sse_fallback import HTTPSSETransport
from bastion.transport.http.modern_headers import ModernHeaders
from bastion.transport.http.sse_parser import (
    MAX_RETRY_MS,
    MESSAGE_EVENT,
    SSE_MEDIA_TYPE,
    SSEDecoder,
    SSEEvent,
)
from bastion.transport.http.wire import (
    ACCEPT_POST,
    ERROR_BODY_LIMIT,
    HTTPAuth,
    HTTPStatusError,
    HTTPTimeouts,
    HTTPTransportError,
    HTTPWire,
    Response,
    excerpt,
    logger,
)

_T = TypeVar("_T")

#: The SSE reconnection delay when the server named none (the SSE spec leaves it to us).
DEFAULT_RETRY_MS = 1000
#: Resumption attempts in a row that bring no new event before a request gives up.
MAX_RESUME_ATTEMPTS = 5
#: Failed GET-stream connections in a row before the channel stops listening.
MAX_LISTEN_FAILURES = 5
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")


@dataclass(slots=True)
class _InFlight:
    method: str
    modern: bool
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Reply:
    """The JSON-RPC answer to one POST, with the HTTP facts that steer recovery."""

    message: JSONObject
    status: int
    session_id: str | None = None
    #: The message as received, when it can be handed on unchanged (no re-serializing).
    raw: bytes | None = None
    #: The challenge of a refusal (401/403), for the auth provider.
    www_authenticate: str | None = None

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
        http: HTTPClient | None = None,
        ssl: ssl_module.SSLContext | bool = True,
        auth_provider: HTTPAuth | None = None,
    ) -> None:
        self._wire = HTTPWire(url, {**(headers or {}), **(auth or {})},
                              timeouts or HTTPTimeouts(), http, ssl, auth_provider)
        self.max_message_size = max_message_size
        self.listen = listen
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        #: Set by the session: takes an answer already parsed (see `DirectChannel`).
        self.deliver_parsed: Callable[[Any, bytes], None] | None = None
        self._closed = False
        self._inflight: dict[RequestId, _InFlight] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._internal_ids = itertools.count(1)
        # legacy state
        self.session_id: str | None = None
        self.legacy_version: str | None = None
        self._init_message: JSONObject | None = None
        self._reinit_lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        # 2024-11-05 HTTP+SSE state
        self._sse: HTTPSSETransport | None = None
        # modern state
        self.modern_version: str | None = None
        self._modern = ModernHeaders(self._wire.display_url)
        self.protocol_errors = 0
        #: The last failure delivered as an error (it explains a failed era detection).
        self.last_failure: HTTPTransportError | None = None
        #: Message events read from SSE streams (the GET stream uses it to tell life from flapping).
        self.events_received = 0

    @property
    def url(self) -> str:
        return self._wire.url

    @property
    def display_url(self) -> str:
        """The URL without credentials or query, for messages and logs."""
        return self._wire.display_url

    @property
    def timeouts(self) -> HTTPTimeouts:
        return self._wire.timeouts

    @property
    def sse_endpoint(self) -> str | None:
        """Where messages are POSTed once the 2024-11-05 HTTP+SSE fallback is in use."""
        return self._sse.endpoint if self._sse is not None else None

    @property
    def tool_headers(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """`{tool name: {header name: property path}}` from modern tools/list results."""
        return self._modern.tool_headers

    @property
    def rejected_tools(self) -> dict[str, str]:
        """Tools removed from tools/list for invalid x-mcp-header annotations, and why."""
        return self._modern.rejected_tools

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

    async def write_request(self, message: JSONObject, data: bytes) -> None:
        """A modern request runs in the caller's task: its POST is the whole exchange.

        Legacy requests keep a task of their own, since their answer may come on another
        stream (the GET stream, a resumption) that must be able to end the POST.
        """
        if self._closed:
            raise EndOfStream
        if self._sse is not None or not is_modern_request(message.get("params")):
            self._start_request(message, data)
            return
        inflight = self._track(message, True)
        await self._run_request(message, data, inflight)

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
        if self.session_id is not None and self._sse is None and self._wire.connected:
            await self._delete_session()
        await self._wire.aclose()
        self._inbox.put_nowait(None)

    # -- plumbing ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _deliver_frame(self, frame: bytes) -> None:
        if not self._closed:
            self._inbox.put_nowait(frame)

    def _deliver_answer(self, message: JSONObject, raw: bytes | None) -> None:
        """An answer goes straight to the session when nothing earlier waits to be read."""
        if self._closed:
            return
        if self.deliver_parsed is not None and self._inbox.empty():
            self.deliver_parsed(message, raw or b"")
        else:
            self._deliver_frame(raw if raw is not None else orjson.dumps(message))

    def _deliver_error(self, request_id: RequestId, exc: HTTPTransportError) -> None:
        self.last_failure = exc
        self._deliver_answer({
            "jsonrpc": "2.0", "id": request_id,
            "error": {"code": INTERNAL_ERROR, "message": str(exc),
                      "data": {"http": exc.details()}},
        }, None)

    def _internal_id(self) -> str:
        # The session numbers its requests with integers: strings never collide with them.
        return f"bastion-http-{next(self._internal_ids)}"

    def _post_headers(self, message: JSONObject, modern: bool) -> dict[str, str]:
        headers = {**self._wire.base_headers, "Accept": ACCEPT_POST,
                   "Content-Type": "application/json"}
        if modern:
            headers.update(self._modern.for_request(message, self.modern_version))
            return headers
        return self._session_headers(headers, version=message.get("method") != "initialize")

    def _get_headers(self, last_event_id: str | None = None) -> dict[str, str]:
        headers = self._session_headers({**self._wire.base_headers, "Accept": SSE_MEDIA_TYPE})
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        return headers

    def _session_headers(self, headers: dict[str, str], *, version: bool = True
                         ) -> dict[str, str]:
        """`headers` with the legacy session's id and (if `version`) protocol version added."""
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        if version and self.legacy_version is not None:
            headers[PROTOCOL_VERSION_HEADER] = self.legacy_version
        return headers

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
                 own_id: RequestId | None = None) -> JSONObject | None:
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

    def _deliver_reply(self, message: JSONObject, raw: bytes | None = None) -> None:
        """Hand a response to the session, after the transport's own bookkeeping."""
        request_id = message.get("id")
        inflight = self._inflight.get(request_id) if isinstance(request_id, str | int) else None
        if inflight is not None:
            if inflight.task is not None and inflight.task is not asyncio.current_task():
                # Answered on another stream (GET, resumption): its POST has nothing to wait for.
                inflight.task.cancel()
            if (inflight.modern and inflight.method == "tools/list"
                    and self._modern.learn_tools(message)):
                raw = None
        self._deliver_answer(message, raw)

    # -- requests ------------------------------------------------------------------------

    def _start_request(self, message: JSONObject, data: bytes) -> None:
        inflight = self._track(message, is_modern_request(message.get("params")))
        inflight.task = asyncio.create_task(self._run_request(message, data, inflight),
                                            name=f"http:{message['method']}:{message['id']}")

    def _track(self, message: JSONObject, modern: bool) -> _InFlight:
        if modern:
            version = get_meta(message.get("params")).get(PROTOCOL_VERSION)
            self.modern_version = version if isinstance(version, str) else self.modern_version
        inflight = _InFlight(message["method"], modern)
        self._inflight[message["id"]] = inflight
        return inflight

    async def _run_request(self, message: JSONObject, data: bytes, inflight: _InFlight) -> None:
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

    async def _request_with_recovery(self, message: JSONObject, data: bytes,
                                     modern: bool) -> _Reply | None:
        method = message["method"]
        if self._sse is not None:
            await self._sse.post_request(message, data)
            return None  # the answer arrives on the SSE stream
        stale_session = self.session_id
        try:
            reply = await self._roundtrip(message, data, modern)
        except HTTPStatusError as exc:
            if exc.status == 404 and stale_session is not None and method != "initialize":
                await self._reinitialize(stale_session)
                return await self._roundtrip(message, data, modern)
            if (method == "initialize" and exc.status in (400, 404, 405)
                    and await self._fall_back_to_sse(message, data)):
                return None
            raise
        if reply.status == 404 and stale_session is not None and method != "initialize":
            await self._reinitialize(stale_session)
            return await self._roundtrip(message, data, modern)
        if (method == "initialize" and reply.status in (400, 404, 405)
                and reply.error_code not in MODERN_ERROR_CODES
                and await self._fall_back_to_sse(message, data)):
            return None
        if modern and method == "tools/call" and reply.error_code == HEADER_MISMATCH:
            # The tool's annotations may have changed since we listed it (spec: re-list, retry).
            await self._modern.relist(message, functools.partial(
                self._internal_request, "tools/list", modern=True))
            return await self._roundtrip(message, data, modern)
        return reply

    async def _roundtrip(self, message: JSONObject, data: bytes, modern: bool) -> _Reply:
        """`_roundtrip_once`, sent again once if the auth provider renewed its credentials."""
        auth = self._wire.auth
        if auth is None:  # the hot path of a relay: nothing to ask
            return await self._roundtrip_once(message, data, modern)
        return await self._with_auth(auth, f"POST {self.display_url} ({message['method']})",
                                     lambda: self._roundtrip_once(message, data, modern))

    async def _with_auth(self, auth: HTTPAuth, what: str,
                         exchange: Callable[[], Awaitable[_T]]) -> _T:
        """Run `exchange`; on a 401/403 ask the auth provider, and re-run it once if told to."""
        generation = auth.generation
        try:
            outcome = await exchange()
        except HTTPStatusError as exc:
            if not await self._reauthorized(auth, exc.status, exc.www_authenticate, generation,
                                            what):
                raise
        else:
            if not isinstance(outcome, _Reply) or not await self._reauthorized(
                    auth, outcome.status, outcome.www_authenticate, generation, what):
                return outcome
        return await exchange()

    async def _reauthorized(self, auth: HTTPAuth, status: int | None,
                            www_authenticate: str | None, generation: int, what: str) -> bool:
        if status not in (401, 403):
            return False
        try:
            return await auth.challenged(status, www_authenticate, generation)
        except HTTPTransportError:
            raise
        except Exception as exc:  # the provider is pluggable: its failure fails the request
            raise HTTPTransportError(
                f"{what}: HTTP {status}, and obtaining authorization failed: {exc}",
                status=status, url=self.display_url, www_authenticate=www_authenticate,
            ) from exc

    async def _roundtrip_once(self, message: JSONObject, data: bytes, modern: bool) -> _Reply:
        """POST one request; its answer from a JSON body, an SSE stream, or a resumed stream.

        Other messages on the stream (progress, logs, a legacy server's requests) go to the
        session as they arrive. Raises HTTPTransportError when no JSON-RPC answer comes.
        """
        method = message["method"]
        request_id = message["id"]
        headers = self._post_headers(message, modern)
        if self._wire.auth is not None:
            await self._wire.authorize(headers)
        what = f"POST {self.display_url} ({method})"
        resume_from: tuple[str, int] | None = None
        with self._wire.failures(what):
            async with await self._wire.request(
                    "POST", headers, data, read=self.timeouts.read) as response:
                status = response.status
                session_id = response.headers.get(SESSION_HEADER)
                if 200 <= status < 300 and status != 202:
                    if response.content_type == SSE_MEDIA_TYPE:
                        decoder = SSEDecoder.for_messages(self.max_message_size)
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
                        body = await self._wire.read_body(response, self.max_message_size, what)
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
                        status: int) -> JSONObject:
        answer = self._parse(body, "JSON body")
        if isinstance(answer, dict) and "method" not in answer:
            if answer.get("id") == request_id:
                return answer
            if answer.get("id") is None:  # an error the server could not tie to the request
                return {**answer, "id": request_id}
        raise HTTPTransportError(f"{what}: the body is not the JSON-RPC response to the request "
                                 f"({body[:80]!r})", status=status, url=self.display_url)

    async def _error_reply(self, response: Response, request_id: RequestId,
                           what: str, session_id: str | None) -> _Reply:
        status = response.status
        try:
            body = await self._wire.read_body(response, ERROR_BODY_LIMIT, what)
        except HTTPTransportError:
            body = b""
        error = _jsonrpc_error(body)
        challenge = response.headers.get("WWW-Authenticate")
        if error is not None:
            # The server explained itself in JSON-RPC: that is the answer (ids may be null).
            return _Reply({"jsonrpc": "2.0", "id": request_id, "error": error}, status,
                          session_id, www_authenticate=challenge)
        quoted = excerpt(body)
        raise HTTPStatusError(
            f"{what}: HTTP {status} {response.reason or ''}".rstrip()
            + (f": {quoted}" if quoted else ""),
            status=status, url=self.display_url, www_authenticate=challenge)

    async def _read_stream(self, response: Response, decoder: SSEDecoder,
                           request_id: RequestId | None,
                           modern: bool) -> tuple[JSONObject, bytes] | None:
        """Read SSE events until `request_id`'s answer (returned, with its bytes) or the end."""
        where = "SSE stream"
        async for chunk in response.chunks():
            for event in decoder.feed(chunk):
                if event.event != MESSAGE_EVENT:
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
                      what: str) -> tuple[JSONObject, bytes]:
        """SEP-1699: after `retry` ms, GET with Last-Event-ID until the answer comes."""
        attempts = 0
        while True:
            await asyncio.sleep(retry_ms / 1000)
            headers = self._get_headers(last_event_id)
            await self._wire.authorize(headers)
            resume_what = f"GET {self.display_url} (resuming {what})"
            with self._wire.failures(resume_what):
                async with await self._wire.request(
                        "GET", headers, read=self.timeouts.read) as response:
                    if response.status != 200 or response.content_type != SSE_MEDIA_TYPE:
                        # Not an HTTPStatusError: a 404 here must not re-send the request,
                        # which the server may already have carried out.
                        raise HTTPTransportError(
                            f"{what}: the SSE stream ended before the response, and resuming "
                            f"it failed with HTTP {response.status}",
                            status=response.status, url=self.display_url)
                    decoder = SSEDecoder.for_messages(self.max_message_size, last_event_id)
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

    async def _internal_request(self, method: str, params: JSONObject,
                                modern: bool) -> JSONObject:
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

    def _apply_initialize(self, message: JSONObject, reply: _Reply) -> None:
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
        if self.listen and self._sse is None and not self._closed:
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
            headers = self._get_headers(last_event_id)
            await self._wire.authorize(headers)
            received = self.events_received
            progressed = False
            try:
                with self._wire.failures(what):
                    async with await self._wire.request("GET", headers, read=None) as response:
                        if response.status == 405:
                            logger.debug("%s offers no GET stream (405)", self.display_url)
                            return
                        if response.status != 200 or response.content_type != SSE_MEDIA_TYPE:
                            if 400 <= response.status < 500 and response.status != 429:
                                logger.info("%s: GET stream refused with HTTP %s; not "
                                            "listening", self.display_url, response.status)
                                return
                            raise HTTPStatusError(f"{what}: HTTP {response.status}",
                                                  status=response.status)
                        decoder = SSEDecoder.for_messages(self.max_message_size, last_event_id)
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
        headers = self._session_headers({**self._wire.base_headers})
        try:
            await self._wire.authorize(headers)
            async with await self._wire.request(
                    "DELETE", headers, read=self.timeouts.close, total=self.timeouts.close
            ) as response:
                if response.status not in (200, 202, 204, 404, 405):
                    logger.info("%s: DELETE of the session answered HTTP %s", self.display_url,
                                response.status)
        except (HTTPClientError, TimeoutError, ValueError) as exc:
            logger.info("%s: DELETE of the session failed: %r", self.display_url, exc)

    # -- one-way messages ----------------------------------------------------------------

    def _cancel(self, message: JSONObject, data: bytes) -> None:
        """`notifications/cancelled`: modern closes the stream; legacy also tells the server."""
        params = message.get("params") or {}
        request_id = params.get("requestId")
        known = isinstance(request_id, str | int)
        inflight = self._inflight.get(request_id) if known else None
        if inflight is not None and inflight.task is not None:
            inflight.task.cancel()
        if known and self._sse is not None:
            self._sse.forget(request_id)
        modern = inflight.modern if inflight is not None else self.legacy_version is None
        if not modern:
            # Not awaited: a request that timed out must not wait for a hung server again.
            self._spawn(self._notify_quietly(message, data))

    async def _notify_quietly(self, message: JSONObject, data: bytes) -> None:
        try:
            await self._send_notification(message, data)
        except HTTPTransportError as exc:
            logger.info("%s: %s", self.display_url, exc)

    async def _send_notification(self, message: JSONObject, data: bytes | None) -> None:
        data = data if data is not None else orjson.dumps(message)
        method = message["method"]
        if self._sse is not None:
            await self._sse.post(data, method)
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

    async def _send_reply(self, message: JSONObject, data: bytes) -> None:
        """A legacy server's request answered by the session: POST it (errors are logged)."""
        try:
            if self._sse is not None:
                await self._sse.post(data, "a response")
            else:
                await self._post_oneway(message, data, "a response")
        except HTTPTransportError as exc:
            logger.warning("%s: could not deliver the answer to request %r: %s",
                           self.display_url, message.get("id"), exc)

    async def _post_oneway(self, message: JSONObject, data: bytes, what_method: str) -> None:
        """POST a notification or a response; the server says 202 (or another 2xx)."""
        auth = self._wire.auth
        if auth is None:
            await self._post_oneway_once(message, data, what_method)
            return
        await self._with_auth(auth, f"POST {self.display_url} ({what_method})",
                              lambda: self._post_oneway_once(message, data, what_method))

    async def _post_oneway_once(self, message: JSONObject, data: bytes,
                                what_method: str) -> None:
        modern = self.legacy_version is None and self.modern_version is not None
        headers = self._post_headers(message, modern)
        if self._wire.auth is not None:
            await self._wire.authorize(headers)
        what = f"POST {self.display_url} ({what_method})"
        with self._wire.failures(what):
            async with await self._wire.short("POST", headers, data) as response:
                if 200 <= response.status < 300:
                    return
                reply = await self._error_reply(response, 0, what, None)  # raises if no body
                error = reply.message["error"]
                raise HTTPStatusError(
                    f"{what}: HTTP {response.status}: {error.get('message')} "
                    f"(code {error.get('code')})", status=response.status, url=self.display_url,
                    www_authenticate=reply.www_authenticate)

    # -- 2024-11-05 HTTP+SSE ---------------------------------------------------------------

    async def _fall_back_to_sse(self, initialize: JSONObject, data: bytes) -> bool:
        """Try the old HTTP+SSE transport; if it is there, POST `initialize` to it (True).

        From then on every message goes through it, and its stream brings every answer.
        """
        sse = await HTTPSSETransport.open(self._wire, self.max_message_size)
        if sse is None:
            return False
        self._sse = sse
        self._spawn(self._read_sse(sse))
        await sse.post_request(initialize, data)
        return True

    async def _read_sse(self, sse: HTTPSSETransport) -> None:
        try:
            await sse.read(self._on_sse_event)
        finally:
            # The old transport has no resumption: without its stream the session is over.
            self._inbox.put_nowait(None)

    def _on_sse_event(self, event: SSEEvent) -> None:
        if event.event != MESSAGE_EVENT or not event.data.strip():
            return
        message = self._parse(event.data, "HTTP+SSE stream")
        if message is None:
            return
        if isinstance(message, dict) and "method" not in message and self._sse is not None:
            request_id = message.get("id")
            method = self._sse.forget(request_id) if isinstance(
                request_id, str | int) else None
            result = message.get("result")
            if method == "initialize" and isinstance(result, dict):
                version = result.get("protocolVersion")
                self.legacy_version = version if isinstance(version, str) else None
        self._receive(message, event.data, modern=False)


def _jsonrpc_error(body: bytes) -> JSONObject | None:
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


__all__ = ["StreamableHTTPChannel"]
