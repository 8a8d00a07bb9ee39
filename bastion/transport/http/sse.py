"""Answers on the MCP endpoint: SSE framing, resumable legacy streams, JSON or SSE replies.

An event carries one serialized JSON-RPC message on one `data:` line (orjson never emits raw
newlines, so no splitting is needed). Legacy (2025-11-25) streams number their events so a
client can resume with GET + `Last-Event-ID`; modern (2026-07-28) streams are never resumed
and carry no ids.

Event ids are `"<stream>-<seq>"`: the stream number is unique within the session (0 is the
standalone GET stream, POST streams count from 1) and the sequence number is unique within
the stream, so an id is unique per session and names the one stream a resumption replays.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from bastion.protocol.errors import INTERNAL_ERROR, InternalError, MCPError
from bastion.protocol.jsonrpc import Notification, RequestId, dumps, error_response
from bastion.transport.http.sse_parser import MESSAGE_EVENT, SSE_MEDIA_TYPE

logger = logging.getLogger("bastion.transport.http")

#: The ASGI `send` and `receive` callables.
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

#: An SSE comment: ignored by clients, it keeps idle connections (and proxies) open.
KEEPALIVE = b":\n\n"

_DATA_ONLY = b"event: %b\ndata: " % MESSAGE_EVENT.encode("ascii")


def message_event(data: bytes) -> bytes:
    """An event without an id (modern streams)."""
    return b"".join((_DATA_ONLY, data, b"\n\n"))


def numbered_event(event_id: str, data: bytes) -> bytes:
    """An event with an id (legacy streams)."""
    return b"".join((b"id: ", event_id.encode("ascii"), b"\n", _DATA_ONLY, data, b"\n\n"))


def priming_event(event_id: str, retry_ms: int | None) -> bytes:
    """The event that opens a resumable stream: an id, the reconnection delay, empty data."""
    retry = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return b"".join((b"id: ", event_id.encode("ascii"), b"\n", retry, b"data: \n\n"))


def event_id(stream_id: int, seq: int) -> str:
    return f"{stream_id}-{seq}"


def parse_event_id(value: str) -> tuple[int, int] | None:
    """`(stream, seq)` of an id this module issued, or None for anything else."""
    stream, sep, seq = value.strip().partition("-")
    if not sep or not stream.isdigit() or not seq.isdigit() or len(value) > 40:
        return None
    return int(stream), int(seq)


class EventStream:
    """One logical SSE stream of a legacy session.

    Events are numbered and kept in a bounded buffer, which is both the backlog of the
    connection writing them and the replay source for a client that resumes. At most one
    connection writes a stream at a time: a resuming connection takes it over, and the one
    it replaces stops. The stream is finished once its last event (the response, for a POST
    stream) is in; a finished stream is still replayable until the session forgets it.
    """

    __slots__ = ("_evicted", "_seq", "_writer", "buffer", "finished", "id", "wakeup")

    def __init__(self, stream_id: int, max_events: int) -> None:
        self.id = stream_id
        self.buffer: deque[tuple[int, bytes]] = deque(maxlen=max_events)
        self.finished = False
        #: Set whenever there is something new for the writer (an event, the end, a takeover).
        self.wakeup = asyncio.Event()
        # Seq 0 is the POST stream's priming event; real events count from 1.
        self._seq = 0
        self._evicted = 0
        self._writer = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def allocate(self) -> str:
        """A fresh event id that carries no event (the priming event of a new connection)."""
        self._seq += 1
        return event_id(self.id, self._seq)

    def publish(self, data: bytes, *, final: bool = False) -> None:
        """Append one message; `final` finishes the stream after it."""
        if self.finished:
            logger.debug("stream %d is finished; dropped a late message", self.id)
            return
        self._seq += 1
        if len(self.buffer) == self.buffer.maxlen:
            self._evicted = self.buffer[0][0]
        self.buffer.append((self._seq, numbered_event(event_id(self.id, self._seq), data)))
        if final:
            self.finished = True
        self.wakeup.set()

    def finish(self) -> None:
        self.finished = True
        self.wakeup.set()

    def attach(self) -> int:
        """Become the stream's one writer; returns the token `is_writer` checks."""
        self._writer += 1
        self.wakeup.set()  # the writer it replaces wakes up and sees it lost the stream
        return self._writer

    def is_writer(self, token: int) -> bool:
        return self._writer == token

    def events_after(self, seq: int) -> list[tuple[int, bytes]]:
        """The buffered events after `seq` (a gap is logged: those events are gone)."""
        if seq < self._evicted:
            logger.warning("stream %d: events %d..%d were evicted before they were resumed",
                           self.id, seq + 1, self._evicted)
        return [item for item in self.buffer if item[0] > seq]


# -- answering one HTTP request ----------------------------------------------------------------

SSE_HEADERS = [
    (b"content-type", SSE_MEDIA_TYPE.encode("ascii")),
    (b"cache-control", b"no-cache, no-transform"),
    # Tells nginx-style proxies not to buffer the stream (the spec's SHOULD).
    (b"x-accel-buffering", b"no"),
]
JSON_HEADER = (b"content-type", b"application/json")


