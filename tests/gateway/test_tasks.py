"""Tasks through the gateway: both eras, their ids mapped to opaque ids bound to their owner.

An in-process gateway (`gateway_http`) fronts four real stdio upstreams, each era forced:
`leg` and `mod` are `bastion.testing.everything` (legacy 2025-11-25, modern 2026-07-28);
`tl` and `tm` are the task peer of the server tests (`tests/server/peers/tasks_server.py`:
tools that never end, fail, or ask for input; tasks poll every 20 ms), legacy and modern.
Clients are Bastion's `connect_http`; every frame a client reads is checked against the
official schema of its era (and the tasks extension's shapes) by the server tests' checkers.

Tasks pass through within one era only: a legacy client reaches the legacy upstreams' tasks
(core tasks: CreateTaskResult, tasks/get, tasks/result, tasks/list, tasks/cancel,
notifications/tasks/status), a modern client with the tasks extension the modern upstreams'
(`resultType: "task"`, tasks/get with the outcome inlined, tasks/update, tasks/cancel).

A mapped id carries the upstream, the upstream's id and a MAC over both and the owner (a
legacy session, or a modern principal): `upstream_id` opens one for the client that holds
it. `GatewayTasks` (ids, owners, the replica's record) is also tested on its own below.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import bastion.client.http as client_http
from bastion.client import Client, ClientHandlers, connect_http
from bastion.gateway.tasks import GatewayTasks, map_task_error, map_task_result
from bastion.guard.pipeline import Call
from bastion.protocol.errors import INVALID_PARAMS, METHOD_NOT_FOUND, MCPError
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.meta import RELATED_TASK
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.protocol.principal import ANONYMOUS
from bastion.protocol.versions import Era
from bastion.server.tasks import CANCELLED, COMPLETED, FAILED, WORKING
from bastion.session.client_side import ClientConnection
from bastion.session.server_side import ServerRequest
from tests.http.conftest import McpHttp
from tests.schema_check import validate_def
from tests.server.test_tasks import (
    EXT_CREATE_TASK_RESULT,
    RecordingChannel,
    Wire,
    _assert_valid,
    accept_name,
    check_legacy,
    check_modern,
    poll_until,
    wire_of,
)

from .conftest import EVERYTHING, LiveGateway, make_config, stdio_upstream
from .interop_helpers import REPO

pytestmark = pytest.mark.timeout(40)

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
#: Run as a module from the repository, so it imports `bastion` and `tests` as they are here.
TASK_PEER = [sys.executable, "-m", "tests.server.peers.tasks_server"]
#: The era of each mode, and the upstreams a client of that era reaches tasks on.
SAME_ERA = {"legacy": "leg", "modern": "mod"}
OTHER_ERA = {"legacy": "mod", "modern": "leg"}
TASK_TOOL_TEXT = "Task tool completed"  # what everything's test_tool_with_task returns
OPAQUE = re.compile(r"[A-Za-z0-9_-]{16,}")  # base64url, no padding


# -- the gateway, the wire, and small helpers -------------------------------------------------


@pytest.fixture
async def live(gateway_http: Callable[..., Awaitable[LiveGateway]]) -> LiveGateway:
    def peer(protocol: str) -> dict[str, Any]:
        return stdio_upstream(TASK_PEER, protocol=protocol, cwd=str(REPO))

    return await gateway_http(make_config({
        "leg": stdio_upstream(EVERYTHING, protocol="legacy"),
        "mod": stdio_upstream(EVERYTHING, protocol="modern"),
        "tl": peer("legacy"),
        "tm": peer("modern"),
    }))


@pytest.fixture
def wires(monkeypatch: pytest.MonkeyPatch) -> dict[int, Wire]:
    """Record the frames of every `connect_http` client of the test, keyed as `wire_of` keys
    them (each client's channel is wrapped in the server tests' `RecordingChannel`)."""
    by_channel: dict[int, Wire] = {}

    def recording_connection(channel: Any, **options: Any) -> ClientConnection:
        recorded = RecordingChannel(channel, Wire())
        by_channel[id(recorded)] = recorded.wire
        return ClientConnection(recorded, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(client_http, "ClientConnection", recording_connection)
    return by_channel


def client_of(live: LiveGateway, mode: str,
              **handlers: Any) -> contextlib.AbstractAsyncContextManager[Client]:
    """A client of `mode`; a modern one declares the tasks extension."""
    return connect_http(live.url, mode=mode,
                        handlers=ClientHandlers(tasks=mode == "modern", **handlers))


def session_of(live: LiveGateway, client: Client) -> Any:
    """The gateway's side of a legacy client's HTTP session."""
    channel = client.connection.session.channel
    session_id = getattr(channel, "inner", channel).session_id
    for connection in live.gateway.subscribers.connections:
        if getattr(connection, "id", None) == session_id:
            return connection
    raise AssertionError(f"the gateway holds no session {session_id!r}")


def owner_of(live: LiveGateway, client: Client) -> bytes:
    """The owner the gateway binds this client's tasks to (anonymous principal)."""
    if client.protocol_version == MODERN:
        return live.gateway.tasks.owner(Era.MODERN, ANONYMOUS.binding)
    return live.gateway.tasks.owner(Era.LEGACY, ANONYMOUS.binding, session_of(live, client))


