"""The legacy era (2025-11-25 and older) on the MCP endpoint: sessions and their traffic.

`LegacyEndpoint` serves what a legacy client sends: POSTed requests, notifications and the
answers to server-to-client requests, GET streams (fresh or resumed) and DELETE.

A session starts with a plain `initialize` POST and is named by the `MCP-Session-Id` the
server issues once initialize succeeded, by a `SessionIds` strategy (`session_ids`): random
(the default: the session lives here only), or a sealed token any replica holding the key
can resume: a request naming an id not held here rebuilds the session from it, operating at
once. Every request naming a session must come from the principal it is bound to (the
endpoint authenticated it), or it is answered like an unknown session (404).

A session holds what a stdio connection would: the legacy lifecycle, the client's log level
and resource subscriptions, its requests in flight (so `notifications/cancelled` and DELETE
can stop them), and the server-to-client requests waiting for the answer the client POSTs
back.

Messages travel on `EventStream`s: each POST that streams its answer gets one, and stream 0
is the standalone GET stream for messages unrelated to any request (list changes, resource
updates, task status). A server-to-client request made while serving a POST goes on that
POST's stream; made elsewhere (or after that stream finished) it goes on stream 0. A session
resumed from its id has no stream history here: a `Last-Event-ID` of another replica's
stream opens the standalone stream afresh. Memory is bounded: events per stream, finished
streams kept for resumption, and sessions (idle ones expire, and at capacity new sessions
are refused).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import secrets
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

import orjson

from bastion.protocol import messages
from bastion.protocol.errors import InternalError, InvalidRequest, MCPError
from bastion.protocol.headers import PROTOCOL_VERSION_HEADER, SESSION_HEADER
from bastion.protocol.jsonrpc import (
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    dumps,
    is_valid_id,
)
from bastion.protocol.lifecycle import LegacyServerLifecycle
from bastion.protocol.meta import progress_token
from bastion.protocol.principal import Principal
from bastion.session.context import IncomingRequest
from bastion.session.errors import PeerClosed, RequestTimeout
from bastion.transport.http.session_ids import (
    RandomSessionIds,
    SessionIdError,
    SessionIds,
    SessionSnapshot,
    log_refused,
)
from bastion.transport.http.sse import (
    SSE_HEADERS,
    EventStream,
    Receive,
    Send,
    StreamOutbox,
    answer_watching,
    event_id,
    message_event,
    parse_event_id,
    send_empty,
    send_error,
    send_json,
    serve_into,
)

if TYPE_CHECKING:
    from bastion.session.server_side import EraRouter, ServerApp

logger = logging.getLogger("bastion.transport.http")

#: The session and POST stream of the request a handler serves (tasks it starts inherit
#: them); that handler's server-to-client requests go on that stream.
current_stream: contextvars.ContextVar[tuple[LegacySession, EventStream] | None] = (
    contextvars.ContextVar("bastion_http_current_stream", default=None)
)

STANDALONE = 0
DEFAULT_REQUEST_TIMEOUT = 60.0


class StreamSink:
    """What a legacy handler's `IncomingRequest.session` is: its notifications go on the
    stream of the POST it serves."""

    __slots__ = ("stream",)

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream

    async def send_notification(self, notification: Notification) -> None:
        self.stream.publish(dumps(notification))


class LegacySession:
    """One legacy client session over Streamable HTTP (a `PeerConnection`)."""

    def __init__(
        self,
        session_id: str,
        lifecycle: LegacyServerLifecycle,
        *,
        max_events: int,
        max_finished_streams: int,
        restored: bool = False,
    ) -> None:
        #: Empty until initialize succeeded and the registry issued the id.
        self.id = session_id
        self.lifecycle = lifecycle
        #: Who opened the session (None: anonymous); every request must come from them.
        self.principal: str | None = None
        #: Application data that follows the session to other replicas (sealed into its id
        #: by `SealedSessionIds`): set it before initialize ends; JSON, kept small.
        self.extra: dict[str, Any] = {}
        #: Wall-clock time the id stops being valid (None: never).
        self.expires_at: float | None = None
        #: Rebuilt from an id another process issued (it has no stream history here).
        self.restored = restored
        self.log_level: str | None = None
        self.subscriptions: set[str] = set()
        self.closed = False
        self.last_seen = time.monotonic()
        self.in_flight: dict[RequestId, asyncio.Task[Any]] = {}
        self._max_events = max_events
        self._max_finished = max_finished_streams
        # A resumed session numbers its streams from a random point, so an event id from the
        # replica that issued them is unlikely to name one of this replica's streams.
        self._stream_ids = itertools.count(secrets.randbelow(1 << 30) + 1 if restored else 1)
        self._request_ids = itertools.count(1)
        self._pending: dict[RequestId, asyncio.Future[dict[str, Any]]] = {}
        #: Streams a client may write or resume: 0 (the GET stream) always, POST streams once
        #: their answer became SSE, until enough newer ones finished (`_retire`).
        self.streams: dict[int, EventStream] = {STANDALONE: EventStream(STANDALONE, max_events)}
        self._retired: set[int] = set()
        self._retired_order: deque[int] = deque()
        #: Connections writing a stream now; an idle session has none.
        self.writers = 0

    # -- streams -------------------------------------------------------------------------

    @property
    def standalone(self) -> EventStream:
        return self.streams[STANDALONE]

    def new_stream(self) -> EventStream:
        """A stream for one POST; `register` it once it is sent as SSE."""
        return EventStream(next(self._stream_ids), self._max_events)

    def register(self, stream: EventStream) -> None:
        """Its answer became SSE: the stream is now resumable."""
        self.streams[stream.id] = stream
        if stream.finished:
            self._retire(stream)

    def request_done(self, request_id: RequestId, stream: EventStream) -> None:
        self.in_flight.pop(request_id, None)
        if stream.finished and self.streams.get(stream.id) is stream:
            self._retire(stream)

    def _retire(self, stream: EventStream) -> None:
        """A finished stream stays resumable until `max_finished_streams` newer ones finish."""
        if stream.id in self._retired:
            return
        self._retired.add(stream.id)
        self._retired_order.append(stream.id)
        while len(self._retired_order) > self._max_finished:
            oldest = self._retired_order.popleft()
            self._retired.discard(oldest)
            self.streams.pop(oldest, None)

    @property
    def idle(self) -> bool:
        """No connection is open. (Handlers still running do not keep a session alive that
        nobody is listening to: expiry cancels them.)"""
        return not self.writers

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    # -- the PeerConnection interface ---------------------------------------------------------

    async def send_notification(self, notification: Notification) -> None:
        """A message unrelated to any request: on the standalone GET stream."""
        if self.closed:
            raise PeerClosed(f"session {self.id[:8]}… has ended")
        self.standalone.publish(dumps(notification))

    async def request_client(
        self, method: str, params: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """A server-to-client request; the client POSTs its answer back to the endpoint.

        `timeout` (seconds) bounds the wait; on timeout or cancellation the client gets
        `notifications/cancelled` on the same stream.
        """
        if self.closed:
            raise PeerClosed(f"session {self.id[:8]}… has ended")
        serving = current_stream.get()
        stream = self.standalone
        if serving is not None and serving[0] is self and not serving[1].finished:
            stream = serving[1]
        request_id = next(self._request_ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        timeout = options.get("timeout") or DEFAULT_REQUEST_TIMEOUT
        try:
            stream.publish(dumps(Request(request_id, method, params)))
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._cancel_on(stream, request_id, "timed out")
            raise RequestTimeout(method, timeout) from None
        except asyncio.CancelledError:
            self._cancel_on(stream, request_id, "request cancelled")
            raise
        finally:
            self._pending.pop(request_id, None)

    def _cancel_on(self, stream: EventStream, request_id: RequestId, reason: str) -> None:
        if not self.closed:
            target = stream if not stream.finished else self.standalone
            target.publish(dumps(messages.cancelled(request_id, reason)))

    # -- what the client POSTs --------------------------------------------------------------

    def resolve(self, reply: Response | ErrorResponse) -> bool:
        """Deliver the client's answer to a server-to-client request; False if unknown."""
        future = self._pending.get(reply.id) if reply.id is not None else None
        if future is None or future.done():
            logger.debug("session %s: answer to unknown request %r", self.id[:8], reply.id)
            return False
        if isinstance(reply, Response):
            future.set_result(reply.result)
        else:
            future.set_exception(reply.to_exception())
        return True

    def cancel_request(self, params: dict[str, Any] | None) -> None:
        """`notifications/cancelled`: stop the handler of that request, if it still runs."""
        request_id = (params or {}).get("requestId")
        task = self.in_flight.get(request_id) if is_valid_id(request_id) else None
        if task is not None:
            task.cancel()

    # -- ending ---------------------------------------------------------------------------

    def close(self) -> None:
        """End the session: stop its handlers, fail its waiting requests, end its streams."""
        if self.closed:
            return
        self.closed = True
        self.lifecycle.close()
        for task in self.in_flight.values():
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PeerClosed("the session has ended"))
        self._pending.clear()
        for stream in self.streams.values():
            stream.finish()