class Outbox:
    """What one HTTP response delivers: messages before the reply, then the reply.

    The handler side calls `deliver` (the reply) or `abandon` (no reply); the writer side
    (`answer`) decides between JSON and SSE and drains `take()`. `wakeup` is set whenever
    there is news for the writer; `gone` once the client disconnected.
    """

    __slots__ = ()

    wakeup: asyncio.Event
    reply: bytes | None
    status: int
    committed: bool
    gone: bool

    @property
    def ended(self) -> bool:
        """Nothing more will come, and nothing is left to write."""
        raise NotImplementedError

    @property
    def answered(self) -> bool:
        """The handler is done (it replied, or it was cancelled)."""
        raise NotImplementedError

    def has_frames(self) -> bool:
        raise NotImplementedError

    def take(self) -> list[bytes]:
        raise NotImplementedError

    def deliver(self, data: bytes, status: int) -> None:
        """The handler's reply (serialized), and the HTTP status it would have as JSON."""
        raise NotImplementedError

    def abandon(self) -> None:
        """The handler ended without a reply (cancelled)."""
        raise NotImplementedError

    @property
    def superseded(self) -> bool:
        """Another connection took the stream over: this one ends its response."""
        return False

    def start_stream(self) -> bytes | None:
        """Called once when the answer becomes SSE; returns the first bytes to send."""
        return None

    def client_gone(self) -> None:
        self.gone = True
        self.wakeup.set()


class RequestOutbox(Outbox):
    """A modern request's answer. It is also the handler's notification sink: progress and
    log messages queue here (the handler waits when `limit` are unsent), nothing after the
    client left. Events carry no ids: modern streams are not resumable."""

    __slots__ = ("_frames", "_json_ok", "_limit", "_space", "_sse_ok", "committed",
                 "ended_flag", "gone", "reply", "status", "wakeup")

    def __init__(self, *, json_ok: bool, sse_ok: bool, limit: int) -> None:
        self._frames: deque[bytes] = deque()
        self._limit = limit
        self._space = asyncio.Event()
        self._json_ok = json_ok
        self._sse_ok = sse_ok
        self.wakeup = asyncio.Event()
        self.reply = None
        self.status = 200
        self.committed = False
        self.gone = False
        self.ended_flag = False

    @property
    def ended(self) -> bool:
        return self.ended_flag and not self._frames

    @property
    def answered(self) -> bool:
        return self.ended_flag

    def has_frames(self) -> bool:
        return bool(self._frames)

    async def send_notification(self, notification: Notification) -> None:
        if self.gone or self.ended_flag or not self._sse_ok:
            return  # a JSON-only client, or one that left: nobody to tell
        self._frames.append(message_event(dumps(notification)))
        self.wakeup.set()
        if len(self._frames) >= self._limit:
            self._space.clear()
            await self._space.wait()

    def take(self) -> list[bytes]:
        frames = list(self._frames)
        self._frames.clear()
        self._space.set()
        return frames

    def deliver(self, data: bytes, status: int) -> None:
        if self.committed or self._frames or not self._json_ok:
            self._frames.append(message_event(data))
        else:
            self.reply, self.status = data, status
        self.ended_flag = True
        self.wakeup.set()

    def abandon(self) -> None:
        self.ended_flag = True
        self._space.set()
        self.wakeup.set()


