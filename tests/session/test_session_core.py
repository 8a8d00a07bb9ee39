"""Session: the generic JSON-RPC peer, over real sockets (socketpair + LineChannel).

Most tests put a `Session` on one end and a raw peer on the other, so the test controls every
byte the session receives and sees every frame it sends. A few connect two Sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import orjson
import pytest

from bastion.protocol.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    InvalidParams,
    MCPError,
    MethodNotFound,
)
from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE, Notification
from bastion.session.context import IncomingRequest
from bastion.session.core import Session
from bastion.session.errors import PeerClosed, RequestTimeout, SessionError
from bastion.transport.base import EndOfStream
from bastion.transport.framing import LineChannel


class RawPeer:
    """The other end of a session's socket, speaking raw frames."""

    def __init__(self, channel: LineChannel, writer: asyncio.StreamWriter) -> None:
        self.channel = channel
        self.writer = writer

    async def send(self, message: Any) -> None:
        await self.channel.write_frame(orjson.dumps(message))

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 1.0) -> Any:
        return orjson.loads(await asyncio.wait_for(self.channel.read_frame(), timeout))

    async def request(self, request_id: Any, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def reply(self, request_id: Any, result: dict[str, Any]) -> None:
        await self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def aclose(self) -> None:
        await self.channel.aclose()


async def _channels(max_size: int) -> tuple[LineChannel, LineChannel, asyncio.StreamWriter]:
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=left)
    peer_reader, peer_writer = await asyncio.open_connection(sock=right)
    return (
        LineChannel(reader, writer, max_size=max_size),
        LineChannel(peer_reader, peer_writer, max_size=DEFAULT_MAX_MESSAGE_SIZE * 2),
        peer_writer,
    )


@pytest.fixture
async def make():
    """Factories for (session, raw peer) and (session, session); all closed at teardown."""
    closers: list[Any] = []

    async def with_raw(
        *, channel_max: int = DEFAULT_MAX_MESSAGE_SIZE, **kwargs: Any
    ) -> tuple[Session, RawPeer]:
        mine, theirs, raw_writer = await _channels(channel_max)
        session = Session(mine, **kwargs)
        session.start()
        raw = RawPeer(theirs, raw_writer)
        closers.extend([session, raw])
        return session, raw

    async def two(
        a: dict[str, Any] | None = None, b: dict[str, Any] | None = None
    ) -> tuple[Session, Session]:
        mine, theirs, _ = await _channels(DEFAULT_MAX_MESSAGE_SIZE)
        first = Session(mine, name="a", **(a or {}))
        second = Session(theirs, name="b", **(b or {}))
        first.start()
        second.start()
        closers.extend([first, second])
        return first, second

    make = type("Make", (), {})()
    make.with_raw = with_raw
    make.two = two
    yield make
    for closer in closers:
        await closer.aclose()


async def echo(request: IncomingRequest) -> dict[str, Any]:
    if request.method == "fail":
        raise MethodNotFound("no such thing", data={"method": request.method})
    if request.method == "crash":
        raise RuntimeError("secret internal detail")
    return {"method": request.method, "params": request.params}


async def no_other_tasks() -> None:
    """Every task but the test's own has finished (give cancelled ones a few loop turns)."""
    current = asyncio.current_task()
    for _ in range(20):
        others = {task for task in asyncio.all_tasks() if task is not current}
        if not others:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left running: {others}")


# -- requests and responses -------------------------------------------------------------


async def test_concurrent_requests_get_their_own_responses_with_fresh_integer_ids(make):
    session, raw = await make.with_raw()
    calls = [asyncio.create_task(session.request("work", {"n": n})) for n in range(3)]
    received = [await raw.recv() for _ in calls]
    ids = [message["id"] for message in received]
    assert ids == [1, 2, 3]
    assert [message["params"] for message in received] == [{"n": 0}, {"n": 1}, {"n": 2}]
    for message in reversed(received):  # answer out of order
        await raw.reply(message["id"], {"n": message["params"]["n"]})
    assert await asyncio.gather(*calls) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert session._pending == {}