class SessionLimitReached(Exception):
    """The endpoint holds `max_sessions` sessions: it takes no other now."""


class SessionRegistry:
    """The live legacy sessions of one endpoint, bounded in number and idle time; `ids`
    names them (and may resume ones issued elsewhere)."""

    def __init__(
        self,
        app: ServerApp,
        *,
        max_sessions: int,
        idle_timeout: float,
        max_events: int,
        max_finished_streams: int,
        ids: SessionIds | None = None,
    ) -> None:
        self.app = app
        self.ids: SessionIds = ids if ids is not None else RandomSessionIds()
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._max_events = max_events
        self._max_finished = max_finished_streams
        self._sessions: dict[str, LegacySession] = {}
        self._last_sweep = time.monotonic()
        #: Resumable ids the client DELETEd here -> their expiry: never resumed here again.
        #: (Other replicas do not know: see `session_ids` on revocation.)
        self._deleted: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> LegacySession | None:
        """The session held here under that id, if its id has not expired."""
        self.sweep()
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at is not None and session.expires_at <= time.time():
            logger.info("legacy session %s… ended: its id expired", session_id[:8])
            self.end(session)
            return None
        session.touch()
        return session

    def create(self, principal: str | None = None) -> LegacySession | None:
        """A new session (not yet listed: `add` it once initialize succeeded), or None when
        the endpoint is at capacity."""
        self.sweep()
        if len(self._sessions) >= self.max_sessions:
            return None
        return self._open("", LegacyServerLifecycle(self.app.legacy_versions), principal)

    def add(self, session: LegacySession) -> None:
        """List a session whose initialize succeeded, under the id `ids` issues for it
        (`SessionIdError` if none can be made)."""
        session.id = self.ids.issue(session)
        self._sessions[session.id] = session

    def restore(self, session_id: str, principal: str | None) -> LegacySession | None:
        """The session a valid id issued elsewhere carries, rebuilt and listed; None if
        `ids` cannot open it for `principal`. `SessionLimitReached` at capacity."""
        if session_id in self._deleted:
            if self._deleted[session_id] > time.time():
                return None
            del self._deleted[session_id]
        snapshot = self.ids.restore(session_id, principal)
        if snapshot is None:
            return None
        self.sweep()
        if len(self._sessions) >= self.max_sessions:
            raise SessionLimitReached
        lifecycle = LegacyServerLifecycle(self.app.legacy_versions)
        try:
            lifecycle.resume(snapshot.protocol_version, snapshot.client_capabilities,
                             snapshot.client_info)
        except MCPError as exc:
            logger.warning("cannot resume legacy session %s…: %s", session_id[:8], exc)
            return None
        session = self._open(session_id, lifecycle, principal, snapshot)
        self._sessions[session_id] = session
        logger.info("resumed legacy session %s… (issued elsewhere, %s)", session_id[:8],
                    snapshot.protocol_version)
        return session

    def _open(self, session_id: str, lifecycle: LegacyServerLifecycle, principal: str | None,
              snapshot: SessionSnapshot | None = None) -> LegacySession:
        """A new session, announced to the app (which sees its principal and extra)."""
        session = LegacySession(session_id, lifecycle, max_events=self._max_events,
                                max_finished_streams=self._max_finished,
                                restored=snapshot is not None)
        session.principal = principal
        if snapshot is not None:
            session.extra = snapshot.extra
            session.expires_at = snapshot.expires_at
        self.app.connection_opened(session)
        return session

    def delete(self, session: LegacySession) -> None:
        """The client ended the session: end it, and never resume its id here again."""
        if session.expires_at is not None:
            self._deleted[session.id] = session.expires_at
            while len(self._deleted) > self.max_sessions:
                self._deleted.popitem(last=False)
        self.end(session)

    def end(self, session: LegacySession) -> None:
        """Terminate a session (DELETE, expiry, a failed initialize, shutdown)."""
        self._sessions.pop(session.id, None)
        if session.closed:
            return
        session.close()
        try:
            self.app.connection_closed(session)
        except Exception:
            logger.exception("connection_closed failed for session %s…", session.id[:8])

    def sweep(self) -> None:
        """End sessions idle for longer than the timeout (at most once a second)."""
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        cutoff = now - self.idle_timeout
        for session in [s for s in self._sessions.values() if s.idle and s.last_seen < cutoff]:
            logger.info("legacy session %s… expired after %.0f s idle", session.id[:8],
                        now - session.last_seen)
            self.end(session)

    def finish_standalone_streams(self) -> None:
        """End every GET stream (shutting down: their connections may then close)."""
        for session in self._sessions.values():
            session.standalone.finish()

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.end(session)