def upstream_id(live: LiveGateway, client: Client, task_id: str, upstream: str) -> str:
    """The upstream's own id inside a mapped id, which must be `client`'s task on `upstream`."""
    assert OPAQUE.fullmatch(task_id), task_id
    name, own = live.gateway.tasks.open(task_id, owner_of(live, client))
    assert name == upstream, f"{task_id!r} is a task of {name}, not of {upstream}"
    assert own and own not in task_id, task_id
    return own


def forge(live: LiveGateway, client: Client, upstream: str, own: str) -> str:
    """An id the gateway would issue `client` for `upstream`'s task `own` (for bad input
    the gateway itself never hands out)."""
    return live.gateway.tasks.issue(upstream, own, owner_of(live, client))


async def still_serves(live: LiveGateway, client: Client, mode: str) -> None:
    """The gateway answers ordinary calls and starts new tasks after bad input."""
    result = await client.call_tool(f"{SAME_ERA[mode]}__test_simple_text")
    assert result["content"][0]["type"] == "text"
    if mode == "legacy":
        created = await client.call_tool_task("leg__test_tool_with_task")
        upstream_id(live, client, created["task"]["taskId"], "leg")
    else:
        created = await client.request("tools/call", {"name": "mod__test_tool_with_task"})
        assert created["resultType"] == "task"


async def rejected(client: Client, method: str, task_id: Any) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.request(method, {"taskId": task_id})
    return caught.value


def check_wire(wire: Wire, mode: str) -> int:
    return check_legacy(wire) if mode == "legacy" else check_modern(wire)


# -- what the gateway offers ------------------------------------------------------------------


