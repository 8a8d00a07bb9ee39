"""The Streamable HTTP endpoint: the gate, the modern era, and what both eras share.

The fixture server runs in-process under uvicorn on a free loopback port and is driven with
httpx (and raw sockets where the exact bytes matter). Every JSON-RPC message it sends is
validated against the official schema of the era in force (see `conftest.Checker`).
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import orjson
import pytest

from tests.http.conftest import (
    CAPS,
    META,
    MODERN,
    McpHttp,
    error_of,
    raw_http,
    sse_events,
)
from tests.schema_check import validate_def, validate_message

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def modern(serve, http, **options) -> tuple[McpHttp, object]:
    live = await serve(**options)
    return McpHttp(http, live.url, MODERN), live


def call(mcp: McpHttp, name: str, arguments: dict | None = None, **meta) -> dict:
    return mcp.request("tools/call", {"name": name, "arguments": arguments or {}}, **meta)


# -- modern: answers -------------------------------------------------------------------------------


async def test_discover_and_simple_call_answer_json(serve, http):
    mcp, _ = await modern(serve, http)
    discovered = await mcp.post(mcp.request("server/discover"))
    assert discovered.status == 200 and not discovered.is_sse
    result = discovered.body["result"]
    validate_def(result, MODERN, "DiscoverResult")
    assert result["supportedVersions"] == [MODERN]
    assert "mcp-session-id" not in discovered.headers  # modern never mints a session

    listed = await mcp.post(mcp.request("tools/list"))
    assert listed.status == 200
    assert "test_simple_text" in {t["name"] for t in listed.body["result"]["tools"]}

    simple = await mcp.post(call(mcp, "test_simple_text"))
    assert simple.status == 200 and simple.headers["content-type"] == "application/json"
    assert simple.body["result"]["content"] == [
        {"type": "text", "text": "This is a simple text response for testing."}]
    assert simple.body["result"]["resultType"] == "complete"


async def test_progress_streams_sse_scoped_to_the_request(serve, http):
    mcp, _ = await modern(serve, http)
    message = call(mcp, "test_tool_with_progress", progressToken="tok")
    reply = await mcp.post(message)
    assert reply.status == 200 and reply.is_sse
    assert reply.headers["x-accel-buffering"] == "no"
    assert reply.headers["cache-control"].startswith("no-cache")
    methods = [m.get("method", "response") for m in reply.messages]
    assert methods == ["notifications/progress"] * 3 + ["response"]
    assert [m["params"]["progress"] for m in reply.messages[:3]] == [0, 50, 100]
    assert all(m["params"]["progressToken"] == "tok" for m in reply.messages[:3])
    # Modern streams are not resumable: no event ids, no priming event.
    assert all(e.id is None and e.retry is None for e in reply.events)
    assert reply.last["id"] == message["id"] and "result" in reply.last


async def test_logging_only_when_the_request_asks(serve, http):
    mcp, _ = await modern(serve, http)
    quiet = await mcp.post(call(mcp, "test_logging_tool"))
    assert not quiet.is_sse and "result" in quiet.body
    loud = await mcp.post(call(mcp, "test_tool_with_logging",
                               **{"io.modelcontextprotocol/logLevel": "info"}))
    assert loud.is_sse
    logs = [m for m in loud.messages if m.get("method") == "notifications/message"]
    assert [m["params"]["data"] for m in logs] == [
        "Tool execution started", "Tool processing data", "Tool execution completed"]
    assert "result" in loud.last


async def test_notification_is_accepted_and_response_refused(serve, http):
    mcp, _ = await modern(serve, http)
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 1, "_meta": {META: MODERN, CAPS: {}}}}
    accepted = await mcp.post(note)
    assert accepted.status == 202 and accepted.body is None
    response = await mcp.post({"jsonrpc": "2.0", "id": 7, "result": {}},
                              {"mcp-protocol-version": MODERN})
    assert response.status == 400
    assert error_of(response)["code"] == -32600 and response.body["id"] == 7


async def test_session_id_and_last_event_id_are_ignored(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(call(mcp, "test_simple_text"),
                           {"mcp-session-id": "not-a-session", "last-event-id": "3-4"})
    assert reply.status == 200 and "result" in reply.body
    assert "mcp-session-id" not in reply.headers


async def test_get_and_delete_are_405(serve, http):
    _, live = await modern(serve, http)
    for method in ("GET", "DELETE"):
        for headers in ({"mcp-protocol-version": MODERN, "accept": "text/event-stream"}, {}):
            response = await http.request(method, live.url, headers=headers)
            assert response.status_code == 405, (method, headers)
            assert response.headers["allow"] == "POST"
            validate_message(response.json(), MODERN)


# -- modern: errors --------------------------------------------------------------------------------


async def test_meta_without_required_keys_is_400_invalid_params(serve, http):
    mcp, _ = await modern(serve, http)
    for meta in ({}, {CAPS: {}}, {META: MODERN}):
        message = {"jsonrpc": "2.0", "id": 11, "method": "server/discover",
                   "params": {"_meta": meta} if meta else {}}
        reply = await mcp.post(message, {"mcp-protocol-version": MODERN,
                                         "mcp-method": "server/discover"}, routing=False)
        assert reply.status == 400, meta
        assert error_of(reply)["code"] == -32602 and reply.body["id"] == 11


async def test_client_info_is_optional(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(mcp.request("server/discover"))
    assert reply.status == 200  # the helper sends no clientInfo at all


async def test_unsupported_version_is_400_with_supported_list(serve, http):
    mcp, _ = await modern(serve, http)
    message = mcp.request("tools/list")
    message["params"]["_meta"][META] = "2099-01-01"
    reply = await mcp.post(message, {"mcp-protocol-version": "2099-01-01"})
    assert reply.status == 400
    error = error_of(reply)
    assert error["code"] == -32022
    assert error["data"] == {"supported": [MODERN], "requested": "2099-01-01"}
    assert reply.body["id"] == message["id"]


async def test_missing_client_capability_is_400(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(call(mcp, "test_missing_capability"))
    assert reply.status == 400
    error = error_of(reply)
    assert error["code"] == -32021
    assert error["data"]["requiredCapabilities"] == {"sampling": {}}


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel",
                                    "resources/subscribe", "resources/unsubscribe",
                                    "no/such/method"])
async def test_legacy_only_and_unknown_methods_are_404(serve, http, method):
    mcp, _ = await modern(serve, http)
    message = mcp.request(method, {"uri": "test://watched-resource", "level": "info",
                                   "protocolVersion": MODERN, "capabilities": {},
                                   "clientInfo": {"name": "x", "version": "1"}})
    reply = await mcp.post(message)
    assert reply.status == 404
    assert error_of(reply)["code"] == -32601
    assert reply.body["id"] == message["id"]


async def test_unknown_tool_and_missing_resource_are_invalid_params(serve, http):
    mcp, _ = await modern(serve, http)
    unknown = await mcp.post(call(mcp, "no_such_tool"))
    assert unknown.status == 400 and error_of(unknown)["code"] == -32602
    uri = "test://nonexistent-resource-for-conformance-testing"
    missing = await mcp.post(mcp.request("resources/read", {"uri": uri}))
    assert missing.status == 400
    assert error_of(missing)["code"] == -32602 and error_of(missing)["data"]["uri"] == uri


# -- modern: routing headers -----------------------------------------------------------------------


async def expect_header_mismatch(mcp: McpHttp, message: dict, headers: dict[str, str | None],
                                 routing: bool = True) -> None:
    reply = await mcp.post(message, headers, routing=routing)
    assert reply.status == 400, (headers, reply)
    assert error_of(reply)["code"] == -32020, reply.body
    assert reply.body["id"] == message["id"]


async def test_standard_headers_must_be_present_and_match(serve, http):
    mcp, _ = await modern(serve, http)
    listing = mcp.request("tools/list")
    await expect_header_mismatch(mcp, listing, {"mcp-protocol-version": None})
    await expect_header_mismatch(mcp, listing, {"mcp-protocol-version": "2025-11-25"})
    await expect_header_mismatch(mcp, listing, {"mcp-method": None})
    await expect_header_mismatch(mcp, listing, {"mcp-method": "prompts/list"})
    await expect_header_mismatch(mcp, listing, {"mcp-method": "TOOLS/LIST"})  # values: exact
    simple = call(mcp, "test_simple_text")
    await expect_header_mismatch(mcp, simple, {"mcp-name": None})
    await expect_header_mismatch(mcp, simple, {"mcp-name": "wrong_tool_name"})
    prompt = mcp.request("prompts/get", {"name": "test_simple_prompt"})
    await expect_header_mismatch(mcp, prompt, {"mcp-name": "test_prompt_with_image"})
    read = mcp.request("resources/read", {"uri": "test://static-text"})
    await expect_header_mismatch(mcp, read, {"mcp-name": None})
    await expect_header_mismatch(mcp, read, {"mcp-name": "test://static-binary"})


def raw_post(body: bytes, headers: str) -> bytes:
    """A POST whose header block is written verbatim (httpx refuses padded values)."""
    return (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nConnection: close\r\n"
            + headers.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def raw_answer(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def test_header_names_fold_case_and_values_trim_whitespace(serve, http):
    mcp, live = await modern(serve, http)
    body = orjson.dumps(call(mcp, "test_header_tool", {"region": "us-west1"}))
    headers = (f"MCP-PROTOCOL-VERSION:  {MODERN}\t\r\nmcp-method: \t tools/call \r\n"
               "Mcp-NAME:   test_header_tool   \r\nMCP-PARAM-REGION:  us-west1  \r\n")
    status, reply = raw_answer(await raw_http(live.port, raw_post(body, headers)))
    assert status == 200, reply
    validate_message(reply, MODERN)
    assert reply["result"]["content"][0]["text"].startswith("region=us-west1")


async def test_base64_name_header(serve, http):
    mcp, _ = await modern(serve, http)
    encoded = "=?base64?" + base64.b64encode(b"test_simple_text").decode() + "?="
    ok = await mcp.post(call(mcp, "test_simple_text"), {"mcp-name": encoded})
    assert ok.status == 200 and "result" in ok.body
    await expect_header_mismatch(mcp, call(mcp, "test_simple_text"),
                                 {"mcp-name": "=?base64?not*base64?="})


async def test_duplicated_routing_header_is_rejected(serve, http):
    mcp, live = await modern(serve, http)
    body = orjson.dumps(mcp.request("tools/list"))
    headers = ("MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n"
               "Mcp-Method: prompts/list\r\n")
    status, error = raw_answer(await raw_http(live.port, raw_post(body, headers)))
    assert status == 400
    validate_message(error, MODERN)
    assert error["error"]["code"] == -32020


async def test_param_headers_follow_x_mcp_header(serve, http):
    mcp, _ = await modern(serve, http)
    # test_header_tool mirrors its "region" argument into Mcp-Param-Region.
    args = {"region": "us-west1", "query": "q"}
    ok = await mcp.post(call(mcp, "test_header_tool", args), {"mcp-param-region": "us-west1"})
    assert ok.status == 200 and "region=us-west1" in ok.body["result"]["content"][0]["text"]
    unicode = {"region": "Hello, 世界"}
    encoded = "=?base64?SGVsbG8sIOS4lueVjA==?="
    assert (await mcp.post(call(mcp, "test_header_tool", unicode),
                           {"mcp-param-region": encoded})).status == 200
    # The header name in any case: still the same header.
    assert (await mcp.post(call(mcp, "test_header_tool", args),
                           {"MCP-PARAM-REGION": "us-west1"})).status == 200
    # A null argument needs no header; an unannotated one never has one.
    assert (await mcp.post(call(mcp, "test_header_tool", {"region": None}))).body is not None

    await expect_header_mismatch(mcp, call(mcp, "test_header_tool", args), {})
    await expect_header_mismatch(mcp, call(mcp, "test_header_tool", args),
                                 {"mcp-param-region": "eu-west1"})
    await expect_header_mismatch(mcp, call(mcp, "test_header_tool", unicode),
                                 {"mcp-param-region": "Hello, ??"})
    await expect_header_mismatch(mcp, call(mcp, "test_header_tool", args),
                                 {"mcp-param-region": "=?base64?dXMtd2VzdDE?="})  # bad padding
    await expect_header_mismatch(mcp, call(mcp, "test_header_tool", {"query": "q"}),
                                 {"mcp-param-region": "us-west1"})  # header without argument


async def test_unknown_param_headers_are_ignored(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(call(mcp, "test_simple_text"), {"mcp-param-unknown": "x"})
    assert reply.status == 200 and "result" in reply.body


# -- modern: streams, keep-alive, cancellation -----------------------------------------------------


async def test_listen_stream_acknowledges_then_delivers_and_keeps_alive(serve, http):
    mcp, live = await modern(serve, http, keepalive_interval=0.1)
    listen = mcp.request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    mcp.checker.sent(listen)
    async with http.stream("POST", mcp.url, content=orjson.dumps(listen),
                           headers=mcp.headers(listen)) as response:
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        events = sse_events(response)
        first = await anext(events)
        ack = first.message
        mcp.checker.check(ack)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {"toolsListChanged": True}
        assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == listen["id"]
        comments = 0
        while comments < 2:  # silence is filled with ":" comments
            comments += (await anext(events)).comment
        assert (await mcp.post(call(mcp, "test_trigger_tool_change"))).status == 200
        while (event := await anext(events)).comment:
            pass
        changed = event.message
        mcp.checker.check(changed)
        assert changed["method"] == "notifications/tools/list_changed"
        assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == (
            listen["id"])
        assert len(live.server.subscribers.listeners) == 1
    # Closing the stream ends the subscription on the server.
    for _ in range(100):
        if not live.server.subscribers.listeners:
            break
        await asyncio.sleep(0.02)
    assert not live.server.subscribers.listeners


async def test_listen_needs_an_sse_client(serve, http):
    mcp, _ = await modern(serve, http)
    listen = mcp.request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    reply = await mcp.post(listen, {"accept": "application/json"})
    assert reply.status == 406


async def test_a_silent_handler_gets_keepalive_then_its_reply(serve, http):
    mcp, _ = await modern(serve, http, keepalive_interval=0.1)
    reply = await mcp.post(call(mcp, "test_silent"))
    assert reply.is_sse
    assert any(e.comment for e in reply.events)
    assert reply.last["result"]["content"][0]["text"] == "silent done"


async def test_json_only_client_gets_json_without_notifications(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(call(mcp, "test_tool_with_progress", progressToken=1),
                           {"accept": "application/json"})
    assert not reply.is_sse and "result" in reply.body


async def test_sse_only_client_gets_a_stream(serve, http):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(call(mcp, "test_simple_text"), {"accept": "text/event-stream"})
    assert reply.is_sse and "result" in reply.last


async def test_disconnect_cancels_the_request(serve, http):
    mcp, live = await modern(serve, http)
    message = call(mcp, "test_wait_forever")
    body = orjson.dumps(message)
    head = "".join(f"{k}: {v}\r\n" for k, v in mcp.headers(message).items())
    request = (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(request)
    await writer.drain()
    await asyncio.wait_for(live.gates.started.wait(), 5)
    writer.close()
    await asyncio.wait_for(live.gates.cancelled.wait(), 5)
    assert await reader.read() == b""  # nothing was sent, and nothing more will be
    for _ in range(50):
        if not live.endpoint._tasks:
            break
        await asyncio.sleep(0.02)
    assert not live.endpoint._tasks


async def test_concurrent_streams(serve, http):
    mcp, _ = await modern(serve, http)
    replies = await asyncio.gather(*(
        mcp.post(call(mcp, "test_tool_with_progress", progressToken=f"t{i}")) for i in range(8)
    ))
    for i, reply in enumerate(replies):
        tokens = {m["params"]["progressToken"] for m in reply.messages if "method" in m}
        assert tokens == {f"t{i}"}  # each message on its own request's stream only


# -- both eras: the gate ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"host": "evil.example.com"},
    {"host": "evil.example.com:80"},
    {"origin": "http://evil.example.com"},
    {"origin": "null"},
    {"origin": "http://localhost.evil.example.com"},
])
async def test_dns_rebinding_is_refused(serve, http, headers):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(mcp.request("server/discover"), headers)
    assert reply.status == 403
    assert "id" not in reply.body and reply.body["error"]["code"] == -32600


@pytest.mark.parametrize("headers", [
    {"host": "localhost:9999", "origin": "http://localhost:3000"},
    {"host": "[::1]:1234", "origin": "http://[::1]:5173"},
    {"origin": "https://127.0.0.1"},
])
async def test_loopback_hosts_and_origins_are_allowed(serve, http, headers):
    mcp, _ = await modern(serve, http)
    assert (await mcp.post(mcp.request("server/discover"), headers)).status == 200


async def test_configured_allow_lists(serve, http):
    mcp, _ = await modern(serve, http, allowed_hosts=["mcp.example.com", "10.0.0.5:8443"],
                          allowed_origins=["https://app.example.com"])
    discover = mcp.request("server/discover")
    assert (await mcp.post(discover, {"host": "mcp.example.com:443"})).status == 200
    assert (await mcp.post(discover, {"host": "10.0.0.5:8443"})).status == 200
    assert (await mcp.post(discover, {"host": "10.0.0.5:9000"})).status == 403
    assert (await mcp.post(discover, {"host": "127.0.0.1"})).status == 403
    assert (await mcp.post(discover, {"host": "mcp.example.com",
                                      "origin": "https://app.example.com"})).status == 200
    assert (await mcp.post(discover, {"host": "mcp.example.com",
                                      "origin": "https://mcp.example.com"})).status == 200
    assert (await mcp.post(discover, {"host": "mcp.example.com",
                                      "origin": "https://other.example.com"})).status == 403


async def test_body_limit(serve, http):
    mcp, live = await modern(serve, http, max_body_size=2048)
    big = mcp.request("tools/call", {"name": "test_simple_text",
                                     "arguments": {"pad": "x" * 3000}})
    declared = await mcp.post(big)
    assert declared.status == 413
    validate_message(declared.body, MODERN)
    assert declared.body["error"]["data"]["limit"] == 2048

    # Far over the limit: answered from the headers alone, and the connection is dropped.
    request = (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 104857600\r\n\r\n")
    answer = await raw_http(live.port, request)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()

    async def chunks():
        for _ in range(64):
            yield b" " * 1024  # no Content-Length: read in pieces, stopped early

    response = await http.post(live.url, content=chunks(), headers=mcp.headers(big))
    assert response.status_code == 413
    fits = await mcp.post(call(mcp, "test_simple_text"))
    assert fits.status == 200


async def test_default_body_limit_is_4_mib(serve, http):
    mcp, live = await modern(serve, http)
    assert live.endpoint.max_body_size == 4 * 1024 * 1024
    huge = orjson.dumps(call(mcp, "test_simple_text", {"pad": "x" * (4 * 1024 * 1024)}))
    response = await http.post(live.url, content=huge,
                               headers=mcp.headers(call(mcp, "test_simple_text")))
    assert response.status_code == 413


@pytest.mark.parametrize(("body", "code", "request_id"), [
    (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700, None),
    (b"\xff\xfe", -32700, None),
    (b'{"jsonrpc": "1.0", "id": 5, "method": "tools/list"}', -32600, 5),
    (b'{"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": [1]}', -32600, 6),
    (b'{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', -32600, None),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', -32600, None),
    (b"42", -32600, None),
])
async def test_malformed_bodies_are_400(serve, http, body, code, request_id):
    mcp, _ = await modern(serve, http)
    reply = await mcp.post(body, {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"})
    assert reply.status == 400
    validate_message(reply.body, MODERN)
    assert reply.body["error"]["code"] == code
    assert reply.body.get("id") == request_id
    if request_id is None:
        assert "id" not in reply.body  # the schema types id as string|integer: left out


async def test_media_types(serve, http):
    mcp, live = await modern(serve, http)
    message = mcp.request("server/discover")
    assert (await mcp.post(message, {"content-type": "text/plain"})).status == 415
    assert (await mcp.post(message, {"accept": "text/html"})).status == 406
    charset = await mcp.post(message, {"content-type": "application/json; charset=utf-8",
                                       "accept": "*/*"})
    assert charset.status == 200
    wrong_path = await http.post(live.url.replace("/mcp", "/other"), content=b"{}")
    assert wrong_path.status_code == 404
    put = await http.put(live.url, content=b"{}")
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST, DELETE"