class LegacyEndpoint:
    """Legacy traffic on the endpoint, once the gate let it in and the era is known."""

    def __init__(self, app: ServerApp, router: EraRouter, sessions: SessionRegistry, *,
                 keepalive: float, retry_ms: int) -> None:
        self.app = app
        self.router = router
        self.sessions = sessions
        self.keepalive = keepalive
        self.retry_ms = retry_ms
        self._versions = frozenset(app.legacy_versions)

    def version_problem(self, headers: dict[str, str]) -> MCPError | None:
        """400 for an MCP-Protocol-Version this server does not speak."""
        version = headers.get(PROTOCOL_VERSION_HEADER)
        # Absent means 2025-03-26 (or whatever the session negotiated): nothing to check.
        if version is None or version.strip(" \t") in self._versions:
            return None
        return InvalidRequest(
            f"unsupported MCP-Protocol-Version {version.strip()[:40]!r}",
            data={"supported": sorted(self._versions), "requested": version[:40]})

    async def _session(self, headers: dict[str, str], principal: Principal | None, send: Send,
                       request_id: RequestId | None) -> LegacySession | None:
        """The session the request names, or None after answering 400 (none) or 404."""
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            await send_error(send, 400, InvalidRequest(
                "the Mcp-Session-Id header is required (start a session with initialize)"),
                request_id=request_id)
            return None
        session_id = session_id.strip()
        binding = _binding(principal)
        session = self.sessions.get(session_id)
        if session is None:
            try:
                session = self.sessions.restore(session_id, binding)
            except SessionLimitReached:
                await send_error(send, 503, InternalError(
                    "too many sessions on this server; try again later"), request_id=request_id)
                return None
        elif not self.sessions.ids.binding_matches(session, binding):
            log_refused(session_id)
            session = None  # answered as unknown: nobody learns that the session exists
        if session is None:
            await send_error(send, 404, InvalidRequest(
                "unknown or ended session: initialize a new one"), request_id=request_id)
        return session

    # -- POST -----------------------------------------------------------------------------

    async def post(self, message: Message, headers: dict[str, str], principal: Principal | None,
                   receive: Receive, send: Send, json_ok: bool, sse_ok: bool) -> None:
        request_id = getattr(message, "id", None)
        problem = self.version_problem(headers)
        if problem is not None:
            await send_error(send, 400, problem, request_id=request_id)
            return
        if (isinstance(message, Request) and message.method == "initialize"
                and not headers.get(SESSION_HEADER)):
            await self._initialize(message, principal, send, json_ok)
            return
        session = await self._session(headers, principal, send, request_id)
        if session is None:
            return
        if isinstance(message, Notification):
            await self._notification(session, message)
            await send_empty(send, 202)
        elif isinstance(message, Response | ErrorResponse):
            session.resolve(message)
            await send_empty(send, 202)
        else:
            await self._request(session, message, principal, receive, send, json_ok, sse_ok)

    async def _initialize(self, message: Request, principal: Principal | None, send: Send,
                          json_ok: bool) -> None:
        session = self.sessions.create(_binding(principal))
        if session is None:
            await send_error(send, 503, InternalError("too many sessions; try again later"),
                             request_id=message.id)
            return
        params = message.params or {}
        incoming = IncomingRequest(StreamSink(session.standalone), message.id,
                                   message.method, params, progress_token(params), principal)
        try:
            result = await self.router.serve_legacy(incoming, session)
        except MCPError as exc:
            self.sessions.end(session)
            await send_error(send, 200, exc, request_id=message.id)
            return
        try:
            self.sessions.add(session)
        except SessionIdError as exc:
            logger.error("could not issue a session id: %s", exc)
            self.sessions.end(session)
            await send_error(send, 200, InternalError(
                "the server could not issue a session id; see its log"), request_id=message.id)
            return
        body = orjson.dumps({"jsonrpc": "2.0", "id": message.id, "result": result})
        session_header = (b"mcp-session-id", session.id.encode("ascii"))
        if json_ok:
            await send_json(send, 200, body, [session_header])
        else:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*SSE_HEADERS, session_header]})
            await send({"type": "http.response.body", "body": message_event(body)})

    async def _notification(self, session: LegacySession, message: Notification) -> None:
        method = message.method
        if method == "notifications/initialized":
            session.lifecycle.initialized()
        elif method == "notifications/cancelled":
            session.cancel_request(message.params)
        elif method != "notifications/progress":
            try:
                await self.app.on_client_notification(message, session)
            except Exception:
                logger.exception("handler for %s failed", method)

    async def _request(self, session: LegacySession, message: Request,
                       principal: Principal | None, receive: Receive, send: Send,
                       json_ok: bool, sse_ok: bool) -> None:
        if message.id in session.in_flight:
            await send_error(send, 200, InvalidRequest(
                f"request id {message.id!r} is already in use"), request_id=message.id)
            return
        stream = session.new_stream()
        outbox = StreamOutbox(stream, json_ok=json_ok, sse_ok=sse_ok,
                              priming_id=event_id(stream.id, 0),
                              retry_ms=self.retry_ms, on_start=session.register)
        params = message.params or {}
        incoming = IncomingRequest(StreamSink(stream), message.id,
                                   message.method, params, progress_token(params), principal)
        token = current_stream.set((session, stream))
        try:  # the task copies the context now: its server requests go on this stream
            task = asyncio.create_task(
                serve_into(outbox, message.id, self.router.serve_legacy(incoming, session))
            )
        finally:
            current_stream.reset(token)
        session.in_flight[message.id] = task
        task.add_done_callback(lambda _task: session.request_done(message.id, stream))
        # A legacy disconnect is not a cancellation: the handler goes on, and its events
        # wait in the stream for a GET with Last-Event-ID.
        await self._write(session, outbox, send, receive, json_ok, sse_ok)

    # -- GET and DELETE -----------------------------------------------------------------------

    async def get(self, headers: dict[str, str], principal: Principal | None, receive: Receive,
                  send: Send, sse_ok: bool) -> None:
        """The standalone stream, or (with Last-Event-ID) the rest of the stream named."""
        session = await self._session(headers, principal, send, None)
        if session is None:
            return
        if not sse_ok:
            await send_error(send, 406, InvalidRequest("GET needs Accept: text/event-stream"))
            return
        last = headers.get("last-event-id")
        position = parse_event_id(last) if last is not None else None
        resumed = session.streams.get(position[0]) if position else None
        if session.restored and position is not None and (
            resumed is None or position[1] > resumed.last_seq
        ):
            last = None  # an event of the replica that issued the id: no history here
        if last is None:
            stream = session.standalone
            outbox = StreamOutbox(stream, cursor=stream.last_seq, priming_id=stream.allocate(),
                                  retry_ms=self.retry_ms)
        elif position is None or resumed is None:
            await send_error(send, 400, InvalidRequest(
                f"Last-Event-ID {last[:40]!r} names no stream of this session"))
            return
        else:
            outbox = StreamOutbox(resumed, cursor=position[1])  # replays only that stream
        await self._write(session, outbox, send, receive, False, True)

    async def delete(self, headers: dict[str, str], principal: Principal | None,
                     send: Send) -> None:
        session = await self._session(headers, principal, send, None)
        if session is not None:
            self.sessions.delete(session)
            await send_empty(send, 204)

    async def _write(self, session: LegacySession, outbox: StreamOutbox, send: Send,
                     receive: Receive, json_ok: bool, sse_ok: bool) -> None:
        session.writers += 1
        try:
            await answer_watching(outbox, send, receive, keepalive=self.keepalive,
                                  json_ok=json_ok, sse_ok=sse_ok)
        finally:
            session.writers -= 1
            session.touch()


def _binding(principal: Principal | None) -> str | None:
    """What a session is bound to: the authenticated principal's binding, or nobody."""
    if principal is None or not principal.authenticated:
        return None
    return principal.binding