async def test_both_eras_advertise_tasks(live: LiveGateway, wires: dict[int, Wire]) -> None:
    async with client_of(live, "legacy") as client:
        assert client.protocol_version == LEGACY
        assert client.server.capabilities["tasks"] == {
            "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        tools = {t["name"]: t for t in await client.list_tools()}
        assert tools["leg__test_tool_with_task"]["execution"] == {"taskSupport": "optional"}
        # A modern upstream's tasks are not a legacy client's: nothing invites augmenting it.
        assert "execution" not in tools["mod__test_tool_with_task"]
        check_legacy(wire_of(wires, client))
    async with client_of(live, "modern") as client:
        assert client.protocol_version == MODERN
        capabilities = client.server.capabilities
        assert capabilities["extensions"] == {TASKS_EXTENSION: {}}
        assert "tasks" not in capabilities
        check_modern(wire_of(wires, client))
    # A version before 2025-11-25 has no tasks (McpHttp checks every frame it reads).
    async with httpx.AsyncClient() as http:
        older = McpHttp(http, live.url, "2025-06-18")
        reply = await older.initialize()
        assert "tasks" not in reply.last["result"]["capabilities"]


# -- legacy: core tasks (2025-11-25) -----------------------------------------------------------


async def test_legacy_task_create_get_and_result(live: LiveGateway,
                                                 wires: dict[int, Wire]) -> None:
    async with client_of(live, "legacy") as client:
        created = (await client.call_tool_task("leg__test_tool_with_task", ttl=60_000))["task"]
        task_id = created["taskId"]
        upstream_id(live, client, task_id, "leg")
        assert created["status"] == WORKING and created["ttl"] == 60_000
        assert (await client.get_task(task_id))["taskId"] == task_id
        done = await poll_until(client, task_id, COMPLETED)
        assert done["createdAt"] == created["createdAt"]
        result = await client.get_task_result(task_id)
        assert result["content"] == [{"type": "text", "text": TASK_TOOL_TEXT}]
        # A failed task's tasks/result is the underlying JSON-RPC error, exactly.
        failing = (await client.call_tool_task("tl__boom"))["task"]["taskId"]
        upstream_id(live, client, failing, "tl")
        with pytest.raises(MCPError) as boom:
            await client.get_task_result(failing)
        assert (boom.value.code, boom.value.message, boom.value.data) == (
            INVALID_PARAMS, "boom", {"why": "boom"})
        assert (await client.get_task(failing))["status"] == FAILED
        # tasks/result's related-task _meta is checked on its own (see below).
        wire = wire_of(wires, client)
        wire.sent = {i: m for i, m in wire.sent.items() if m["method"] != "tasks/result"}
        assert check_legacy(wire) > 5
    validate_def(result, LEGACY, "GetTaskPayloadResult")
    validate_def(result, LEGACY, "CallToolResult")


async def test_legacy_result_names_the_mapped_task(live: LiveGateway,
                                                   wires: dict[int, Wire]) -> None:
    async with client_of(live, "legacy") as client:
        task_id = (await client.call_tool_task("leg__test_tool_with_task"))["task"]["taskId"]
        result = await client.get_task_result(task_id)
        assert result["content"] == [{"type": "text", "text": TASK_TOOL_TEXT}]
        assert result["_meta"][RELATED_TASK] == {"taskId": task_id}
        check_legacy(wire_of(wires, client))


async def test_legacy_cancel_of_a_running_task(live: LiveGateway,
                                               wires: dict[int, Wire]) -> None:
    async with client_of(live, "legacy") as client:
        task_id = (await client.call_tool_task("tl__forever"))["task"]["taskId"]
        own = upstream_id(live, client, task_id, "tl")
        assert (await client.get_task(task_id))["status"] == WORKING
        cancelled = await client.cancel_task(task_id)
        assert cancelled["taskId"] == task_id and cancelled["status"] == CANCELLED
        assert (await client.get_task(task_id))["status"] == CANCELLED
        # A terminal task cannot be cancelled again, and has no result; the upstream's
        # errors name the task by the client's id, never the upstream's.
        for method in ("tasks/cancel", "tasks/result"):
            error = await rejected(client, method, task_id)
            assert error.code == INVALID_PARAMS
            assert error.data["taskId"] == task_id, error.data
            assert own not in error.message and own not in str(error.data)
        check_legacy(wire_of(wires, client))


async def test_legacy_list_shows_mapped_ids(live: LiveGateway, wires: dict[int, Wire]) -> None:
    async with client_of(live, "legacy") as client:
        ids = [(await client.call_tool_task(name))["task"]["taskId"]
               for name in ("leg__test_tool_with_task", "tl__forever")]
        # A modern client's task is not a legacy session's (nor on a legacy upstream).
        async with client_of(live, "modern") as modern:
            await modern.request("tools/call", {"name": "mod__test_tool_with_task"})
        listed = {t["taskId"]: t for t in await client.list_tasks()}
        assert set(listed) == set(ids)
        assert listed[ids[1]]["status"] == WORKING
        assert upstream_id(live, client, ids[0], "leg") and upstream_id(live, client, ids[1], "tl")
        await client.cancel_task(ids[1])
        with pytest.raises(MCPError) as bad_cursor:
            await client.request("tasks/list", {"cursor": "not-a-cursor"})
        assert bad_cursor.value.code == INVALID_PARAMS
        check_legacy(wire_of(wires, client))


async def test_legacy_status_notifications_reach_the_client(live: LiveGateway,
                                                            wires: dict[int, Wire]) -> None:
    statuses: list[dict[str, Any]] = []
    elsewhere: list[dict[str, Any]] = []

    def recorder(into: list[dict[str, Any]]) -> Callable[[Notification], Awaitable[None]]:
        async def on_notification(notification: Notification) -> None:
            if notification.method == "notifications/tasks/status":
                into.append(notification.params or {})
        return on_notification

    async with client_of(live, "legacy", on_notification=recorder(statuses)) as client, \
            client_of(live, "legacy", on_notification=recorder(elsewhere)) as other:
        await other.list_tasks()  # the other session is open and initialized
        task_id = (await client.call_tool_task("tl__forever"))["task"]["taskId"]
        await client.cancel_task(task_id)
        for _ in range(100):
            if statuses:
                break
            await asyncio.sleep(0.02)
        assert statuses, "no notifications/tasks/status reached the client"
        assert {s["taskId"] for s in statuses} == {task_id}
        assert statuses[-1]["status"] == CANCELLED
        assert await other.list_tasks() == []
        assert elsewhere == [], "another session heard of the task"
        wire = wire_of(wires, client)
        assert wire.notifications("notifications/tasks/status")
        check_legacy(wire)  # each validates as a TaskStatusNotification


async def test_legacy_task_input_reaches_the_owner(live: LiveGateway,
                                                   wires: dict[int, Wire]) -> None:
    # The upstream asks for input inside a task, when no call is in flight: the question
    # goes to the session that created the task, tied to the task by the client's id.
    elicit = accept_name("Ada")
    async with client_of(live, "legacy", elicitation=elicit) as client, \
            client_of(live, "legacy", elicitation=accept_name("Eve")) as other:
        await other.list_tasks()
        task_id = (await client.call_tool_task("tl__ask_name"))["task"]["taskId"]
        done = await poll_until(client, task_id, COMPLETED, FAILED)
        assert done["status"] == COMPLETED, done
        result = await client.get_task_result(task_id)
        assert result["content"][0]["text"] == "Hello, Ada!"
        assert elicit.seen[0]["_meta"][RELATED_TASK] == {"taskId": task_id}
        assert elicit.seen[0]["message"] == "Please enter your name."
        check_legacy(wire_of(wires, client))
        assert not wire_of(wires, other).server_requests("elicitation/create")
    # A session that cannot answer gets no question; the task fails with the reason.
    async with client_of(live, "legacy") as mute:
        task_id = (await mute.call_tool_task("tl__ask_name"))["task"]["taskId"]
        assert (await poll_until(mute, task_id, FAILED))["status"] == FAILED


async def test_legacy_tasks_belong_to_their_session(live: LiveGateway) -> None:
    async with client_of(live, "legacy") as owner, client_of(live, "legacy") as other:
        task_id = (await owner.call_tool_task("tl__forever"))["task"]["taskId"]
        # An id the gateway never issued to anyone, of the same shape.
        never = live.gateway.tasks.issue("tl", "never-issued", bytes(32))
        try:
            # tasks/cancel before tasks/result: a result of a running task would block.
            for method in ("tasks/get", "tasks/cancel", "tasks/result"):
                foreign = await rejected(other, method, task_id)
                unknown = await rejected(other, method, never)
                # Exactly like an unknown id: nobody learns that the task exists.
                assert (foreign.code, foreign.message.replace(task_id, "<id>"),
                        foreign.data) == (
                    unknown.code, unknown.message.replace(never, "<id>"),
                    {"taskId": task_id}), method
                assert foreign.code == INVALID_PARAMS
            assert task_id not in {t["taskId"] for t in await other.list_tasks()}
            assert (await owner.get_task(task_id))["status"] == WORKING  # untouched
        finally:
            with contextlib.suppress(MCPError):
                await owner.cancel_task(task_id)


# -- modern: the tasks extension (2026-07-28) --------------------------------------------------


async def test_modern_task_create_poll_and_follow(live: LiveGateway,
                                                  wires: dict[int, Wire]) -> None:
    elicit = accept_name("Luca")
    async with client_of(live, "modern", elicitation=elicit) as client:
        created = await client.request("tools/call", {"name": "mod__test_tool_with_task"})
        _assert_valid(EXT_CREATE_TASK_RESULT, created, "CreateTaskResult (extension)")
        task_id = created["taskId"]
        upstream_id(live, client, task_id, "mod")
        done = await poll_until(client, task_id, COMPLETED)
        assert done["taskId"] == task_id
        assert done["result"]["content"] == [{"type": "text", "text": TASK_TOOL_TEXT}]
        # call_tool follows a task to its end: polling, and answering its input requests
        # with tasks/update, all through the gateway.
        slow = await client.call_tool("tm__slow", {"delay": 0.05, "text": "later"})
        assert slow["content"] == [{"type": "text", "text": "later"}]
        asked = await client.call_tool("tm__ask_name")
        assert asked["content"][0]["text"] == "Hello, Luca!"
        assert elicit.seen, "the task's input request never reached the client"
        wire = wire_of(wires, client)
        assert wire.responses_to("tasks/update")
        for message in wire.sent.values():
            if message["method"] == "tasks/update":
                upstream_id(live, client, message["params"]["taskId"], "tm")
        assert check_modern(wire) > 5


async def test_modern_cancel_of_a_running_task(live: LiveGateway,
                                               wires: dict[int, Wire]) -> None:
    async with client_of(live, "modern") as client:
        created = await client.request("tools/call", {"name": "tm__forever"})
        task_id = created["taskId"]
        upstream_id(live, client, task_id, "tm")
        assert (await client.get_task(task_id))["status"] == WORKING
        ack = await client.cancel_task(task_id)
        assert ack["resultType"] == "complete" and set(ack) <= {"resultType", "_meta"}
        assert (await poll_until(client, task_id, CANCELLED))["taskId"] == task_id
        check_modern(wire_of(wires, client))


async def test_modern_without_the_extension_runs_inline(live: LiveGateway,
                                                        wires: dict[int, Wire]) -> None:
    async with connect_http(live.url, mode="modern") as client:
        result = await client.call_tool("mod__test_tool_with_task")
        assert result["resultType"] == "complete"
        assert result["content"] == [{"type": "text", "text": TASK_TOOL_TEXT}]
        # The extension's methods do not exist for a request that does not declare it.
        assert (await rejected(client, "tasks/get", "mod/anything")).code == METHOD_NOT_FOUND
        wire = wire_of(wires, client)
        assert not [m for m in wire.received if m.get("result", {}).get("resultType") == "task"]
        check_modern(wire)


# -- bad task ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_bad_task_ids_are_invalid_params(live: LiveGateway, wires: dict[int, Wire],
                                               mode: str) -> None:
    async with client_of(live, mode) as client:
        issued = forge(live, client, SAME_ERA[mode], "a-task-id-of-the-upstream")
        for task_id in ("abc123", "nobody/abc", "", "x" * 5000, issued + "=", issued[:-2],
                        "é" + issued):
            error = await rejected(client, "tasks/get", task_id)
            assert error.code == INVALID_PARAMS, error
            assert repr(task_id) in error.message
            assert error.data["taskId"] == task_id
        for not_a_string in (42, None, {"id": "x"}):
            assert (await rejected(client, "tasks/get", not_a_string)).code == INVALID_PARAMS
        # An id at the right upstream that it does not know: the upstream's own error, which
        # names the client's id.
        unknown_id = forge(live, client, SAME_ERA[mode], "no-such-task")
        unknown = await rejected(client, "tasks/get", unknown_id)
        assert unknown.code == INVALID_PARAMS
        assert "not found" in unknown.message.lower()
        assert unknown.data["taskId"] == unknown_id
        # An id of the other era's upstream never reaches it, and says why.
        crossing = await rejected(client, "tasks/get", forge(live, client, OTHER_ERA[mode], "a"))
        assert "era" in crossing.message and repr(OTHER_ERA[mode]) in crossing.message
        await still_serves(live, client, mode)
        check_wire(wire_of(wires, client), mode)


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_bad_task_id_errors_name_their_cause(live: LiveGateway, mode: str) -> None:
    async with client_of(live, mode) as client:
        malformed = await rejected(client, "tasks/get", "abc123")
        assert "not a task id this gateway issued" in malformed.message, malformed.message
        nobody = await rejected(client, "tasks/get", forge(live, client, "nobody", "abc"))
        assert "upstream 'nobody'" in nobody.message, nobody.message
        assert "not configured" in nobody.message, nobody.message
        foreign_id = live.gateway.tasks.issue(SAME_ERA[mode], "abc", bytes(32))
        foreign = await rejected(client, "tasks/get", foreign_id)
        assert "not found" in foreign.message, foreign.message
        assert len({malformed.message, nobody.message, foreign.message}) == 3


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_task_id_of_the_other_era_is_invalid_params(live: LiveGateway,
                                                          mode: str) -> None:
    async with client_of(live, mode) as client:
        for method in ("tasks/get", "tasks/cancel"):
            error = await rejected(client, method, forge(live, client, OTHER_ERA[mode], "abc"))
            assert error.code == INVALID_PARAMS, (method, error.code, error.message)



