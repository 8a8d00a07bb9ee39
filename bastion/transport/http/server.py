"""The MCP endpoint over Streamable HTTP: one raw ASGI app that serves both protocol eras.

Every request passes the same gate first: the path, DNS-rebinding protection (`Host` and
`Origin` against allow-lists; loopback names by default), then, for POST, the media types
and a body read incrementally up to a limit. A body is parsed once (orjson) and the era is
chosen per request (spec-essentials §7.2):

* **modern** (2026-07-28) when `params._meta` carries a protocol version or the
  `MCP-Protocol-Version` header names a modern one. Stateless: POST only (GET and DELETE get
  405), `Mcp-Session-Id` and `Last-Event-ID` are ignored, and the `MCP-Protocol-Version`,
  `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers must agree with the body (-32020);
* **legacy** (2025-11-25 and older) otherwise: a plain `initialize` opens a session
  (`legacy_sessions`), later requests name it with `MCP-Session-Id`, GET opens the stream for
  unrelated server messages or resumes one with `Last-Event-ID`, DELETE ends the session.

Both eras share the request rules with stdio through `EraRouter`. An answer is JSON when the
reply is all there is to say, and SSE from the first message a handler emits before its reply
(progress, logs, server-to-client requests) or after 15 s of silence, which starts the
keep-alive comments. Modern errors map to HTTP statuses (400, or 404 for -32601); legacy
JSON-RPC errors are 200, because a legacy client reads 404 as "session gone".

A modern client that disconnects cancels its request. A legacy disconnect does not (the
client cancels with `notifications/cancelled`); the request's events wait in the stream's
buffer for a GET with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from bastion.protocol.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
    InvalidRequest,
    MCPError,
)
from bastion.protocol.headers import (
    PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
    InvalidHeaderAnnotation,
    header_params,
)
from bastion.protocol.jsonrpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    EnvelopeError,
    Message,
    Notification,
    Request,
    RequestId,
    from_object,
    loads,
)
from bastion.protocol.meta import RequestMeta, is_modern_request
from bastion.protocol.principal import Principal
from bastion.protocol.routing_headers import (
    DUPLICATES_KEY,
    HeaderCheck,
    check_routing_headers,
)
from bastion.protocol.versions import LATEST_LEGACY, LEGACY_VERSIONS
from bastion.session.context import IncomingRequest
from bastion.session.server_side import EraRouter, ServerApp
from bastion.transport.http.auth import (
    AuthChallenge,
    AuthRefusal,
    HttpAuthenticator,
    RefusalHook,
)
from bastion.transport.http.coalescing import CoalescingHttpToolsProtocol
from bastion.transport.http.legacy_sessions import LegacyEndpoint, SessionRegistry
from bastion.transport.http.session_ids import SessionIds
from bastion.transport.http.sse import (
    Receive,
    RequestOutbox,
    Send,
    answer_watching,
    send_empty,
    send_error,
    serve_into,
)

if TYPE_CHECKING:
    import uvicorn


logger = logging.getLogger("bastion.transport.http")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Host names accepted by default, with any port (DNS-rebinding protection).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

#: HTTP status of a modern JSON-RPC error; other codes (application errors, -32603) are 200.
MODERN_STATUS = {
    PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400, UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ALLOW_POST = [(b"allow", b"POST")]
_ALLOW_ALL = [(b"allow", b"GET, POST, DELETE")]
_CLOSE = [(b"connection", b"close")]


class _TooLarge(Exception):
    def __init__(self, *, abusive: bool = False) -> None:
        super().__init__()
        #: Far over the limit: drop the connection rather than let the server swallow it.
        self.abusive = abusive


class _ClientGone(Exception):
    pass


class McpHttpEndpoint:
    """The ASGI application: the MCP endpoint at `path`, both eras (see the module doc).

    Limits: `max_body_size` bytes per POST (413), `max_sessions` legacy sessions, each
    ended after `session_idle_timeout` seconds without traffic, `max_events_per_stream`
    events kept per stream and `max_finished_streams` finished streams kept per session for
    resumption; a modern handler waits while `max_queued_messages` of its messages are
    unsent. `allowed_hosts` holds host names (any port) or `host:port` pairs, `"*"` turning
    the check off; an `Origin` passes when it is listed in `allowed_origins` (`"*"` for
    any) or its host is an allowed host name.

    Legacy sessions: `session_ids` names them (`RandomSessionIds` by default; a
    `SealedSessionIds` lets any replica with the same keys resume them).

    `authenticator` (see `auth.py`) authenticates every request before its body is read and
    checks every JSON-RPC request's scopes before any handler runs; a refusal is answered
    with its status and `WWW-Authenticate`. The principal rides on each request to the
    application, and a legacy session is bound to the principal that opened it: a request
    by anyone else naming it is answered like an unknown session (see `session_ids`).
    """

    def __init__(
        self,
        app: ServerApp,
        *,
        path: str = "/mcp",
        allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
        allowed_origins: Iterable[str] = (),
        max_body_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        keepalive_interval: float = 15.0,
        retry_ms: int = 1000,
        max_sessions: int = 1000,
        session_idle_timeout: float = 1800.0,
        max_events_per_stream: int = 256,
        max_finished_streams: int = 32,
        max_queued_messages: int = 64,
        header_check: HeaderCheck | None = None,
        session_ids: SessionIds | None = None,
        authenticator: HttpAuthenticator | None = None,
        on_refusal: RefusalHook | None = None,
        fallback: ASGIApp | None = None,
    ) -> None:
        self.app = app
        self.path = path.rstrip("/") or "/"
        self.router = EraRouter(app)
        hosts = {h.lower() for h in allowed_hosts}
        self._any_host = "*" in hosts
        self._host_names = {h for h in hosts if not _has_port(h)}
        self._host_ports = hosts - self._host_names
        self._host_verdicts: dict[tuple[str, str | None], str | None] = {}
        origins = set(allowed_origins)
        self._any_origin = "*" in origins
        self._origins = {o.lower().rstrip("/") for o in origins}
        self.max_body_size = max_body_size
        self.keepalive = keepalive_interval
        self.retry_ms = retry_ms
        self.max_queued = max_queued_messages
        #: The routing headers against the body, before any other rule: this server's own
        #: check unless the application brings one (the gateway's header/body guard stage).
        self.header_check: HeaderCheck = header_check or self._check_headers
        self.sessions = SessionRegistry(
            app, max_sessions=max_sessions, idle_timeout=session_idle_timeout,
            max_events=max_events_per_stream, max_finished_streams=max_finished_streams,
            ids=session_ids,
        )
        self.legacy = LegacyEndpoint(app, self.router, self.sessions,
                                     keepalive=keepalive_interval, retry_ms=retry_ms)
        self.authenticator = authenticator
        #: Told of each request refused for its credentials (the gateway's audit trail).
        self.on_refusal = on_refusal
        #: Serves every other path (well-known metadata, OAuth callbacks, admin), after
        #: the Host check; without one, other paths are 404.
        self.fallback = fallback
        self._tasks: set[asyncio.Task[Any]] = set()
        #: `{tool name: (tool, {header name: property path})}` from `x-mcp-header`.
        self._param_cache: dict[str, tuple[Any, dict[str, tuple[str, ...]]]] = {}

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_shutdown(self) -> None:
        """End the long-lived streams gracefully, so the server can drain: listen requests
        get their final result, GET streams end."""
        subscribers = getattr(self.app, "subscribers", None)
        if subscribers is not None:
            subscribers.close_listeners()
        self.sessions.finish_standalone_streams()

    def close(self) -> None:
        """End every session and cancel every handler still running."""
        self.begin_shutdown()
        self.sessions.close_all()
        for task in list(self._tasks):
            task.cancel()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path != self.path and path.rstrip("/") != self.path:
            await self._elsewhere(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        problem = self._rebinding_problem(headers)
        if problem is not None:
            logger.warning("refused a request: %s", problem)
            await send_error(send, 403, InvalidRequest(f"Forbidden: {problem}"))
            return
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = await self.authenticator.authenticate(
                    headers, scope.get("query_string", b""))
            except AuthChallenge as exc:
                await self._report(exc, scope, headers, None, None)
                await _refuse(send, exc)
                return
        method = scope["method"]
        if method == "POST":
            await self._post(headers, principal, receive, send, scope)
        elif method in ("GET", "DELETE"):
            await self._get_or_delete(method, headers, principal, receive, send)
        else:
            await send_error(send, 405, InvalidRequest(f"{method} is not allowed here"), _ALLOW_ALL)

    async def _elsewhere(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A path other than the MCP endpoint's: the fallback app, if the Host is ours."""
        if self.fallback is None:
            await _plain(send, 404, b"Not Found")
            return
        host = _headers(scope["headers"]).get("host", "")
        problem = self._rebinding_problem({"host": host})
        if problem is not None:
            await _plain(send, 403, f"Forbidden: {problem}".encode())
            return
        await self.fallback(scope, receive, send)

    def _rebinding_problem(self, headers: dict[str, str]) -> str | None:
        # Clients send the same Host and Origin on every request: judge each pair once
        # (bounded, since both are the caller's to choose).
        key = (headers.get("host", ""), headers.get("origin"))
        verdict = self._host_verdicts.get(key, _UNJUDGED)
        if verdict is _UNJUDGED:
            if len(self._host_verdicts) >= _HOST_VERDICTS:
                self._host_verdicts.clear()
            verdict = self._host_verdicts[key] = self._judge_host(*key)
        return verdict

    def _judge_host(self, host: str, origin: str | None) -> str | None:
        host = host.strip().lower()
        if not self._any_host and not (
            _host_name(host) in self._host_names or host in self._host_ports
        ):
            return f"Host {host[:100]!r} is not allowed"
        if origin is not None and not self._any_origin:
            normalized = origin.strip().lower().rstrip("/")
            scheme, sep, rest = normalized.partition("://")
            if not (normalized in self._origins or (
                sep and scheme in ("http", "https") and _host_name(rest) in self._host_names
            )):
                return f"Origin {origin[:100]!r} is not allowed"
        return None

    # -- POST -----------------------------------------------------------------------------

    async def _report(self, challenge: AuthChallenge, scope: Scope, headers: dict[str, str],
                      method: str | None, request_id: Any) -> None:
        if self.on_refusal is None:
            return
        client = scope.get("client")
        await self.on_refusal(AuthRefusal(
            status=challenge.status, error=challenge.error, message=challenge.message,
            method=method, request_id=request_id,
            remote=f"{client[0]}:{client[1]}" if client else None,
            user_agent=headers.get("user-agent")))

    async def _post(self, headers: dict[str, str], principal: Principal | None,
                    receive: Receive, send: Send, scope: Scope) -> None:
        content_type = headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            await send_error(send, 415, InvalidRequest("Content-Type must be application/json"))
            return
        json_ok, sse_ok = _accepts(headers.get("accept"))
        if not (json_ok or sse_ok):
            await send_error(send, 406, InvalidRequest(
                "Accept must include application/json and text/event-stream"))
            return
        try:
            body = await self._read_body(headers, receive)
        except _TooLarge as exc:
            # Otherwise the server reads the rest of the body and discards it (never kept),
            # which lets the client read this answer instead of a connection reset.
            await send_error(send, 413, InvalidRequest(
                f"the request body exceeds the {self.max_body_size}-byte limit",
                data={"limit": self.max_body_size}), _CLOSE if exc.abusive else None)
            return
        except _ClientGone:
            return
        try:
            decoded = loads(body, max_size=self.max_body_size)
            if isinstance(decoded, list):
                raise EnvelopeError("JSON-RPC batches are not accepted on this endpoint")
            message = from_object(decoded)
        except EnvelopeError as exc:
            await send_error(send, 400, exc, request_id=exc.request_id)
            return
        except MCPError as exc:  # a parse error
            await send_error(send, 400, exc)
            return
        if principal is not None and isinstance(message, Request):
            try:
                self.authenticator.check_access(  # type: ignore[union-attr]
                    principal, message.method, message.params or {})
            except AuthChallenge as exc:
                await self._report(exc, scope, headers, message.method, message.id)
                await _refuse(send, exc, message.id)
                return
        if self._is_modern(message, headers.get(PROTOCOL_VERSION_HEADER)):
            await self._modern(message, headers, principal, receive, send, json_ok, sse_ok)
        else:
            await self.legacy.post(message, headers, principal, receive, send, json_ok, sse_ok)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """The body, read chunk by chunk; stops as soon as it passes the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_size:
            raise _TooLarge(abusive=int(declared) > 2 * self.max_body_size)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_size:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _is_modern(self, message: Message, version: str | None) -> bool:
        if isinstance(message, Request | Notification) and is_modern_request(message.params):
            return True
        return version is not None and self._is_modern_version(version)

    def _is_modern_version(self, version: str) -> bool:
        """A version header of the modern era (one we serve, or a later-dated one)."""
        version = version.strip(" \t")
        return version in self.app.modern_versions or (
            bool(_DATE.match(version)) and version > LATEST_LEGACY
            and version not in LEGACY_VERSIONS
        )

    # -- modern ---------------------------------------------------------------------------

    async def _modern(self, message: Message, headers: dict[str, str],
                      principal: Principal | None, receive: Receive, send: Send,
                      json_ok: bool, sse_ok: bool) -> None:
        if isinstance(message, Notification):
            await send_empty(send, 202)  # no core client notification exists on HTTP: nothing to do
            return
        if not isinstance(message, Request):
            await send_error(send, 400, InvalidRequest(
                "a 2026-07-28 client sends no responses (there are no server requests)"),
                request_id=message.id)
            return
        outbox = RequestOutbox(json_ok=json_ok, sse_ok=sse_ok, limit=self.max_queued)
        params = message.params or {}
        try:
            meta = RequestMeta.parse(params)
            incoming = IncomingRequest(outbox, message.id, message.method, params,
                                       meta.progress_token, principal)
            self.header_check(message.method, params, meta.protocol_version, headers)
            self.router.check_version(meta)
            request = self.router.modern_request(incoming, meta, None)
            request.headers = headers
        except MCPError as exc:
            await send_error(send, MODERN_STATUS.get(exc.code, 200), exc, request_id=message.id)
            return
        if message.method == "subscriptions/listen" and not sse_ok:
            await send_error(send, 406, InvalidRequest(
                "subscriptions/listen answers with a stream: Accept text/event-stream"),
                request_id=message.id)
            return
        task = asyncio.create_task(
            serve_into(outbox, message.id, self.app.handle(request), MODERN_STATUS)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Closing the response stream is the cancellation (spec): stop the handler at once.
        await answer_watching(outbox, send, receive, keepalive=self.keepalive, json_ok=json_ok,
                              sse_ok=sse_ok, cancel=task)

    def _check_headers(self, method: str, params: dict[str, Any], version: str,
                       headers: dict[str, str]) -> None:
        check_routing_headers(method, params, version, headers, self._header_params)

    def _header_params(self, tool_name: str) -> dict[str, tuple[str, ...]]:
        tools = getattr(self.app, "tools", None)
        tool = tools.get(tool_name) if isinstance(tools, dict) else None
        if tool is None:
            return {}  # the handler answers for an unknown tool
        cached = self._param_cache.get(tool_name)
        if cached is not None and cached[0] is tool:
            return cached[1]
        try:
            found = header_params(getattr(tool, "input_schema", None))
        except InvalidHeaderAnnotation as exc:
            # Clients drop such a tool, so no conforming request carries its headers.
            logger.warning("tool %r has invalid x-mcp-header annotations: %s", tool_name, exc)
            found = {}
        self._param_cache[tool_name] = (tool, found)
        return found

    # -- GET and DELETE ---------------------------------------------------------------------

    async def _get_or_delete(self, method: str, headers: dict[str, str],
                             principal: Principal | None, receive: Receive, send: Send) -> None:
        version = headers.get(PROTOCOL_VERSION_HEADER)
        if (version is not None and self._is_modern_version(version)) or (
            version is None and SESSION_HEADER not in headers
        ):
            # Modern servers answer GET and DELETE with 405; without a session there is no
            # legacy stream to open or session to end either.
            await send_error(send, 405, InvalidRequest(
                f"{method} is not supported here: POST each JSON-RPC message"), _ALLOW_POST)
            return
        problem = self.legacy.version_problem(headers)
        if problem is not None:
            await send_error(send, 400, problem)
        elif method == "GET":
            await self.legacy.get(headers, principal, receive, send,
                                  _accepts(headers.get("accept"))[1])
        else:
            await self.legacy.delete(headers, principal, send)


# -- helpers ------------------------------------------------------------------------------------

def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names (ASGI lowercases them) to values; repeated ones are joined with commas,
    and a repeated MCP routing header is noted, because it can never be trusted."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if name in headers:
            if name.startswith("mcp-"):
                headers[DUPLICATES_KEY] = f"{headers.get(DUPLICATES_KEY, '')} {name}".lstrip()
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    return headers


def _has_port(host: str) -> bool:
    return host.rpartition(":")[2].isdigit() and not host.endswith("]")


#: How many distinct (Host, Origin) pairs keep their verdict before the memo starts over.
_HOST_VERDICTS = 256
_UNJUDGED: Any = object()


def _host_name(host: str) -> str:
    """`host[:port]` (the Host header, or an origin without its scheme) to the name."""
    host = host.partition("/")[0]
    if host.startswith("["):
        return host[: host.find("]") + 1]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@functools.lru_cache(maxsize=64)  # clients send the same few Accept values every time
def _accepts(accept: str | None) -> tuple[bool, bool]:
    """Whether the client takes JSON and SSE answers (no Accept header: both)."""
    if accept is None:
        return True, True
    media = {part.partition(";")[0].strip().lower() for part in accept.split(",")}
    anything = "*/*" in media
    return (anything or "application/json" in media or "application/*" in media,
            anything or "text/event-stream" in media or "text/*" in media)


async def _refuse(send: Send, challenge: AuthChallenge, request_id: RequestId | None = None
                  ) -> None:
    """A request refused for its credentials: the status, the challenge and a JSON-RPC
    error that repeats the reason for clients that read only the body."""
    await send_error(send, challenge.status, InvalidRequest(challenge.message),
                     [(b"www-authenticate", challenge.www_authenticate.encode("latin-1"))],
                     request_id=request_id)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def asgi_app(server: ServerApp, path: str = "/mcp", **options: Any) -> McpHttpEndpoint:
    """The ASGI app serving `server` at `path` (options: see `McpHttpEndpoint`, e.g.
    `session_ids=SealedSessionIds(...)`, `authenticator=...`)."""
    return McpHttpEndpoint(server, path=path, **options)


def uvicorn_server(server: ServerApp, host: str = "127.0.0.1", port: int = 8000, *,
                   path: str = "/mcp", log_level: str = "WARNING",
                   graceful_timeout: float = 5.0, reraise_signals: bool = True,
                   **options: Any) -> uvicorn.Server:
    """A `uvicorn.Server` (httptools, uvloop) for the endpoint: `.run()`, or
    `await .serve()` inside a running loop. Its app (`.config.app`) is the endpoint.

    uvicorn raises a SIGTERM/SIGINT again once it has shut down, so the process dies of it;
    `reraise_signals=False` keeps the process alive for its own clean-up (a gateway stops
    its upstreams, then exits 0)."""
    import uvicorn  # only when serving: the endpoint itself is plain ASGI

    endpoint = asgi_app(server, path, **options)

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            endpoint.begin_shutdown()  # long-lived streams end, so connections can drain
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    if not reraise_signals:
                        self._captured_signals.clear()

    config = uvicorn.Config(
        endpoint, host=host, port=port, http=CoalescingHttpToolsProtocol, loop="uvloop",
        lifespan="on", log_level=log_level.lower(), access_log=False,
        timeout_graceful_shutdown=graceful_timeout, server_header=False,
        # X-Forwarded-For from any peer is not evidence of who called: never rewrite the
        # client address from it (and skip the middleware on every request).
        proxy_headers=False,
    )
    return _Server(config)


def run_http(server: ServerApp, host: str = "127.0.0.1", port: int = 8000, *,
             path: str = "/mcp", log_level: str = "WARNING", **options: Any) -> None:
    """Serve `server` over Streamable HTTP until interrupted (loopback by default)."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn_server(server, host, port, path=path, log_level=log_level, **options).run()
