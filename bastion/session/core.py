"""A JSON-RPC peer over a channel: correlation, ids, timeouts, cancellation and progress.

`Session` is symmetric: it sends requests and notifications, and serves the peer's requests
through a handler, each in its own task so a slow handler never blocks the reader. It knows
nothing of MCP features; the client and server sessions build the lifecycles on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.protocol import messages
from bastion.protocol.errors import InternalError, InvalidRequest, MCPError
from bastion.protocol.jsonrpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    EnvelopeError,
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    dumps,
    error_response,
    from_object,
    is_valid_id,
    loads,
    sniff_envelope,
)
from bastion.protocol.meta import PROGRESS_TOKEN, progress_token
from bastion.session.context import IncomingRequest
from bastion.session.errors import (
    InvalidResponse,
    MessageTooLarge,
    PeerClosed,
    RequestTimeout,
)
from bastion.transport.base import Channel, EndOfStream, FrameTooLarge

logger = logging.getLogger("bastion.session")

RequestHandler = Callable[[IncomingRequest], Awaitable[dict[str, Any]]]
NotificationHandler = Callable[[Notification], Awaitable[None]]
ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None] | None]

DEFAULT_TIMEOUT = 60.0
#: No request waits longer than this, however much progress it reports.
DEFAULT_MAX_TIMEOUT = 600.0
#: How long closing waits for cancelled handlers to unwind.
_UNWIND_TIMEOUT = 1.0


@dataclass(slots=True)
class _Pending:
    method: str
    future: asyncio.Future[dict[str, Any]]
    on_progress: ProgressCallback | None = None
    last_progress: float | None = None
    #: While the request waits: its timer, moved on by progress (loop time throughout).
    timer: asyncio.Timeout | None = None
    #: The timeout that progress restarts, and the instant no progress can move past.
    window: float = 0.0
    cap_at: float = 0.0

    def restart_timer(self) -> None:
        """Progress came: the timeout starts again, but never runs past the cap."""
        if self.timer is not None:
            loop_time = asyncio.get_running_loop().time()
            self.timer.reschedule(min(loop_time + self.window, self.cap_at))


class Session:
    """One JSON-RPC conversation over a `Channel`."""

    def __init__(
        self,
        channel: Channel,
        *,
        name: str = "peer",
        on_request: RequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        reply_to_garbage: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        default_timeout: float = DEFAULT_TIMEOUT,
        max_timeout: float = DEFAULT_MAX_TIMEOUT,
        describe_close: Callable[[], str] | None = None,
    ) -> None:
        self.channel = channel
        self.name = name
        self.on_request = on_request
        self.on_notification = on_notification
        self.reply_to_garbage = reply_to_garbage
        self.max_message_size = max_message_size
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        #: How long handlers in flight may still run after the peer closed its side.
        self.drain_timeout = 5.0
        #: Called when the peer's input ends (servers end their long-lived handlers here).
        self.on_input_closed: Callable[[], None] | None = None
        self.allow_batches = False
        self._describe_close = describe_close
        self._ids = itertools.count(1)
        self._pending: dict[RequestId, _Pending] = {}
        self._progress: dict[str | int, _Pending] = {}
        self._incoming: dict[RequestId, asyncio.Task[None]] = {}
        # Notification handlers, progress callbacks, batches and stray replies: tracked so
        # closing the session cancels them instead of leaving them running.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        # A channel that can carry a whole request in the caller's task takes it this way,
        # and hands the parsed answer straight back (`DirectChannel` in transport.base).
        self._write_request = getattr(channel, "write_request", None)
        if self._write_request is not None:
            channel.deliver_parsed = self._deliver_parsed  # type: ignore[attr-defined]
        self._closed = asyncio.Event()
        self.close_reason: str | None = None
        self.protocol_errors = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start reading from the channel."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name=f"session:{self.name}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def aclose(self) -> None:
        """Close the channel, fail pending requests and cancel the handlers in flight."""
        await self.channel.aclose()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._shutdown(self.close_reason or f"session with {self.name} closed")
        current = asyncio.current_task()
        unwinding = [
            task for task in (*self._incoming.values(), *self._tasks) if task is not current
        ]
        if unwinding:
            await asyncio.wait(unwinding, timeout=_UNWIND_TIMEOUT)

    def _shutdown(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        self._fail_pending(reason)
        self._pending.clear()
        self._progress.clear()
        current = asyncio.current_task()
        for task in (*self._incoming.values(), *self._tasks):
            if task is not current:
                task.cancel()

    def _fail_pending(self, reason: str) -> None:
        """Our requests still waiting can get no answer any more."""
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(PeerClosed(f"{pending.method}: {reason}"))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ---------------------------------------------------------------------

    async def send(self, message: Message | dict[str, Any]) -> None:
        if self.closed:
            raise PeerClosed(self.close_reason or "session closed")
        await self._write(self._encode(message))

    def _encode(self, message: Message | dict[str, Any]) -> bytes:
        data = dumps(message)
        if len(data) > self.max_message_size:
            data = self._shrink(message, data)
        return data

    async def _write(self, data: bytes, request: dict[str, Any] | None = None) -> None:
        try:
            if request is not None and self._write_request is not None:
                await self._write_request(request, data)
            else:
                await self.channel.write_frame(data)
        except EndOfStream as exc:
            self._shutdown(self._close_text())
            raise PeerClosed(self.close_reason or "session closed") from exc

    def _shrink(self, message: Message | dict[str, Any], data: bytes) -> bytes:
        """An oversized response becomes an error the peer can read; anything else fails here."""
        as_dict = message if isinstance(message, dict) else message.to_dict()
        size, limit = len(data), self.max_message_size
        if "error" in as_dict:
            return data  # our own errors are small; always let them through
        if "result" in as_dict and "id" in as_dict:
            logger.warning("%s: a %d-byte result exceeds the %d-byte limit", self.name, size, limit)
            return dumps(error_response(as_dict["id"], InternalError(
                f"the result is {size} bytes, over the {limit}-byte message limit",
                data={"size": size, "limit": limit},
            )))
        raise MessageTooLarge(f"a {size}-byte message exceeds the {limit}-byte limit; not sent")

    async def send_notification(self, notification: Notification) -> None:
        await self.send(notification)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.send(Notification(method, params))

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        max_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancellable: bool = True,
    ) -> dict[str, Any]:
        """Send a request and wait for its result (raising MCPError for an error response).

        The timeout restarts on each progress notification but never runs past `max_timeout`.
        If the caller is cancelled or the timeout passes, the peer gets
        `notifications/cancelled` (unless `cancellable` is false, as for initialize).
        """
        if self.closed:
            raise PeerClosed(self.close_reason or "session closed")
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        pending = _Pending(method, loop.create_future(), on_progress)
        if on_progress is not None:
            params = dict(params or {})
            meta = dict(params.get("_meta") or {})
            meta[PROGRESS_TOKEN] = request_id
            params["_meta"] = meta
            self._progress[request_id] = pending
        self._pending[request_id] = pending
        timeout = self.default_timeout if timeout is None else timeout
        limit = min(self.max_timeout if max_timeout is None else max_timeout, self.max_timeout)
        started = loop.time()
        pending.window = timeout
        pending.cap_at = started + limit
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        try:
            data = self._encode(request)
            try:
                # The timer covers sending too: a channel may carry the exchange in place.
                async with asyncio.timeout_at(min(started + timeout, pending.cap_at)) as timer:
                    pending.timer = timer
                    await self._write(data, request)
                    return await pending.future
            except TimeoutError:
                # (The timer cancelled the future it interrupted: no answer came in time.)
                capped = loop.time() >= pending.cap_at
                raise RequestTimeout(method, limit if capped else timeout) from None
        except (asyncio.CancelledError, RequestTimeout):
            answered = pending.future.done() and not pending.future.cancelled()
            if cancellable and not self.closed and not answered:
                with contextlib.suppress(Exception):
                    await self.send(messages.cancelled(request_id, "request cancelled"))
            raise
        finally:
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)

    # -- receiving -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    frame = await self.channel.read_frame()
                except FrameTooLarge as exc:
                    await self._oversized(exc)
                    continue
                await self._receive_frame(frame)
        except EndOfStream:
            reason = self._close_text()
            await self._finish_in_flight(reason)
            self._shutdown(reason)
        except asyncio.CancelledError:
            self._shutdown(self.close_reason or f"session with {self.name} closed")
            raise
        except Exception as exc:  # a bug must not leave callers hanging
            logger.exception("session %s: reader failed", self.name)
            self._shutdown(f"session reader failed: {exc!r}")

    async def drain(self, timeout: float) -> None:
        """Shut down gracefully: end long-lived handlers, let the requests already being
        served finish (at most `timeout` seconds), then close."""
        await self._let_in_flight_finish(timeout)
        await self.aclose()

    async def _finish_in_flight(self, reason: str) -> None:
        """The peer stopped sending: answer what it already asked, within a grace period.

        Nothing more can arrive, so our own pending requests fail now; requests the peer sent
        before closing its side still get their responses if it is reading (a client that
        pipes a file of requests into a server and closes stdin gets every answer).
        """
        self._fail_pending(reason)
        await self._let_in_flight_finish(self.drain_timeout)

    async def _let_in_flight_finish(self, timeout: float) -> None:
        """End long-lived handlers (`on_input_closed`), then wait for the others."""
        if self.on_input_closed is not None:
            self.on_input_closed()
        in_flight = [t for t in self._incoming.values() if t is not asyncio.current_task()]
        if in_flight and timeout > 0:
            await asyncio.wait(in_flight, timeout=timeout)

    def _close_text(self) -> str:
        if self._describe_close is not None:
            return self._describe_close()
        return f"{self.name} closed the connection"

    async def _receive_frame(self, frame: bytes) -> None:
        try:
            decoded = loads(frame, max_size=self.max_message_size)
        except MCPError as exc:
            await self._garbage(exc, frame)
            return
        if isinstance(decoded, list):
            # In its own task: a batched handler may wait on the peer, whose answer only
            # this reader can deliver.
            self._spawn(self._receive_batch(decoded))
            return
        refused = self._accept(decoded)
        if refused is not None:
            await self._garbage(refused, frame, refused.request_id)

    def _deliver_parsed(self, decoded: Any, frame: bytes) -> None:
        """A message the channel has already parsed (no second parse, no reader hop)."""
        refused = self._accept(decoded)
        if refused is not None:
            self._spawn(self._garbage(refused, frame, refused.request_id))

    def _accept(self, decoded: Any) -> EnvelopeError | None:
        """Dispatch one decoded message; returns the envelope error of one it must refuse."""
        try:
            message = from_object(decoded)
        except EnvelopeError as exc:
            return None if self._fail_malformed_response(decoded, exc) else exc
        self._dispatch(message)
        return None

    def _fail_malformed_response(self, decoded: Any, exc: EnvelopeError) -> bool:
        """A malformed answer to one of our requests fails that request at once (rather
        than leaving it to time out); True when it was one."""
        if not isinstance(decoded, dict) or "method" in decoded or exc.request_id is None:
            return False
        pending = self._pending.get(exc.request_id)
        if pending is None or pending.future.done():
            return False
        self.protocol_errors += 1
        logger.warning("%s answered %s with an invalid response: %s", self.name,
                       pending.method, exc.message)
        pending.future.set_exception(InvalidResponse(
            f"{self.name} answered {pending.method} with an invalid response: {exc.message}"))
        return True

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Request):
            self._start_incoming(message)
        elif isinstance(message, Notification):
            self._on_notification(message)
        else:
            self._on_response(message)

    async def _oversized(self, exc: FrameTooLarge) -> None:
        """A frame too large to read: fail the request it answers, or refuse the one it is."""
        kind, request_id = sniff_envelope(exc.head)
        pending = None
        if kind == "response" and request_id is not None:
            pending = self._pending.get(request_id)
        if pending is not None and not pending.future.done():
            logger.warning("%s: response to %s dropped: %s", self.name, pending.method, exc)
            pending.future.set_exception(MessageTooLarge(
                f"the response to {pending.method} was dropped: {exc}"
            ))
            return
        await self._garbage(InvalidRequest(str(exc), data={"size": exc.size, "limit": exc.limit}),
                            exc.head, request_id if kind == "request" else None)

    async def _garbage(
        self, exc: MCPError, frame: bytes | None, request_id: RequestId | None = None
    ) -> None:
        self.protocol_errors += 1
        excerpt = (frame or b"")[:120].decode("utf-8", "replace")
        logger.warning("%s sent an invalid message (%s): %r", self.name, exc.message, excerpt)
        if self.reply_to_garbage and not self.closed:
            with contextlib.suppress(PeerClosed):
                await self.send(error_response(request_id, exc))

    async def _receive_batch(self, items: list[Any]) -> None:
        if not self.allow_batches:
            await self._garbage(
                EnvelopeError("JSON-RPC batches are not supported by this protocol version"),
                None,
            )
            return
        if not items:
            await self._garbage(EnvelopeError("an empty JSON-RPC batch is invalid"), None)
            return
        coros = []
        for item in items:
            try:
                message = from_object(item)
            except EnvelopeError as exc:
                coros.append(_constant(error_response(exc.request_id, exc).to_dict()))
                continue
            if isinstance(message, Request):
                coros.append(self._serve(message))
            else:
                self._dispatch(message)
        if coros:
            replies = [reply for reply in await asyncio.gather(*coros) if reply is not None]
            if replies:
                with contextlib.suppress(PeerClosed):
                    await self.send_raw_batch(replies)

    async def send_raw_batch(self, replies: list[dict[str, Any]]) -> None:
        if self.closed:
            raise PeerClosed(self.close_reason or "session closed")
        await self._write(orjson.dumps(replies))

    def _on_response(self, message: Response | ErrorResponse) -> None:
        if message.id is None:
            logger.warning("%s sent an error without id: %s", self.name, message.error)
            return
        pending = self._pending.get(message.id)
        if pending is None or pending.future.done():
            logger.debug("%s answered unknown or finished request %r", self.name, message.id)
            return
        if isinstance(message, Response):
            pending.future.set_result(message.result)
        else:
            pending.future.set_exception(message.to_exception())

    def _on_notification(self, notification: Notification) -> None:
        method = notification.method
        params = notification.params or {}
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            task = self._incoming.get(request_id) if is_valid_id(request_id) else None
            if task is not None:
                task.cancel()
        elif method == "notifications/progress":
            self._on_progress(params)
            return
        if self.on_notification is not None:
            self._spawn(self._run_notification(notification))

    def _on_progress(self, params: dict[str, Any]) -> None:
        token = params.get("progressToken")
        pending = self._progress.get(token) if is_valid_id(token) else None
        value = params.get("progress")
        if pending is None or not isinstance(value, int | float) or isinstance(value, bool):
            return
        if pending.last_progress is not None and value <= pending.last_progress:
            logger.debug("%s sent non-increasing progress %s", self.name, value)
            return
        pending.last_progress = value
        pending.restart_timer()
        if pending.on_progress is not None:
            total = params.get("total")
            message = params.get("message")
            try:  # the caller's callback must not take the reader down with it
                outcome = pending.on_progress(
                    value,
                    total if isinstance(total, int | float) else None,
                    message if isinstance(message, str) else None,
                )
            except Exception:
                logger.exception("%s: progress callback for %s failed", self.name, pending.method)
                return
            if asyncio.iscoroutine(outcome):
                self._spawn(self._run_progress_callback(outcome, pending.method))

    async def _run_progress_callback(self, outcome: Awaitable[None], method: str) -> None:
        try:
            await outcome
        except Exception:
            logger.exception("%s: progress callback for %s failed", self.name, method)

    async def _run_notification(self, notification: Notification) -> None:
        assert self.on_notification is not None
        try:
            await self.on_notification(notification)
        except Exception:
            logger.exception("%s: handler for %s failed", self.name, notification.method)

    def _start_incoming(self, request: Request) -> None:
        if request.id in self._incoming:
            self._spawn(self._reply(error_response(
                request.id, InvalidRequest(f"request id {request.id!r} is already in use")
            ).to_dict()))
            return
        task = asyncio.create_task(self._serve_and_reply(request))
        self._incoming[request.id] = task
        task.add_done_callback(lambda _t, rid=request.id: self._incoming.pop(rid, None))

    async def _serve_and_reply(self, request: Request) -> None:
        reply = await self._serve(request)
        if reply is not None:
            await self._reply(reply)

    async def _reply(self, reply: dict[str, Any]) -> None:
        with contextlib.suppress(PeerClosed):
            await self.send(reply)

    async def _serve(self, request: Request) -> dict[str, Any] | None:
        """Run the handler; the reply, or None when the request was cancelled."""
        context = IncomingRequest(
            self, request.id, request.method, request.params or {}, progress_token(request.params)
        )
        try:
            if self.on_request is None:
                raise InternalError(f"{self.name} does not accept requests")
            result = await self.on_request(context)
            return Response(request.id, result).to_dict()
        except asyncio.CancelledError:
            # Cancelled by the peer (notifications/cancelled) or by closing: no response.
            return None
        except MCPError as exc:
            return error_response(request.id, exc).to_dict()
        except Exception:
            logger.exception("%s: handler for %s failed", self.name, request.method)
            return error_response(
                request.id, InternalError(f"internal error while handling {request.method}")
            ).to_dict()


async def _constant(value: dict[str, Any]) -> dict[str, Any]:
    return value