async def test_list_pages_and_follows_upstream_pages(gateway_http: Callable[
        ..., Awaitable[LiveGateway]]) -> None:
    # One upstream, one task per page: the gateway fetches all of the upstream's pages and
    # serves its own, one item each.
    live = await gateway_http(make_config(
        {"tl": stdio_upstream(TASK_PEER, protocol="legacy", cwd=str(REPO))},
        server={"page_size": 1}))
    async with client_of(live, "legacy") as client:
        ids = [(await client.call_tool_task("tl__forever"))["task"]["taskId"] for _ in range(3)]
        first = await client.request("tasks/list", {})
        assert len(first["tasks"]) == 1 and first["nextCursor"]
        assert {t["taskId"] for t in await client.list_tasks()} == set(ids)
        for task_id in ids:
            await client.cancel_task(task_id)


# -- GatewayTasks on its own ---------------------------------------------------------------------


class Connection:
    """A stand-in for a legacy connection: only what GatewayTasks reads (its session id)."""

    def __init__(self, session_id: str = "") -> None:
        self.id = session_id


def test_ids_open_only_for_their_owner() -> None:
    tasks = GatewayTasks(b"k" * 32)
    alice = tasks.owner(Era.MODERN, "alice")
    task_id = tasks.issue("up", "t/1 é", alice)
    assert OPAQUE.fullmatch(task_id) and len(task_id) < 60
    assert tasks.open(task_id, alice) == ("up", "t/1 é")
    assert tasks.issue("up", "t/1 é", alice) == task_id  # any replica derives the same id
    owners = [tasks.owner(Era.MODERN, "bob"), tasks.owner(Era.MODERN, None),
              tasks.owner(Era.LEGACY, "alice", Connection("s1"))]
    expected = f"task {task_id!r} not found"
    for other in owners:
        with pytest.raises(MCPError) as caught:
            tasks.open(task_id, other)
        assert caught.value.code == INVALID_PARAMS and caught.value.message.startswith(expected)
    # Altered anywhere (the upstream's name or id, or the MAC): not found either.
    for i in range(len(task_id)):
        altered = task_id[:i] + ("A" if task_id[i] != "A" else "B") + task_id[i + 1:]
        with pytest.raises(MCPError):
            tasks.open(altered, alice)