async def test_an_error_response_raises_the_matching_exception(make):
    session, raw = await make.with_raw()
    call = asyncio.create_task(session.request("tools/call", {"name": "x"}))
    message = await raw.recv()
    await raw.send({
        "jsonrpc": "2.0",
        "id": message["id"],
        "error": {"code": -32602, "message": "bad arguments", "data": {"field": "name"}},
    })
    with pytest.raises(InvalidParams) as info:
        await call
    assert info.value.message == "bad arguments"
    assert info.value.data == {"field": "name"}


async def test_two_sessions_talk_both_ways_even_from_inside_a_handler(make):
    async def on_a(request: IncomingRequest) -> dict[str, Any]:
        inner = await request.session.request("inner", {"from": "a"})
        return {"outer": True, "inner": inner}

    _a, b = await make.two(a={"on_request": on_a}, b={"on_request": echo})
    result = await asyncio.wait_for(b.request("outer"), 1)
    assert result == {"outer": True, "inner": {"method": "inner", "params": {"from": "a"}}}


async def test_handler_errors_become_error_responses_without_leaking_details(make):
    _session, raw = await make.with_raw(on_request=echo)
    await raw.request(1, "fail")
    reply = await raw.recv()
    assert reply["id"] == 1
    assert reply["error"]["code"] == METHOD_NOT_FOUND
    assert reply["error"]["data"] == {"method": "fail"}
    await raw.request(2, "crash")
    reply = await raw.recv()
    assert reply["id"] == 2
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert "secret" not in reply["error"]["message"]
    await raw.request(3, "still/alive")
    assert (await raw.recv())["result"]["method"] == "still/alive"


async def test_a_session_without_request_handler_answers_with_an_error(make):
    _, raw = await make.with_raw()
    await raw.request("abc", "ping")
    reply = await raw.recv()
    assert reply["id"] == "abc"
    assert reply["error"]["code"] == INTERNAL_ERROR


async def test_a_slow_handler_does_not_block_other_requests(make):
    release = asyncio.Event()

    async def handler(request: IncomingRequest) -> dict[str, Any]:
        if request.method == "slow":
            await release.wait()
        return {"method": request.method}

    _, raw = await make.with_raw(on_request=handler)
    await raw.request(1, "slow")
    await raw.request(2, "fast")
    assert (await raw.recv())["id"] == 2
    release.set()
    assert (await raw.recv())["id"] == 1


async def test_a_duplicate_id_in_flight_is_refused_and_the_first_still_answered(make):
    release = asyncio.Event()

    async def handler(request: IncomingRequest) -> dict[str, Any]:
        await release.wait()
        return {"ok": True}

    _, raw = await make.with_raw(on_request=handler)
    await raw.request(9, "slow")
    await asyncio.sleep(0.02)
    await raw.request(9, "slow")
    duplicate = await raw.recv()
    assert duplicate["id"] == 9
    assert duplicate["error"]["code"] == INVALID_REQUEST
    release.set()
    assert await raw.recv() == {"jsonrpc": "2.0", "id": 9, "result": {"ok": True}}


async def test_notifications_reach_the_handler_and_a_failing_handler_is_survived(make):
    seen: list[Notification] = []

    async def on_notification(notification: Notification) -> None:
        seen.append(notification)
        if notification.method == "boom":
            raise RuntimeError("handler bug")

    _, raw = await make.with_raw(on_request=echo, on_notification=on_notification)
    await raw.notify("boom")
    await raw.notify("notifications/message", {"level": "info", "data": "hi"})
    await raw.request(1, "ping")
    assert (await raw.recv())["id"] == 1
    await asyncio.sleep(0.01)
    assert [n.method for n in seen] == ["boom", "notifications/message"]
    assert seen[1].params == {"level": "info", "data": "hi"}


async def test_responses_for_unknown_ids_and_errors_without_id_are_ignored(make):
    session, raw = await make.with_raw(on_request=echo)
    await raw.reply(999, {"stray": True})
    await raw.send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}})
    call = asyncio.create_task(session.request("echo"))
    message = await raw.recv()
    await raw.reply(message["id"], {"fine": True})
    assert await call == {"fine": True}
    assert not session.closed