class StreamOutbox(Outbox):
    """A legacy answer on an `EventStream`: a POST's own stream, or a GET that follows the
    standalone stream or resumes one. Events stay in the stream's buffer after they are
    written, so a client that drops the connection can resume them."""

    __slots__ = ("_gone", "_json_ok", "_on_start", "_priming_id", "_retry_ms", "_sse_ok",
                 "_token", "committed", "cursor", "reply", "status", "stream")

    def __init__(
        self,
        stream: EventStream,
        *,
        json_ok: bool = True,
        sse_ok: bool = True,
        cursor: int = 0,
        priming_id: str | None = None,
        retry_ms: int | None = None,
        on_start: Callable[[EventStream], None] | None = None,
    ) -> None:
        self.stream = stream
        self.cursor = cursor
        self.reply = None
        self.status = 200
        self.committed = False
        self._gone = False
        self._json_ok = json_ok
        self._sse_ok = sse_ok
        self._priming_id = priming_id
        self._retry_ms = retry_ms
        self._on_start = on_start
        self._token = stream.attach()

    @property
    def wakeup(self) -> asyncio.Event:  # type: ignore[override]
        return self.stream.wakeup

    @property
    def gone(self) -> bool:  # type: ignore[override]
        return self._gone

    @gone.setter
    def gone(self, value: bool) -> None:
        self._gone = value

    @property
    def superseded(self) -> bool:
        # A connection that resumed this stream took it over: this one stops writing.
        return not self.stream.is_writer(self._token)

    @property
    def ended(self) -> bool:
        return self.superseded or (self.stream.finished and not self.has_frames())

    @property
    def answered(self) -> bool:
        return self.stream.finished

    def has_frames(self) -> bool:
        buffer = self.stream.buffer
        return bool(buffer) and buffer[-1][0] > self.cursor

    def take(self) -> list[bytes]:
        events = self.stream.events_after(self.cursor)
        if events:
            self.cursor = events[-1][0]
        return [frame for _, frame in events]

    def start_stream(self) -> bytes | None:
        if self._on_start is not None:
            self._on_start(self.stream)
        if self._priming_id is None:
            return None
        return priming_event(self._priming_id, self._retry_ms)

    def deliver(self, data: bytes, status: int) -> None:
        if self.committed or not self._json_ok or (self._sse_ok and self.stream.last_seq > 0):
            self.stream.publish(data, final=True)
        else:
            self.reply, self.status = data, status
            self.stream.finish()

    def abandon(self) -> None:
        self.stream.finish()


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; False on timeout."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def answer(
    outbox: Outbox,
    send: Send,
    *,
    keepalive: float,
    json_ok: bool = True,
    sse_ok: bool = True,
) -> None:
    """Write one response: JSON when the reply is the only thing to say, else SSE.

    The response is held until the first message or the reply: a reply alone becomes a JSON
    body with its status (so errors keep their HTTP status); anything before it commits to
    SSE, as does `keepalive` seconds of silence (so a comment can keep the connection open).
    A client that takes only one of the two gets only that one.
    """
    if json_ok:
        while True:
            outbox.wakeup.clear()
            if outbox.gone:
                return
            if outbox.reply is not None:
                await send_json(send, outbox.status, outbox.reply)
                return
            if outbox.has_frames():
                if sse_ok:
                    break
                outbox.take()  # nowhere to put messages for a JSON-only client
                continue
            if outbox.ended:
                break  # abandoned without a reply: an empty stream says "no answer"
            if not await _wait(outbox.wakeup, keepalive) and sse_ok:
                break
    outbox.committed = True
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
    # An abandoned request (cancelled) gets an empty stream: nothing to resume.
    first = None if outbox.ended and not outbox.has_frames() else outbox.start_stream()
    pending = [first] if first else []
    while True:
        outbox.wakeup.clear()
        if outbox.gone:
            return
        if outbox.superseded:
            break
        pending.extend(outbox.take())
        if outbox.ended:  # what is left goes out with the end of the response
            await send({"type": "http.response.body", "body": b"".join(pending)})
            return
        if pending:
            await send({"type": "http.response.body", "body": b"".join(pending),
                        "more_body": True})
            pending = []
        if not await _wait(outbox.wakeup, keepalive):
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def answer_watching(
    outbox: Outbox,
    send: Send,
    receive: Receive,
    *,
    keepalive: float,
    json_ok: bool = True,
    sse_ok: bool = True,
    cancel: asyncio.Task[Any] | None = None,
) -> None:
    """`answer`, while watching for the client to disconnect; a disconnect also cancels
    `cancel` (the handler of a modern request, for which closing the stream is the
    cancellation)."""
    # Most handlers answer within their first step; then there is nothing left to watch for
    # and the whole answer goes out at once.
    await asyncio.sleep(0)
    watcher = None
    if not outbox.answered:
        watcher = asyncio.create_task(_watch_disconnect(receive, outbox, cancel))
    try:
        await answer(outbox, send, keepalive=keepalive, json_ok=json_ok, sse_ok=sse_ok)
    except OSError:  # the connection broke under a server that reports it
        outbox.client_gone()
    finally:
        if watcher is not None:
            watcher.cancel()
        # Done by now unless the client left or writing failed: either way, stop it.
        if cancel is not None and not cancel.done():
            cancel.cancel()


async def _watch_disconnect(receive: Receive, outbox: Outbox,
                            cancel: asyncio.Task[Any] | None) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    outbox.client_gone()
    if cancel is not None:
        cancel.cancel()


async def serve_into(outbox: Outbox, request_id: RequestId,
                     handling: Awaitable[dict[str, Any]],
                     statuses: dict[int, int] | None = None) -> None:
    """Run a handler and hand its reply, or its error, to the outbox (serialized once).

    `statuses` maps error codes to the HTTP status of a JSON answer (200 when absent).
    """
    code = 0
    try:
        result = await handling
        data = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})
    except asyncio.CancelledError:
        outbox.abandon()  # cancelled: no response, ever
        raise
    except MCPError as exc:
        code = exc.code
        data = dumps(error_response(request_id, exc))
    except Exception:
        logger.exception("handler for request %r failed", request_id)
        code = INTERNAL_ERROR
        data = dumps(error_response(
            request_id, InternalError("internal error while handling the request")))
    outbox.deliver(data, statuses.get(code, 200) if statuses and code else 200)


async def send_json(send: Send, status: int, body: bytes,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [JSON_HEADER, (b"content-length", b"%d" % len(body))]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, exc: MCPError,
                     extra: list[tuple[bytes, bytes]] | None = None, *,
                     request_id: RequestId | None = None) -> None:
    """A JSON-RPC error body (without an `id` member when the request's id is unknown)."""
    await send_json(send, status, dumps(error_response(request_id, exc)), extra)


async def send_empty(send: Send, status: int) -> None:
    """202 Accepted (a notification or a response) or 204 (a session ended): no body."""
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