def test_ids_follow_the_key() -> None:
    owner = bytes(32)
    task_id = GatewayTasks(b"k" * 32).issue("up", "t1", owner)
    assert GatewayTasks(b"k" * 32).open(task_id, owner) == ("up", "t1")  # another replica
    for other in (GatewayTasks(b"j" * 32), GatewayTasks()):
        with pytest.raises(MCPError, match="not found"):
            other.open(task_id, owner)
    with pytest.raises(ValueError, match="positive"):
        GatewayTasks(max_tasks=0)


def test_legacy_owners_are_sessions() -> None:
    tasks = GatewayTasks()
    session, resumed = Connection("sid-1"), Connection("sid-1")  # one session, two replicas
    assert tasks.owner(Era.LEGACY, None, session) == tasks.owner(Era.LEGACY, None, resumed)
    assert tasks.owner(Era.LEGACY, None, session) != tasks.owner(Era.LEGACY, None,
                                                                 Connection("sid-2"))
    assert tasks.owner(Era.LEGACY, "p", session) != tasks.owner(Era.LEGACY, None, session)
    # stdio connections have no session id: each is its own owner, stable while it lives.
    one, two = Connection(), Connection()
    assert tasks.owner(Era.LEGACY, None, one) == tasks.owner(Era.LEGACY, None, one)
    assert tasks.owner(Era.LEGACY, None, one) != tasks.owner(Era.LEGACY, None, two)
    assert tasks.owner(Era.LEGACY, None, one) != tasks.owner(Era.MODERN, None)