# -- bad input --------------------------------------------------------------------------


async def test_malformed_json_gets_a_parse_error_with_null_id_and_the_session_goes_on(make):
    session, raw = await make.with_raw(on_request=echo, reply_to_garbage=True)
    await raw.send_bytes(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    reply = await raw.recv()
    assert reply["jsonrpc"] == "2.0"
    assert reply.get("id") is None  # unknown id: left out (schema) or null
    assert reply["error"]["code"] == PARSE_ERROR
    await raw.send_bytes(b"\xff\xfe not even utf-8\n")
    assert (await raw.recv())["error"]["code"] == PARSE_ERROR
    await raw.request(2, "after/garbage")
    assert (await raw.recv())["result"]["method"] == "after/garbage"
    assert session.protocol_errors == 2
    assert not session.closed


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ({"jsonrpc": "1.0", "id": 7, "method": "x"}, 7),
        ({"id": 8, "method": "x"}, 8),
        ({"jsonrpc": "2.0", "id": 9, "method": 5}, 9),
        ({"jsonrpc": "2.0", "id": "s", "method": "x", "params": [1, 2]}, "s"),
        ({"jsonrpc": "2.0", "id": 10, "method": "x", "result": {}}, 10),
        ({"jsonrpc": "2.0", "id": {"no": "pe"}, "method": "x"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "x"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "x"}, None),
        ({"jsonrpc": "2.0", "id": 11}, 11),
        ("just a string", None),
        (42, None),
        (None, None),
    ],
)
async def test_wrong_envelopes_get_invalid_request_with_the_id_when_readable(
    make, message, expected_id
):
    session, raw = await make.with_raw(on_request=echo)
    await raw.send(message)
    reply = await raw.recv()
    assert reply.get("id") == expected_id
    assert reply["error"]["code"] == INVALID_REQUEST
    await raw.request("next", "ping")
    assert (await raw.recv())["id"] == "next"
    assert session.protocol_errors == 1


async def test_garbage_is_only_logged_when_reply_to_garbage_is_off(make, caplog):
    session, raw = await make.with_raw(on_request=echo, reply_to_garbage=False, name="srv")
    await raw.send_bytes(b"not json at all\n")
    await raw.send({"jsonrpc": "1.0", "id": 1, "method": "x"})
    await raw.request(2, "ping")
    assert (await raw.recv())["id"] == 2  # nothing was sent back for the garbage
    assert session.protocol_errors == 2
    assert "srv sent an invalid message" in caplog.text
    assert "not json at all" in caplog.text


async def test_oversize_message_is_refused_and_the_next_line_is_read(make):
    session, raw = await make.with_raw(
        on_request=echo, channel_max=1024, max_message_size=1024
    )
    await raw.send_bytes(b'{"jsonrpc":"2.0","id":1,"method":"big","params":{"p":"'
                         + b"x" * 200_000 + b'"}}\n')
    await raw.request(2, "small")
    reply = await raw.recv()
    assert reply["id"] == 1  # read from the head of the dropped frame
    assert reply["error"]["code"] == INVALID_REQUEST
    assert "1024-byte limit" in reply["error"]["message"]
    assert (await raw.recv())["id"] == 2
    assert not session.closed


async def test_session_limit_below_the_channel_limit_is_enforced_too(make):
    _, raw = await make.with_raw(on_request=echo, max_message_size=100)
    await raw.request(1, "big", {"p": "x" * 200})
    reply = await raw.recv()
    assert reply["error"]["code"] == INVALID_REQUEST
    assert reply["error"]["data"]["limit"] == 100
    await raw.request(2, "small")
    assert (await raw.recv())["id"] == 2


async def test_default_limit_is_four_mebibytes(make):
    session, raw = await make.with_raw(on_request=echo)
    assert session.max_message_size == 4 * 1024 * 1024
    padding = "x" * (4 * 1024 * 1024)
    await raw.request(1, "too/big", {"p": padding})
    await raw.request(2, "fits", {"p": padding[: 4 * 1024 * 1024 - 200]})
    reply = await raw.recv(timeout=2)
    assert reply["id"] == 1  # read from the head of the dropped frame
    assert reply["error"]["code"] == INVALID_REQUEST
    assert (await raw.recv(timeout=2))["id"] == 2


