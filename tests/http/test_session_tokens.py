"""Sealed legacy session ids (`SealedSessionIds`): any replica holding the keys resumes a
session it has never seen; keys rotate; tokens that are altered, foreign, expired or named by
another principal are 404; the official SDK client works with the long ids.

Replicas are separate `McpHttpEndpoint`s (each with its own fixture server) on real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from mcp import Client

from bastion.protocol.errors import InvalidParams, InvalidRequest
from bastion.protocol.lifecycle import LegacyServerLifecycle, LifecycleState
from bastion.protocol.principal import ANONYMOUS, Principal
from bastion.protocol.sealed import StateSealer, binding_for
from bastion.transport.http.legacy_sessions import LegacySession
from bastion.transport.http.session_ids import (
    MAX_SESSION_ID_LENGTH,
    RandomSessionIds,
    SealedSessionIds,
    SessionIdError,
    SessionIdTooLong,
)
from tests.http.conftest import LEGACY, MODERN, McpHttp, error_of, sse_events

pytestmark = pytest.mark.timeout(30)

OLD, NEW = b"o" * 32, b"n" * 32
CAPS = {"sampling": {}, "roots": {"listChanged": True}}


class HeaderAuthenticator:
    """Takes the principal from `x-test-principal` (empty or absent: anonymous)."""

    async def authenticate(self, headers, query_string):
        name = headers.get("x-test-principal")
        return Principal(subject=name, issuer="test", method="jwt") if name else ANONYMOUS

    def check_access(self, principal, method, params):
        return None


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def replica(serve, keys: dict[str, bytes], current: str, *, ttl: float = 3600,
                  extra: dict | None = None, opened: list | None = None, **options):
    """A replica whose app sets `extra` on each session it opens (as a gateway would) and
    records the sessions in `opened`."""
    live = await serve(session_ids=SealedSessionIds(keys, current, ttl=ttl),
                       authenticator=HeaderAuthenticator(), **options)
    announce = live.server.connection_opened

    def connection_opened(connection):
        announce(connection)
        if opened is not None:
            opened.append(connection)
        if extra is not None and not connection.extra:
            connection.extra = dict(extra)

    live.server.connection_opened = connection_opened
    return live


def call(mcp: McpHttp, name: str, arguments: dict | None = None) -> dict:
    return mcp.request("tools/call", {"name": name, "arguments": arguments or {}})


async def simple_text(mcp: McpHttp, url: str, extra: dict[str, str] | None = None):
    mcp.url = url
    return await mcp.post(call(mcp, "test_simple_text"), extra)


def legacy_session(principal: str | None = "alice", version: str = LEGACY) -> LegacySession:
    session = LegacySession("", LegacyServerLifecycle(), max_events=8, max_finished_streams=2)
    session.lifecycle.initialize({"protocolVersion": version, "capabilities": CAPS,
                                  "clientInfo": {"name": "t", "version": "1"}})
    session.principal = principal
    return session


# -- the strategy on its own -------------------------------------------------------------------


def test_issue_and_restore_carry_the_session():
    ids = SealedSessionIds({"k1": NEW}, "k1", ttl=60)
    session = legacy_session(version="2025-06-18")
    session.extra = {"upstreams": {"siem": "abc-123"}}
    token = ids.issue(session)
    assert re.fullmatch(r"k1\.[A-Za-z0-9_-]+", token) and len(token) < 1024
    assert session.expires_at is not None
    snapshot = ids.restore(token, "alice")
    assert snapshot is not None
    assert snapshot.protocol_version == "2025-06-18"
    assert snapshot.client_capabilities == CAPS
    assert snapshot.client_info == {"name": "t", "version": "1"}
    assert snapshot.extra == {"upstreams": {"siem": "abc-123"}}
    assert snapshot.key_id == "k1" and snapshot.issued_at < snapshot.expires_at
    assert abs(snapshot.expires_at - session.expires_at) < 1e-6
    assert "alice" not in token and ids.issue(session) != token  # fresh nonce each time
    assert ids.restore(token, "bob") is None
    assert ids.restore(token, None) is None
    assert ids.binding_matches(session, "alice") and not ids.binding_matches(session, "bob")


def test_anonymous_binding():
    ids = SealedSessionIds({"k1": NEW}, "k1")
    token = ids.issue(legacy_session(principal=None))
    assert ids.restore(token, None) is not None
    assert ids.restore(token, "alice") is None
    assert RandomSessionIds().binding_matches(legacy_session(None), None)
    assert not RandomSessionIds().binding_matches(legacy_session(None), "")


def test_issue_refuses_what_cannot_be_sealed():
    ids = SealedSessionIds({"k1": NEW}, "k1")
    session = legacy_session()
    session.extra = {"blob": "x" * MAX_SESSION_ID_LENGTH}
    with pytest.raises(SessionIdTooLong) as too_long:
        ids.issue(session)
    assert too_long.value.limit == MAX_SESSION_ID_LENGTH
    assert too_long.value.length > MAX_SESSION_ID_LENGTH
    assert too_long.value.extra_size > MAX_SESSION_ID_LENGTH
    assert "session.extra" in str(too_long.value)
    session.extra = {"socket": object()}
    with pytest.raises(SessionIdError, match="JSON"):
        ids.issue(session)
    session.extra = {1: "non-string key"}
    with pytest.raises(SessionIdError):
        ids.issue(session)
    session.extra = ["not", "a", "dict"]  # type: ignore[assignment]
    with pytest.raises(SessionIdError, match="dict"):
        ids.issue(session)
    fresh = LegacySession("", LegacyServerLifecycle(), max_events=8, max_finished_streams=2)
    with pytest.raises(SessionIdError, match="initialize"):
        ids.issue(fresh)


@pytest.mark.parametrize(("keys", "current", "ttl", "message"), [
    ({}, "k1", 60, "at least one key"),
    ({"k1": b"short"}, "k1", 60, "32 raw bytes"),
    ({"k1": "n" * 32}, "k1", 60, "32 raw bytes"),
    ({"bad id!": NEW}, "bad id!", 60, "key id"),
    ({"k.1": NEW}, "k.1", 60, "key id"),
    ({"k1": NEW}, "k2", 60, "current key id"),
    ({"k1": NEW}, "k1", 0, "ttl"),
    ({"k1": NEW}, "k1", float("nan"), "ttl"),
])
def test_bad_configuration_is_refused(keys, current, ttl, message):
    with pytest.raises(ValueError, match=message):
        SealedSessionIds(keys, current, ttl=ttl)


def test_restore_refuses_anything_not_issued_here():
    ids = SealedSessionIds({"k1": NEW}, "k1")
    token = ids.issue(legacy_session())
    head, body = token.split(".")
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    same_key = StateSealer(NEW).seal({"v": LEGACY}, binding_for("tools/call", {}, "alice"))
    for bad in ["", "k1.", "garbage", f"{head}.{flipped}", token[:-5], token + "A",
                token + "=", f"k2.{body}", f"k1.{same_key}", same_key, "k1." + "A" * 5000,
                token.replace(".", ":"), f"k1.{body}\n"]:
        assert ids.restore(bad, "alice") is None, bad


def test_lifecycle_resume():
    lifecycle = LegacyServerLifecycle(("2025-06-18", LEGACY))
    lifecycle.resume("2025-06-18", CAPS, {"name": "t"})
    assert lifecycle.state is LifecycleState.OPERATING and lifecycle.may_send_requests
    assert lifecycle.protocol_version == "2025-06-18"
    assert lifecycle.client_capabilities == CAPS and lifecycle.client_info == {"name": "t"}
    lifecycle.check_request("tools/call")
    with pytest.raises(InvalidRequest, match="already initialized"):
        lifecycle.check_request("initialize")
    with pytest.raises(InvalidRequest, match="cannot resume"):
        lifecycle.resume(LEGACY, {})
    with pytest.raises(InvalidParams, match="not served here"):
        LegacyServerLifecycle((LEGACY,)).resume("2024-11-05", {})
    with pytest.raises(InvalidParams, match="object"):
        LegacyServerLifecycle().resume(LEGACY, None)  # type: ignore[arg-type]


# -- replicas over HTTP ----------------------------------------------------------------------------


async def test_a_session_continues_on_another_replica(serve, http):
    extra = {"upstreams": {"siem": "up-1"}}
    opened_b: list[LegacySession] = []
    a = await replica(serve, {"k1": NEW}, "k1", extra=extra)
    b = await replica(serve, {"k1": NEW}, "k1", opened=opened_b)
    mcp = McpHttp(http, a.url, "2025-06-18")
    principal = {"x-test-principal": "alice"}
    init = await mcp.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                           "params": {"protocolVersion": "2025-06-18", "capabilities": CAPS,
                                      "clientInfo": {"name": "t", "version": "1"}}}, principal)
    assert init.status == 200 and init.body["result"]["protocolVersion"] == "2025-06-18"
    mcp.session_id = init.headers["mcp-session-id"]
    assert mcp.session_id.startswith("k1.")

    reply = await simple_text(mcp, b.url, principal)  # no initialize on B
    assert reply.status == 200, reply
    assert reply.body["result"]["content"][0]["text"].startswith("This is a simple text")
    held = b.endpoint.sessions.get(mcp.session_id)
    assert held is opened_b[0] and held.restored
    assert held.lifecycle.protocol_version == "2025-06-18"
    assert held.lifecycle.client_capabilities == CAPS
    assert held.lifecycle.client_info == {"name": "t", "version": "1"}
    alice_binding = Principal(subject="alice", issuer="test", method="jwt").binding
    assert held.extra == extra and held.principal == alice_binding
    # Once resumed it is an ordinary session of B: notifications and more requests work.
    notified = await mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                              principal)
    assert notified.status == 202
    assert (await mcp.post(mcp.request("tools/list"), principal)).status == 200
    assert len(b.endpoint.sessions) == 1
    assert mcp.checker.checked >= 3  # every message was valid 2025-06-18


@pytest.mark.parametrize("last", ["3-7", "0-50", "garbage"])
async def test_a_resumed_session_has_no_stream_history(serve, http, last):
    a = await replica(serve, {"k1": NEW}, "k1")
    b = await replica(serve, {"k1": NEW}, "k1")
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    mcp.url = b.url
    headers = {**mcp.headers(None), "accept": "text/event-stream", "last-event-id": last}
    if last == "garbage":  # not an event id at all: still 400, as for any session
        assert (await http.get(b.url, headers=headers)).status_code == 400
        return
    # An event id from replica A: B has no such history and follows its stream 0 afresh.
    async with http.stream("GET", b.url, headers=headers) as response:
        assert response.status_code == 200
        events = sse_events(response)
        priming = await anext(events)
        assert priming.data == "" and priming.id.startswith("0-")
        assert (await mcp.post(call(mcp, "test_trigger_tool_change"))).status == 200
        change = await asyncio.wait_for(anext(events), 5)
        assert change.message["method"] == "notifications/tools/list_changed"
    # B numbers this session's streams from a random point, not reusing A's small numbers.
    progress = await mcp.post(mcp.request(
        "tools/call", {"name": "test_tool_with_progress", "arguments": {}}, progressToken=5))
    assert progress.is_sse and int(progress.events[0].id.partition("-")[0]) > 1000


async def test_key_rotation(serve, http):
    a = await replica(serve, {"old": OLD}, "old")
    b = await replica(serve, {"old": OLD, "new": NEW}, "new")
    c = await replica(serve, {"new": NEW}, "new")
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    assert mcp.session_id.startswith("old.")
    assert (await simple_text(mcp, b.url)).status == 200  # issued under old: still good
    unknown = await simple_text(mcp, c.url)  # C no longer knows "old"
    assert unknown.status == 404 and error_of(unknown)["code"] == -32600
    renamed = McpHttp(http, c.url, LEGACY)
    renamed.session_id = "new." + mcp.session_id.partition(".")[2]  # other key, same bytes
    assert (await simple_text(renamed, c.url)).status == 404

    fresh = McpHttp(http, b.url, LEGACY)
    await fresh.initialize()
    assert fresh.session_id.startswith("new.")  # B issues under its current key
    assert (await simple_text(fresh, c.url)).status == 200
    assert (await simple_text(fresh, a.url)).status == 404  # A never had "new"


async def mrtr_request_state(http: httpx.AsyncClient, url: str) -> str:
    modern = McpHttp(http, url, MODERN)
    reply = await modern.post(modern.request(
        "tools/call", {"name": "test_input_required_result_request_state", "arguments": {}},
        capabilities={"elicitation": {}}))
    state = reply.last["result"]["requestState"]
    assert isinstance(state, str) and state
    return state


async def test_bad_tokens_are_404_and_harmless(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1")
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    good = mcp.session_id
    head, body = good.split(".")
    flipped = body[:30] + ("A" if body[30] != "A" else "B") + body[31:]
    request_state = await mrtr_request_state(http, a.url)
    forged = StateSealer(NEW).seal({"v": LEGACY}, binding_for("tools/call", {}, None))
    bad_ids = [f"{head}.{flipped}", good[:-4], good[: len(good) // 2], "garbage", "",
               request_state, f"k1.{request_state}", f"k1.{forged}",
               "k1." + "A" * 6000]
    for bad in bad_ids:
        probe = McpHttp(http, a.url, LEGACY)
        probe.session_id = bad
        reply = await probe.post(call(probe, "test_simple_text"))
        assert reply.status == 404, (bad[:40], reply)
        assert error_of(reply)["message"].startswith("unknown or ended session")
        deleted = await http.delete(a.url, headers={"mcp-session-id": bad})
        assert deleted.status_code == 404
    assert len(a.endpoint.sessions) == 1
    assert (await simple_text(mcp, a.url)).status == 200  # the server is fine


async def test_expired_tokens_are_404_everywhere(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1", ttl=1.0)
    b = await replica(serve, {"k1": NEW}, "k1", ttl=1.0)
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    assert (await simple_text(mcp, a.url)).status == 200
    await asyncio.sleep(1.1)
    assert (await simple_text(mcp, a.url)).status == 404  # held in memory: ended on expiry
    assert len(a.endpoint.sessions) == 0
    assert (await simple_text(mcp, b.url)).status == 404  # never held: refused on restore


async def test_delete_ends_the_session_on_this_replica_only(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1")
    b = await replica(serve, {"k1": NEW}, "k1")
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    deleted = await http.delete(a.url, headers=mcp.headers(None))
    assert deleted.status_code == 204
    assert (await simple_text(mcp, a.url)).status == 404  # A does not resume it again
    # Documented limitation: no shared revocation list, so B resumes it until it expires.
    assert (await simple_text(mcp, b.url)).status == 200


async def test_principal_binding(serve, http, caplog):
    a = await replica(serve, {"k1": NEW}, "k1")
    b = await replica(serve, {"k1": NEW}, "k1")
    alice, bob = {"x-test-principal": "alice"}, {"x-test-principal": "bob"}
    mcp = McpHttp(http, a.url, LEGACY)
    init = await mcp.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                           "params": {"protocolVersion": LEGACY, "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}}}, alice)
    mcp.session_id = init.headers["mcp-session-id"]
    with caplog.at_level(logging.WARNING, logger="bastion.transport.http"):
        for url in (a.url, b.url):
            for who in (bob, None, {"x-test-principal": ""}):
                refused = await simple_text(mcp, url, who)
                assert refused.status == 404, (url, who)
                assert error_of(refused)["message"].startswith("unknown or ended session")
            assert (await http.delete(url, headers={**mcp.headers(None), **bob})
                    ).status_code == 404
        assert len(b.endpoint.sessions) == 0  # bob did not make B resume it
        assert (await simple_text(mcp, b.url, alice)).status == 200
        assert (await simple_text(mcp, b.url, bob)).status == 404  # held now: still refused
        assert (await simple_text(mcp, a.url, alice)).status == 200
    refusals = [r for r in caplog.records if "principal" in r.getMessage()]
    assert len(refusals) >= 5 and all(r.levelno == logging.WARNING for r in refusals)
    assert mcp.session_id[:8] in refusals[0].getMessage()
    assert mcp.session_id not in caplog.text and mcp.session_id[8:40] not in caplog.text

    anonymous = McpHttp(http, a.url, LEGACY)
    await anonymous.initialize()
    assert (await simple_text(anonymous, a.url)).status == 200
    assert (await simple_text(anonymous, b.url, alice)).status == 404


async def test_an_id_too_large_to_issue_fails_initialize_cleanly(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1", extra={"blob": "x" * 5000})
    mcp = McpHttp(http, a.url, LEGACY)
    reply = await mcp.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                            "params": {"protocolVersion": LEGACY, "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "1"}}})
    assert reply.status == 200 and error_of(reply)["code"] == -32603
    assert "mcp-session-id" not in reply.headers
    assert len(a.endpoint.sessions) == 0


async def test_a_full_replica_answers_503_instead_of_resuming(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1")
    b = await replica(serve, {"k1": NEW}, "k1", max_sessions=1)
    local = McpHttp(http, b.url, LEGACY)
    await local.initialize()
    mcp = McpHttp(http, a.url, LEGACY)
    await mcp.initialize()
    full = await simple_text(mcp, b.url)
    assert full.status == 503 and error_of(full)["code"] == -32603
    await http.delete(b.url, headers=local.headers(None))
    assert (await simple_text(mcp, b.url)).status == 200  # room again: resumed


async def test_missing_session_header_is_still_400(serve, http):
    a = await replica(serve, {"k1": NEW}, "k1")
    probe = McpHttp(http, a.url, LEGACY)
    reply = await probe.post(call(probe, "test_simple_text"))
    assert reply.status == 400 and "required" in error_of(reply)["message"]


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_official_sdk_client_with_sealed_ids(serve):
    opened: list[LegacySession] = []
    a = await replica(serve, {"k1": NEW}, "k1", opened=opened,
                      extra={"upstreams": {"ticketing": "t" * 200}})
    async with Client(a.url, mode="legacy") as client:
        assert client.protocol_version == LEGACY
        tools = await client.list_tools()
        assert "test_simple_text" in {tool.name for tool in tools.tools}
        result = await client.call_tool("test_simple_text")
        assert result.content[0].text.startswith("This is a simple text")
        assert len(opened) == 1 and len(opened[0].id) > 300 and opened[0].id.startswith("k1.")
    assert opened[0].closed  # the SDK ended the session with DELETE