def test_owner_of_a_call_uses_the_principal_binding() -> None:
    tasks = GatewayTasks()

    def call(era: Era, principal: Any) -> Call:
        request = ServerRequest(era, MODERN if era is Era.MODERN else LEGACY, "tasks/get",
                                {}, {}, None, None, None, None)  # type: ignore[arg-type]
        return Call(request, principal=principal)

    alice = SimpleNamespace(binding="alice")
    assert tasks.owner_of(call(Era.MODERN, alice)) == tasks.owner(Era.MODERN, "alice")
    assert tasks.owner_of(call(Era.MODERN, None)) == tasks.owner(Era.MODERN, None)
    assert tasks.owner_of(call(Era.LEGACY, alice)) == tasks.owner(Era.LEGACY, "alice", None)


def test_unmappable_upstream_ids_are_refused() -> None:
    tasks = GatewayTasks()
    with pytest.raises(ValueError, match="at most 512"):
        tasks.issue("up", "x" * 513, bytes(32))
    with pytest.raises(ValueError, match="Unicode"):
        tasks.issue("up", "\ud800", bytes(32))
    with pytest.raises(ValueError, match="no taskId"):
        tasks.created("up", {"task": {"status": "working"}}, bytes(32))


def test_created_tasks_are_listed_and_routed_to_their_owner() -> None:
    tasks = GatewayTasks()
    session = Connection("sid")
    mine = tasks.owner(Era.LEGACY, None, session)
    theirs = tasks.owner(Era.LEGACY, None, Connection("other"))
    legacy = {"task": {"taskId": "a", "status": "working", "ttl": 60_000}}
    tasks.created("up", legacy, mine)
    modern = {"resultType": "task", "taskId": "b", "status": "working", "ttlMs": None}
    tasks.created("up", modern, theirs)
    assert tasks.open(legacy["task"]["taskId"], mine) == ("up", "a")
    assert tasks.open(modern["taskId"], theirs) == ("up", "b")
    upstream_list = [{"taskId": "a", "status": "working"}, {"taskId": "b"}, {"taskId": "c"},
                     "junk", {"taskId": 7}]
    assert tasks.listed("up", upstream_list, mine) == [
        {"taskId": legacy["task"]["taskId"], "status": "working"}]
    assert tasks.listed("other-upstream", upstream_list, mine) == []
    assert tasks.route("up", "a") == (legacy["task"]["taskId"], [session])
    assert tasks.route("up", "c") is None and tasks.route("up", 7) is None
    tasks.connection_closed(session)
    assert tasks.route("up", "a") == (legacy["task"]["taskId"], [])


