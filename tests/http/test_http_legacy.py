"""The Streamable HTTP endpoint in the legacy era (2025-11-25): sessions, streams, resumption.

Same in-process server and checking client as `test_http_server.py`; every message the server
sends is validated against the 2025-11-25 schema.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest

from tests.http.conftest import LEGACY, MODERN, McpHttp, error_of, sse_events
from tests.schema_check import validate_def

pytestmark = pytest.mark.timeout(30)

EVENT_ID = re.compile(r"^\d+-\d+$")


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def session(serve, http, capabilities=None, **options):
    live = await serve(**options)
    mcp = McpHttp(http, live.url, LEGACY)
    await mcp.initialize(capabilities)
    return mcp, live


def call(mcp: McpHttp, name: str, arguments: dict | None = None, **meta) -> dict:
    return mcp.request("tools/call", {"name": name, "arguments": arguments or {}}, **meta)


async def wait_for(predicate, timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


# -- sessions --------------------------------------------------------------------------------------


async def test_initialize_issues_a_session_id(serve, http):
    live = await serve()
    mcp = McpHttp(http, live.url, LEGACY)
    reply = await mcp.initialize()
    session_id = reply.headers["mcp-session-id"]
    assert re.fullmatch(r"[\x21-\x7e]{32,}", session_id)
    validate_def(reply.body["result"], LEGACY, "InitializeResult")
    assert reply.body["result"]["protocolVersion"] == LEGACY
    listed = await mcp.post(mcp.request("tools/list"))
    assert listed.status == 200 and not listed.is_sse
    assert "test_simple_text" in {t["name"] for t in listed.body["result"]["tools"]}
    assert (await mcp.post(mcp.request("ping"))).body["result"] == {}
    other = McpHttp(http, live.url, LEGACY)
    await other.initialize()
    assert other.session_id != session_id


async def test_version_negotiation_and_header(serve, http):
    live = await serve()
    mcp = McpHttp(http, live.url, "2025-06-18")
    reply = await mcp.initialize()
    assert reply.body["result"]["protocolVersion"] == "2025-06-18"
    message = mcp.request("tools/list")
    assert (await mcp.post(message, {"mcp-protocol-version": None})).status == 200  # 2025-03-26
    bad = await mcp.post(mcp.request("tools/list"), {"mcp-protocol-version": "1999-01-01"})
    assert bad.status == 400 and error_of(bad)["code"] == -32600
    assert error_of(bad)["data"]["requested"] == "1999-01-01"
    unsupported = await http.post(live.url, content=orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}}),
        headers={"mcp-protocol-version": "2024-01-01", "content-type": "application/json"})
    assert unsupported.status_code == 400


async def test_missing_unknown_and_ended_sessions(serve, http):
    mcp, live = await session(serve, http)
    message = mcp.request("tools/list")
    missing = await mcp.post(message, {"mcp-session-id": None})
    assert missing.status == 400 and missing.body["id"] == message["id"]
    unknown = await mcp.post(mcp.request("tools/list"), {"mcp-session-id": "no-such-session"})
    assert unknown.status == 404
    assert len(live.endpoint.sessions) == 1

    headers = {"mcp-session-id": mcp.session_id, "mcp-protocol-version": LEGACY}
    deleted = await http.delete(live.url, headers=headers)
    assert deleted.status_code == 204
    assert len(live.endpoint.sessions) == 0
    assert (await mcp.post(mcp.request("tools/list"))).status == 404
    assert (await http.delete(live.url, headers=headers)).status_code == 404
    get = await http.get(live.url, headers={**headers, "accept": "text/event-stream"})
    assert get.status_code == 404
    assert (await mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            ).status == 404


async def test_session_headers_on_get_and_delete(serve, http):
    live = await serve()
    no_session = await http.get(live.url, headers={"mcp-protocol-version": LEGACY,
                                                   "accept": "text/event-stream"})
    assert no_session.status_code == 400
    bare = await http.get(live.url, headers={"accept": "text/event-stream"})
    assert bare.status_code == 405  # no session and no version: there is no stream to offer
    mcp = McpHttp(http, live.url, LEGACY)
    await mcp.initialize()
    wrong_accept = await http.get(live.url, headers={"mcp-session-id": mcp.session_id,
                                                     "accept": "application/json"})
    assert wrong_accept.status_code == 406


async def test_initialize_failure_opens_no_session(serve, http):
    live = await serve()
    mcp = McpHttp(http, live.url, LEGACY)
    reply = await mcp.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                            "params": {"capabilities": {}}})
    assert reply.status == 200 and error_of(reply)["code"] == -32602
    assert "mcp-session-id" not in reply.headers
    assert len(live.endpoint.sessions) == 0


async def test_second_initialize_in_a_session_is_refused(serve, http):
    mcp, _ = await session(serve, http)
    again = await mcp.post({"jsonrpc": "2.0", "id": 99, "method": "initialize",
                            "params": {"protocolVersion": LEGACY, "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}}})
    assert again.status == 200 and error_of(again)["code"] == -32600


async def test_errors_stay_200_in_legacy(serve, http):
    mcp, _ = await session(serve, http)
    unknown = await mcp.post(mcp.request("server/discover"))
    assert unknown.status == 200 and error_of(unknown)["code"] == -32601
    missing = await mcp.post(mcp.request("resources/read", {"uri": "test://nope"}))
    assert missing.status == 200 and error_of(missing)["code"] == -32002


async def test_session_limit(serve, http):
    live = await serve(max_sessions=2)
    for _ in range(2):
        await McpHttp(http, live.url, LEGACY).initialize()
    refused = await McpHttp(http, live.url, LEGACY).post(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LEGACY, "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"}}})
    assert refused.status == 503


async def test_idle_sessions_expire(serve, http):
    live = await serve(session_idle_timeout=0.05)
    first = McpHttp(http, live.url, LEGACY)
    await first.initialize()
    await asyncio.sleep(1.1)  # sweeps run at most once a second, when a session is created
    await McpHttp(http, live.url, LEGACY).initialize()
    assert len(live.endpoint.sessions) == 1
    assert (await first.post(first.request("tools/list"))).status == 404


async def test_expiry_stops_handlers_nobody_listens_to(serve, http):
    mcp, live = await session(serve, http, session_idle_timeout=0.05)
    message = call(mcp, "test_wait_forever")
    body = orjson.dumps(message)
    head = "".join(f"{k}: {v}\r\n" for k, v in mcp.headers(message).items())
    _, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    await asyncio.wait_for(live.gates.started.wait(), 5)
    writer.close()  # a legacy disconnect is not a cancellation...
    await asyncio.sleep(0.2)
    assert not live.gates.cancelled.is_set()
    await asyncio.sleep(1.0)
    await McpHttp(http, live.url, LEGACY).initialize()  # (sessions are swept on traffic)
    # ...but a session nobody listens to expires, and its handlers stop.
    await asyncio.wait_for(live.gates.cancelled.wait(), 5)
    assert (await mcp.post(mcp.request("tools/list"))).status == 404


# -- POST streams ----------------------------------------------------------------------------------


async def test_progress_streams_with_priming_event_and_ids(serve, http):
    mcp, _ = await session(serve, http, retry_ms=750)
    reply = await mcp.post(call(mcp, "test_tool_with_progress", progressToken=7))
    assert reply.is_sse and reply.headers["x-accel-buffering"] == "no"
    priming, *events = reply.events
    assert priming.data == "" and priming.retry == 750 and EVENT_ID.match(priming.id)
    stream = priming.id.partition("-")[0]
    assert [e.id for e in events] == [f"{stream}-{n}" for n in range(1, 5)]
    assert [m.get("method") for m in reply.messages] == ["notifications/progress"] * 3 + [None]
    assert "result" in reply.last

    second = await mcp.post(call(mcp, "test_tool_with_progress", progressToken=8))
    ids = [e.id for e in reply.events + second.events]
    assert len(ids) == len(set(ids))  # unique across the session's streams


async def test_logging_follows_set_level(serve, http):
    mcp, _ = await session(serve, http)
    loud = await mcp.post(call(mcp, "test_tool_with_logging"))
    assert [m["params"]["data"] for m in loud.messages if m.get("method")] == [
        "Tool execution started", "Tool processing data", "Tool execution completed"]
    assert (await mcp.post(mcp.request("logging/setLevel", {"level": "error"}))).status == 200
    quiet = await mcp.post(call(mcp, "test_tool_with_logging"))
    assert not quiet.is_sse and "result" in quiet.body


async def test_server_requests_go_on_the_post_stream_and_answers_come_back(serve, http):
    mcp, live = await session(serve, http, {"sampling": {}, "elicitation": {}})
    message = call(mcp, "test_sampling", {"prompt": "capital?"})
    mcp.checker.sent(message)
    async with http.stream("POST", mcp.url, content=orjson.dumps(message),
                           headers=mcp.headers(message)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        assert (await anext(events)).data == ""  # priming
        request = (await anext(events)).message
        mcp.checker.check(request)
        assert request["method"] == "sampling/createMessage"
        assert request["params"]["maxTokens"] == 100
        answer = {"jsonrpc": "2.0", "id": request["id"],
                  "result": {"role": "assistant", "model": "m",
                             "content": {"type": "text", "text": "Paris"}}}
        assert (await mcp.post(answer)).status == 202
        final = (await anext(events)).message
        mcp.checker.check(final)
        assert final["id"] == message["id"]
        assert final["result"]["content"][0]["text"] == "LLM response: Paris"
    # An answer nobody waits for is still accepted.
    assert (await mcp.post({"jsonrpc": "2.0", "id": 12345, "result": {}})).status == 202
    assert not live.endpoint.sessions.get(mcp.session_id).in_flight


async def test_client_error_answer_reaches_the_tool(serve, http):
    mcp, _ = await session(serve, http, {"elicitation": {}})
    message = call(mcp, "test_elicitation", {"message": "who?"})
    mcp.checker.sent(message)
    async with http.stream("POST", mcp.url, content=orjson.dumps(message),
                           headers=mcp.headers(message)) as response:
        events = sse_events(response)
        await anext(events)
        request = (await anext(events)).message
        assert request["method"] == "elicitation/create"
        refusal = {"jsonrpc": "2.0", "id": request["id"],
                   "error": {"code": -32603, "message": "no UI"}}
        assert (await mcp.post(refusal)).status == 202
        final = (await anext(events)).message
        mcp.checker.check(final)
        assert final["result"]["isError"] is True


async def test_cancelled_notification_stops_the_request(serve, http):
    mcp, live = await session(serve, http)
    message = call(mcp, "test_wait_forever")
    pending = asyncio.create_task(mcp.post(message))
    await asyncio.wait_for(live.gates.started.wait(), 5)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
              "params": {"requestId": message["id"], "reason": "user"}}
    assert (await mcp.post(cancel)).status == 202
    await asyncio.wait_for(live.gates.cancelled.wait(), 5)
    reply = await asyncio.wait_for(pending, 5)
    assert reply.status == 200 and reply.is_sse and reply.messages == []  # never an answer


async def test_duplicate_request_id_in_flight(serve, http):
    mcp, live = await session(serve, http)
    message = call(mcp, "test_wait_forever")
    pending = asyncio.create_task(mcp.post(message))
    await asyncio.wait_for(live.gates.started.wait(), 5)
    again = await mcp.post(message)
    assert again.status == 200 and error_of(again)["code"] == -32600
    await http.delete(mcp.url, headers={"mcp-session-id": mcp.session_id})
    await asyncio.wait_for(live.gates.cancelled.wait(), 5)  # ending the session stops it
    pending.cancel()


# -- the GET stream, resumption --------------------------------------------------------------------


async def test_get_stream_carries_unrelated_notifications(serve, http):
    mcp, live = await session(serve, http, keepalive_interval=0.1)
    headers = {**mcp.headers(None), "accept": "text/event-stream"}
    async with http.stream("GET", mcp.url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        events = sse_events(response)
        priming = await anext(events)
        assert priming.data == "" and priming.id.startswith("0-") and priming.retry

        triggered = await mcp.post(call(mcp, "test_trigger_tool_change"))
        assert not triggered.is_sse  # the change goes on the GET stream, not this one
        subscribed = await mcp.post(mcp.request("resources/subscribe",
                                                {"uri": "test://watched-resource"}))
        assert subscribed.body["result"] == {}
        await live.server.notify_resource_updated("test://watched-resource")
        await live.server.notify_resource_updated("test://not-subscribed")
        received = []
        while len(received) < 2:
            event = await anext(events)
            if event.comment:
                continue
            assert event.id.startswith("0-")
            mcp.checker.check(event.message)
            received.append(event.message)
        assert [m["method"] for m in received] == [
            "notifications/tools/list_changed", "notifications/resources/updated"]
        assert received[1]["params"] == {"uri": "test://watched-resource"}
        assert (await anext(events)).comment  # keep-alive

        # A second GET takes the stream over; this one ends.
        async with http.stream("GET", mcp.url, headers=headers) as second:
            assert second.status_code == 200
            rest = [e async for e in events]
            assert all(e.comment for e in rest)


async def test_resume_replays_only_that_stream(serve, http):
    mcp, live = await session(serve, http)
    message = call(mcp, "test_gated", progressToken="g")
    mcp.checker.sent(message)
    seen = []
    async with http.stream("POST", mcp.url, content=orjson.dumps(message),
                           headers=mcp.headers(message)) as response:
        events = sse_events(response)
        seen.append(await anext(events))  # priming
        seen.append(await anext(events))  # progress 1
        await asyncio.wait_for(live.gates.started.wait(), 5)
    # The connection is gone; a legacy disconnect does not cancel: the tool goes on.
    await mcp.post(call(mcp, "test_trigger_tool_change"))  # lands on stream 0 meanwhile
    live.gates.release.set()
    await asyncio.wait_for(live.gates.finished.wait(), 5)
    assert not live.gates.cancelled.is_set()
    stream = seen[0].id.partition("-")[0]
    assert seen[1].id == f"{stream}-1"

    headers = {**mcp.headers(None), "accept": "text/event-stream", "last-event-id": seen[1].id}
    async with http.stream("GET", mcp.url, headers=headers) as resumed:
        assert resumed.status_code == 200
        replay = [e async for e in sse_events(resumed)]  # ends after the response
    assert [e.id for e in replay] == [f"{stream}-2", f"{stream}-3"]
    messages = [e.message for e in replay]
    for m in messages:
        mcp.checker.check(m)
    assert messages[0]["method"] == "notifications/progress"
    assert messages[0]["params"]["progress"] == 2
    assert messages[1]["id"] == message["id"]
    assert messages[1]["result"]["content"][0]["text"] == "gated done"

    # Resuming from the priming event replays the whole stream, still only that stream.
    headers["last-event-id"] = f"{stream}-0"
    async with http.stream("GET", mcp.url, headers=headers) as again:
        assert [e.id for e in [e async for e in sse_events(again)]] == [
            f"{stream}-{n}" for n in (1, 2, 3)]
    # The standalone stream kept the list change for whoever resumes it.
    headers["last-event-id"] = "0-0"
    async with http.stream("GET", mcp.url, headers=headers) as standalone:
        events = sse_events(standalone)
        change = await anext(events)
        assert change.message["method"] == "notifications/tools/list_changed"


@pytest.mark.parametrize("last", ["garbage", "99-1", "1-x", "-1"])
async def test_resume_of_unknown_stream_is_400(serve, http, last):
    mcp, _ = await session(serve, http)
    headers = {**mcp.headers(None), "accept": "text/event-stream", "last-event-id": last}
    response = await http.get(mcp.url, headers=headers)
    assert response.status_code == 400


async def test_event_buffer_is_bounded(serve, http):
    mcp, live = await session(serve, http, max_events_per_stream=4, max_finished_streams=2)
    for _ in range(5):
        assert (await mcp.post(call(mcp, "test_tool_with_progress", progressToken=1))).is_sse
    state = live.endpoint.sessions.get(mcp.session_id)
    assert all(len(s.buffer) <= 4 for s in state.streams.values())
    finished = [s for sid, s in state.streams.items() if sid != 0]
    assert len(finished) == 2  # only the newest finished streams are kept for resumption
    for _ in range(10):
        await live.server.notify_list_changed("tools")
    assert len(state.standalone.buffer) == 4


async def test_modern_and_legacy_share_the_endpoint(serve, http):
    mcp, live = await session(serve, http)
    modern = McpHttp(http, live.url, MODERN)
    both = await asyncio.gather(mcp.post(call(mcp, "test_simple_text")),
                                modern.post(call(modern, "test_simple_text")))
    assert [r.status for r in both] == [200, 200]
    # A modern request that carries a legacy session id is still modern (and stateless).
    crossed = await modern.post(call(modern, "test_simple_text"),
                                {"mcp-session-id": mcp.session_id})
    assert crossed.body["result"]["resultType"] == "complete"


# -- shutdown -------------------------------------------------------------------------------------


async def test_shutdown_ends_long_lived_streams_gracefully(serve, http):
    mcp, live = await session(serve, http)
    modern = McpHttp(http, live.url, MODERN)
    listen = modern.request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    modern.checker.sent(listen)
    get_headers = {**mcp.headers(None), "accept": "text/event-stream"}
    async with http.stream("GET", mcp.url, headers=get_headers) as get_stream, \
            http.stream("POST", mcp.url, content=orjson.dumps(listen),
                        headers=modern.headers(listen)) as listen_stream:
        get_events = sse_events(get_stream)
        listen_events = sse_events(listen_stream)
        await anext(get_events)  # priming
        await anext(listen_events)  # acknowledged
        live.endpoint.begin_shutdown()  # what the server's shutdown does first
        async with asyncio.timeout(2):
            assert [e async for e in get_events if not e.comment] == []
            final = [e.message async for e in listen_events if not e.comment]
    assert len(final) == 1
    modern.checker.check(final[0])
    assert final[0]["id"] == listen["id"]
    assert final[0]["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == listen["id"]


async def test_server_stop_does_not_wait_for_open_streams(serve, http):
    mcp, live = await session(serve, http)
    modern = McpHttp(http, live.url, MODERN)
    listen = modern.request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    async with http.stream("GET", mcp.url, headers={**mcp.headers(None),
                                                    "accept": "text/event-stream"}) as get, \
            http.stream("POST", mcp.url, content=orjson.dumps(listen),
                        headers=modern.headers(listen)) as listening:
        await anext(sse_events(get))
        await anext(sse_events(listening))
        started = asyncio.get_running_loop().time()
        live.uvicorn.should_exit = True
        await asyncio.wait_for(live.task, 4)
        assert asyncio.get_running_loop().time() - started < 3
    assert len(live.endpoint.sessions) == 0  # lifespan shutdown ended every session