async def test_batches_are_refused_unless_allowed(make):
    session, raw = await make.with_raw(on_request=echo)
    assert session.allow_batches is False
    await raw.send([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    reply = await raw.recv()
    assert reply.get("id") is None  # unknown id: left out (schema) or null
    assert reply["error"]["code"] == INVALID_REQUEST
    assert "batch" in reply["error"]["message"]
    await raw.request(2, "ping")
    assert (await raw.recv())["id"] == 2


async def test_an_allowed_batch_gets_one_batch_reply(make):
    seen: list[str] = []

    async def on_notification(notification: Notification) -> None:
        seen.append(notification.method)

    session, raw = await make.with_raw(on_request=echo, on_notification=on_notification)
    session.allow_batches = True
    await raw.send([
        {"jsonrpc": "2.0", "id": 1, "method": "one"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "1.0", "id": 3, "method": "bad"},
        {"jsonrpc": "2.0", "id": 2, "method": "two"},
    ])
    replies = await raw.recv()
    assert isinstance(replies, list)
    by_id = {reply["id"]: reply for reply in replies}
    assert by_id[1]["result"]["method"] == "one"
    assert by_id[2]["result"]["method"] == "two"
    assert by_id[3]["error"]["code"] == INVALID_REQUEST
    assert len(replies) == 3
    await raw.send([])
    empty = await raw.recv()
    assert empty["error"]["code"] == INVALID_REQUEST
    await raw.send([{"jsonrpc": "2.0", "method": "notifications/only"}])
    await raw.request(5, "after")  # a batch of notifications gets no reply at all
    assert (await raw.recv())["id"] == 5
    assert seen == ["notifications/initialized", "notifications/only"]


async def test_a_batched_request_whose_handler_calls_back_does_not_deadlock(make):
    async def handler(request: IncomingRequest) -> dict[str, Any]:
        answer = await request.session.request("sampling/createMessage", timeout=1)
        return {"answer": answer}

    session, raw = await make.with_raw(on_request=handler)
    session.allow_batches = True
    await raw.send([{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}])
    callback = await raw.recv()
    assert callback["method"] == "sampling/createMessage"
    await raw.reply(callback["id"], {"text": "hi"})
    replies = await raw.recv()
    assert replies == [{"jsonrpc": "2.0", "id": 1, "result": {"answer": {"text": "hi"}}}]


async def test_malformed_cancel_and_progress_notifications_do_not_kill_the_session(make):
    session, raw = await make.with_raw(on_request=echo)
    await raw.notify("notifications/cancelled", {"requestId": {"an": "object"}})
    await raw.notify("notifications/cancelled", {"requestId": [1]})
    await raw.notify("notifications/progress", {"progressToken": [1], "progress": 1})
    await raw.notify("notifications/progress", {"progressToken": {}, "progress": 1})
    await raw.notify("notifications/cancelled")
    await raw.request(1, "ping")
    assert (await raw.recv())["id"] == 1
    assert not session.closed


# -- the peer goes away -----------------------------------------------------------------


async def test_a_peer_that_dies_mid_request_fails_every_pending_request(make):
    session, raw = await make.with_raw(name="upstream")
    first = asyncio.create_task(session.request("tools/call"))
    second = asyncio.create_task(session.request("tools/list"))
    await raw.recv()
    await raw.recv()
    await raw.aclose()
    with pytest.raises(PeerClosed, match=r"tools/call: upstream closed the connection"):
        await asyncio.wait_for(first, 1)
    with pytest.raises(PeerClosed, match="tools/list"):
        await asyncio.wait_for(second, 1)
    await asyncio.wait_for(session.wait_closed(), 1)
    assert session.closed
    assert session.close_reason == "upstream closed the connection"
    with pytest.raises(PeerClosed):
        await session.request("again")
    with pytest.raises(PeerClosed):
        await session.notify("notifications/anything")


async def test_describe_close_names_the_cause(make):
    session, raw = await make.with_raw(describe_close=lambda: "server 'x' exited with code 7")
    call = asyncio.create_task(session.request("tools/call"))
    await raw.recv()
    await raw.aclose()
    with pytest.raises(PeerClosed, match="exited with code 7") as info:
        await asyncio.wait_for(call, 1)
    assert isinstance(info.value, SessionError)


async def test_closing_the_session_fails_pending_requests_and_cancels_handlers(make):
    handler_cancelled = asyncio.Event()

    async def handler(request: IncomingRequest) -> dict[str, Any]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return {}

    session, raw = await make.with_raw(on_request=handler)
    call = asyncio.create_task(session.request("outgoing"))
    await raw.recv()
    await raw.request(1, "incoming")
    await asyncio.sleep(0.02)
    await session.aclose()
    with pytest.raises(PeerClosed):
        await asyncio.wait_for(call, 1)
    assert handler_cancelled.is_set()
    assert session.closed
    await session.aclose()  # idempotent


async def test_sending_into_a_closed_channel_raises_peer_closed(make):
    session, _raw = await make.with_raw()
    await session.channel.aclose()
    with pytest.raises(PeerClosed):
        await session.notify("notifications/x")
    assert session.closed


# -- timeouts and cancellation ----------------------------------------------------------


async def test_a_request_timeout_raises_and_cancels_at_the_peer(make):
    session, raw = await make.with_raw()
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        await session.request("tools/call", timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 0.5
    assert isinstance(info.value, TimeoutError)
    assert info.value.seconds == 0.1
    assert info.value.method == "tools/call"
    request = await raw.recv()
    cancelled = await raw.recv()
    assert cancelled["method"] == "notifications/cancelled"
    assert cancelled["params"]["requestId"] == request["id"]
    assert "id" not in cancelled
    assert session._pending == {}
    # A late answer to the cancelled request is ignored.
    await raw.reply(request["id"], {"late": True})
    assert not session.closed


async def test_the_default_timeout_applies(make):
    session, raw = await make.with_raw(default_timeout=0.05)
    with pytest.raises(RequestTimeout):
        await session.request("tools/call")
    await raw.recv()
    assert (await raw.recv())["method"] == "notifications/cancelled"


async def test_caller_cancellation_sends_notifications_cancelled(make):
    session, raw = await make.with_raw()
    call = asyncio.create_task(session.request("tools/call"))
    request = await raw.recv()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    cancelled = await raw.recv()
    assert cancelled["method"] == "notifications/cancelled"
    assert cancelled["params"]["requestId"] == request["id"]
    assert session._pending == {}


async def test_a_non_cancellable_request_is_not_cancelled_at_the_peer(make):
    session, raw = await make.with_raw()
    call = asyncio.create_task(session.request("initialize", cancellable=False))
    await raw.recv()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    with pytest.raises(RequestTimeout):
        await session.request("initialize", timeout=0.05, cancellable=False)
    await raw.recv()
    await session.notify("notifications/marker")
    assert (await raw.recv())["method"] == "notifications/marker"


async def test_incoming_cancellation_stops_the_handler_and_no_response_is_sent(make):
    started = asyncio.Event()
    outcome: list[str] = []

    async def handler(request: IncomingRequest) -> dict[str, Any]:
        if request.method == "ping":
            return {}
        started.set()
        assert not request.cancelled
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome.append("cancelled" if request.cancelled else "not flagged")
            raise
        return {"finished": True}

    session, raw = await make.with_raw(on_request=handler)
    await raw.request(5, "slow")
    await asyncio.wait_for(started.wait(), 1)
    await raw.notify("notifications/cancelled", {"requestId": 5, "reason": "user"})
    await raw.request(6, "ping")
    assert await raw.recv() == {"jsonrpc": "2.0", "id": 6, "result": {}}
    assert outcome == ["cancelled"]
    await asyncio.sleep(0.01)
    assert session._incoming == {}


async def test_cancelling_an_unknown_or_finished_request_is_harmless(make):
    _, raw = await make.with_raw(on_request=echo)
    await raw.request(1, "quick")
    assert (await raw.recv())["id"] == 1
    await raw.notify("notifications/cancelled", {"requestId": 1})
    await raw.notify("notifications/cancelled", {"requestId": "never-sent"})
    await raw.request(2, "quick")
    assert (await raw.recv())["id"] == 2


async def test_cancellation_between_two_sessions(make):
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def slow(request: IncomingRequest) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            stopped.set()
        return {}

    a, _ = await make.two(b={"on_request": slow})
    call = asyncio.create_task(a.request("slow"))
    await asyncio.wait_for(started.wait(), 1)
    call.cancel()
    await asyncio.wait_for(stopped.wait(), 1)
    with pytest.raises(RequestTimeout):
        await a.request("slow", timeout=0.1)
    await asyncio.sleep(0.02)


# -- progress ---------------------------------------------------------------------------


async def test_progress_resets_the_timeout_and_reaches_the_callback(make):
    session, raw = await make.with_raw()
    seen: list[tuple[float, float | None, str | None]] = []

    def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    call = asyncio.create_task(
        session.request("tools/call", {"name": "x"}, timeout=0.2, on_progress=on_progress)
    )
    request = await raw.recv()
    token = request["params"]["_meta"]["progressToken"]
    assert token == request["id"]
    assert request["params"]["name"] == "x"
    for step in range(1, 6):  # 0.5 s of work, far past the 0.2 s timeout
        await asyncio.sleep(0.1)
        await raw.notify(
            "notifications/progress", {"progressToken": token, "progress": step, "total": 5}
        )
    await raw.notify("notifications/progress", {"progressToken": token, "progress": 5.5,
                                                 "message": "almost"})
    await raw.reply(request["id"], {"done": True})
    assert await call == {"done": True}
    assert seen == [(1, 5, None), (2, 5, None), (3, 5, None), (4, 5, None), (5, 5, None),
                    (5.5, None, "almost")]


async def test_non_increasing_progress_is_ignored_and_does_not_reset_the_timeout(make):
    session, raw = await make.with_raw()
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    call = asyncio.create_task(session.request("work", timeout=0.25, on_progress=on_progress))
    request = await raw.recv()
    token = request["id"]
    started = time.monotonic()
    await raw.notify("notifications/progress", {"progressToken": token, "progress": 2})

    async def stale() -> None:
        for value in (2, 1, 2, 0, 1.5, True, "3", None):
            await asyncio.sleep(0.05)
            with contextlib.suppress(EndOfStream):
                await raw.notify(
                    "notifications/progress", {"progressToken": token, "progress": value}
                )

    noise = asyncio.create_task(stale())
    with pytest.raises(RequestTimeout):
        await call
    elapsed = time.monotonic() - started
    assert elapsed < 0.4
    await noise
    assert seen == [2]


async def test_progress_never_extends_past_the_max_timeout(make):
    session, raw = await make.with_raw(max_timeout=5)
    call = asyncio.create_task(
        session.request("work", timeout=0.1, max_timeout=0.3, on_progress=lambda *_: None)
    )
    request = await raw.recv()
    started = time.monotonic()

    async def keep_reporting() -> None:
        for step in range(1, 100):
            await asyncio.sleep(0.03)
            await raw.notify(
                "notifications/progress", {"progressToken": request["id"], "progress": step}
            )
            if call.done():
                return

    reporter = asyncio.create_task(keep_reporting())
    with pytest.raises(RequestTimeout) as info:
        await call
    assert 0.2 <= time.monotonic() - started < 0.6
    assert info.value.seconds == 0.3  # the cap that ended it, not the 0.1 s idle timeout
    assert "0.3 s" in str(info.value)
    await reporter
    assert (await raw.recv())["method"] == "notifications/cancelled"


async def test_the_session_max_timeout_caps_a_larger_request_max(make):
    session, raw = await make.with_raw(max_timeout=0.1)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await session.request("work", timeout=10, max_timeout=100)
    assert time.monotonic() - started < 0.5
    await raw.recv()


async def test_report_progress_sends_increasing_values_and_refuses_others(make):
    refused: list[float] = []

    async def handler(request: IncomingRequest) -> dict[str, Any]:
        await request.report_progress(1, total=3, message="first")
        await request.report_progress(2)
        for bad in (2, 1.5):
            try:
                await request.report_progress(bad)
            except ValueError:
                refused.append(bad)
        await request.report_progress(3, total=3)
        return {"token": request.progress_token}

    a, _ = await make.two(b={"on_request": handler})
    seen: list[tuple[float, float | None, str | None]] = []
    result = await a.request(
        "work", timeout=1, on_progress=lambda p, t, m: seen.append((p, t, m))
    )
    assert seen == [(1, 3, "first"), (2, None, None), (3, 3, None)]
    assert refused == [2, 1.5]
    assert result["token"] == 1


async def test_report_progress_without_a_token_is_a_no_op(make):
    async def handler(request: IncomingRequest) -> dict[str, Any]:
        assert request.progress_token is None
        await request.report_progress(1)
        await request.report_progress(1)  # no token: nothing is sent, nothing is checked
        return {"ok": True}

    _session, raw = await make.with_raw(on_request=handler)
    await raw.request(1, "work")
    assert await raw.recv() == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}


async def test_report_progress_over_the_wire_uses_the_requesters_token(make):
    async def handler(request: IncomingRequest) -> dict[str, Any]:
        await request.report_progress(0.5)
        return {}

    _, raw = await make.with_raw(on_request=handler)
    await raw.request(1, "work", {"_meta": {"progressToken": "tok-1"}})
    progress = await raw.recv()
    assert progress == {
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": "tok-1", "progress": 0.5},
    }
    assert (await raw.recv())["id"] == 1


# -- no leaks ---------------------------------------------------------------------------


async def test_no_task_survives_closing_two_busy_sessions(make):
    forever = asyncio.Event()

    async def stuck(request: IncomingRequest) -> dict[str, Any]:
        await forever.wait()
        return {}

    async def stuck_notification(notification: Notification) -> None:
        await forever.wait()

    a, b = await make.two(
        a={"on_request": stuck, "on_notification": stuck_notification},
        b={"on_request": stuck, "on_notification": stuck_notification},
    )
    calls = [asyncio.create_task(a.request("x")), asyncio.create_task(b.request("y"))]
    await a.notify("notifications/z")
    await b.notify("notifications/z")
    await asyncio.sleep(0.05)
    await a.aclose()
    await b.aclose()
    for call in calls:
        with pytest.raises(PeerClosed):
            await call
    await no_other_tasks()


async def test_no_task_survives_when_the_peer_disappears(make):
    async def stuck(request: IncomingRequest) -> dict[str, Any]:
        await asyncio.sleep(10)
        return {}

    session, raw = await make.with_raw(on_request=stuck)
    await raw.request(1, "x")
    call = asyncio.create_task(session.request("y"))
    await raw.recv()
    await raw.aclose()
    with pytest.raises(PeerClosed):
        await call
    await session.wait_closed()
    await session.aclose()
    await no_other_tasks()


async def test_mcp_error_from_peer_is_an_mcp_error(make):
    session, raw = await make.with_raw()
    call = asyncio.create_task(session.request("x"))
    request = await raw.recv()
    await raw.send({"jsonrpc": "2.0", "id": request["id"],
                    "error": {"code": 1234, "message": "app error"}})
    with pytest.raises(MCPError) as info:
        await call
    assert info.value.code == 1234


async def test_a_failing_progress_callback_does_not_break_the_session(make, caplog):
    session, raw = await make.with_raw()

    def broken(progress: float, total: float | None, message: str | None) -> None:
        raise RuntimeError("callback bug")

    async def broken_async(progress: float, total: float | None, message: str | None) -> None:
        raise RuntimeError("async callback bug")

    for callback in (broken, broken_async):
        call = asyncio.create_task(session.request("work", timeout=1, on_progress=callback))
        request = await raw.recv()
        await raw.notify(
            "notifications/progress", {"progressToken": request["id"], "progress": 1}
        )
        await raw.reply(request["id"], {"ok": True})
        assert await call == {"ok": True}
    await asyncio.sleep(0.01)
    assert not session.closed
    assert "callback bug" in caplog.text
    assert "async callback bug" in caplog.text