def test_the_record_is_bounded_by_count_and_ttl() -> None:
    tasks = GatewayTasks(max_tasks=2)
    owner = bytes(32)
    for name in ("a", "b"):
        tasks.created("up", {"task": {"taskId": name}}, owner)
    assert tasks.route("up", "a") is not None  # used: "b" is now the least recently used
    tasks.created("up", {"task": {"taskId": "c"}}, owner)
    assert [t["taskId"] for t in tasks.listed(
        "up", [{"taskId": n} for n in "abc"], owner)] == [
        tasks.issue("up", n, owner) for n in "ac"]
    tasks.created("up", {"task": {"taskId": "gone", "ttl": 0}}, owner)
    assert tasks.route("up", "gone") is None


def test_results_and_errors_name_the_clients_id() -> None:
    result = {"taskId": "raw", "task": {"taskId": "raw"}, "content": [],
              "_meta": {RELATED_TASK: {"taskId": "raw"}, "other": 1}}
    assert map_task_result(result, "raw", "mapped") == {
        "taskId": "mapped", "task": {"taskId": "mapped"}, "content": [],
        "_meta": {RELATED_TASK: {"taskId": "mapped"}, "other": 1}}
    untouched = {"taskId": "else", "_meta": {RELATED_TASK: {"taskId": "else"}}}
    assert map_task_result(dict(untouched), "raw", "mapped") == untouched
    error = MCPError("task raw-task-id was cancelled", code=INVALID_PARAMS,
                     data={"taskId": "raw-task-id", "status": "cancelled"})
    map_task_error(error, "raw-task-id", "mapped")
    assert (error.message, str(error), error.data) == (
        "task mapped was cancelled", "task mapped was cancelled",
        {"taskId": "mapped", "status": "cancelled"})
    short = MCPError("task 1 of 1", data={"taskId": "1"})
    map_task_error(short, "1", "mapped")  # a short id is not replaced inside words
    assert (short.message, short.data) == ("task 1 of 1", {"taskId": "mapped"})
