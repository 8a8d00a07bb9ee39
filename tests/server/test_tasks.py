"""Tasks in both eras: Bastion's client against a Bastion server in a real child process.

Legacy 2025-11-25 (core tasks) and modern 2026-07-28 (extension `io.modelcontextprotocol/tasks`)
are driven over stdio pipes (`tests/server/peers/tasks_server.py`); per-session isolation uses
one in-process server with two connections over socket pairs; the store has unit tests.
Every frame the server sends is checked against the official schema of its version, and the
extension's shapes (not in the core schema) against a schema transcribed from its spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bastion.client import Client, ClientHandlers, connect_stdio
from bastion.protocol.errors import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    InvalidParams,
    MCPError,
)
from bastion.protocol.meta import RELATED_TASK, request_meta
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.server import Context, Server
from bastion.server.tasks import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INPUT_REQUIRED,
    WORKING,
    TaskStore,
)
from bastion.session.client_side import ClientConnection
from bastion.session.server_side import serve_channel
from bastion.transport.framing import LineChannel
from tests.schema_check import validate_def, validate_message

PEER = [sys.executable, str(Path(__file__).parent / "peers" / "tasks_server.py")]
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}},
               "required": ["name"]}

# -- the extension's wire shapes (SEP-2663, modelcontextprotocol/experimental-ext-tasks) ------

_EXT_TASK: dict[str, Any] = {
    "type": "object",
    "required": ["taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs"],
    "properties": {
        "taskId": {"type": "string", "minLength": 1},
        "status": {"enum": ["working", "input_required", "completed", "failed", "cancelled"]},
        "statusMessage": {"type": "string"},
        "createdAt": {"type": "string", "pattern": ISO_UTC.pattern},
        "lastUpdatedAt": {"type": "string", "pattern": ISO_UTC.pattern},
        "ttlMs": {"type": ["integer", "null"], "minimum": 0},
        "pollIntervalMs": {"type": "integer", "minimum": 0},
    },
}
EXT_CREATE_TASK_RESULT = Draft202012Validator({
    "allOf": [_EXT_TASK, {"properties": {"resultType": {"const": "task"}},
                          "required": ["resultType"],
                          "not": {"anyOf": [{"required": ["result"]}, {"required": ["error"]},
                                            {"required": ["inputRequests"]}]}}],
})
EXT_GET_TASK_RESULT = Draft202012Validator({
    "allOf": [
        _EXT_TASK,
        {"properties": {"resultType": {"const": "complete"}}, "required": ["resultType"]},
        {"if": {"properties": {"status": {"const": "input_required"}}},
         "then": {"required": ["inputRequests"]}},
        {"if": {"properties": {"status": {"const": "completed"}}},
         "then": {"required": ["result"]}},
        {"if": {"properties": {"status": {"const": "failed"}}},
         "then": {"required": ["error"]}},
    ],
})


def _assert_valid(validator: Draft202012Validator, instance: Any, what: str) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, f"not a valid {what}: {errors} in {instance}"


# -- recording and checking what the server sends --------------------------------------------


class Wire:
    """The frames one client channel wrote and read."""

    def __init__(self) -> None:
        self.sent: dict[Any, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []

    def responses_to(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.received
                if "method" not in m and self.sent.get(m.get("id"), {}).get("method") == method]

    def server_requests(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("method") == method and "id" in m]

    def notifications(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("method") == method and "id" not in m]


class RecordingChannel:
    """A channel that remembers every frame (for in-process connections)."""

    def __init__(self, inner: LineChannel, wire: Wire) -> None:
        self.inner = inner
        self.wire = wire

    async def read_frame(self) -> bytes:
        frame = await self.inner.read_frame()
        self.wire.received.append(orjson.loads(frame))
        return frame

    async def write_frame(self, data: bytes) -> None:
        message = orjson.loads(data)
        if "method" in message and "id" in message:
            self.wire.sent[message["id"]] = message
        await self.inner.write_frame(data)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def wires(monkeypatch: pytest.MonkeyPatch) -> dict[int, Wire]:
    """Record the frames of every LineChannel of this process (the clients' ends)."""
    by_channel: dict[int, Wire] = {}
    read, write = LineChannel.read_frame, LineChannel.write_frame

    async def recording_read(self: LineChannel) -> bytes:
        frame = await read(self)
        by_channel.setdefault(id(self), Wire()).received.append(orjson.loads(frame))
        return frame

    async def recording_write(self: LineChannel, data: bytes) -> None:
        message = orjson.loads(data)
        if "method" in message and "id" in message:
            by_channel.setdefault(id(self), Wire()).sent[message["id"]] = message
        await write(self, data)

    monkeypatch.setattr(LineChannel, "read_frame", recording_read)
    monkeypatch.setattr(LineChannel, "write_frame", recording_write)
    return by_channel


def wire_of(wires: dict[int, Wire], client: Client) -> Wire:
    return wires.setdefault(id(client.connection.session.channel), Wire())


def check_legacy(wire: Wire) -> int:
    """Validate every server message of a 2025-11-25 session; how many were checked."""
    for message in wire.received:
        validate_message(message, LEGACY)
        method = message.get("method")
        if method == "notifications/tasks/status":
            validate_def(message, LEGACY, "TaskStatusNotification")
            assert RELATED_TASK not in (message["params"].get("_meta") or {})
        elif method == "elicitation/create":
            validate_def(message, LEGACY, "ElicitRequest")
        elif method is None:
            request = wire.sent.get(message.get("id"), {})
            asked = request.get("method")
            if "error" in message:
                validate_def(message, LEGACY, "JSONRPCErrorResponse")
                continue
            result = message["result"]
            if asked == "tools/call":
                task_call = "task" in (request.get("params") or {})
                validate_def(result, LEGACY, "CreateTaskResult" if task_call
                             else "CallToolResult")
            elif asked == "tasks/result":
                validate_def(result, LEGACY, "GetTaskPayloadResult")
                validate_def(result, LEGACY, "CallToolResult")
                task_id = request["params"]["taskId"]
                assert result["_meta"][RELATED_TASK] == {"taskId": task_id}
            else:
                kind = {"initialize": "InitializeResult", "tools/list": "ListToolsResult",
                        "tasks/get": "GetTaskResult", "tasks/cancel": "CancelTaskResult",
                        "tasks/list": "ListTasksResult"}.get(asked)
                if kind:
                    validate_def(result, LEGACY, kind)
            for task in _tasks_in(result):
                assert ISO_UTC.match(task["createdAt"]) and ISO_UTC.match(task["lastUpdatedAt"])
    return len(wire.received)


def _tasks_in(result: dict[str, Any]) -> list[dict[str, Any]]:
    if "task" in result:
        return [result["task"]]
    if "tasks" in result:
        return result["tasks"]
    return [result] if "taskId" in result else []


def check_modern(wire: Wire) -> int:
    """Validate every server message of modern requests; how many were checked."""
    for message in wire.received:
        validate_message(message, MODERN)
        if "method" in message:
            continue
        request = wire.sent.get(message.get("id"), {})
        asked = request.get("method")
        if "error" in message:
            validate_def(message, MODERN, "JSONRPCErrorResponse")
            if message["error"]["code"] == MISSING_REQUIRED_CLIENT_CAPABILITY:
                validate_def(message, MODERN, "MissingRequiredClientCapabilityError")
            continue
        result = message["result"]
        validate_def(result, MODERN, "Result")
        if asked == "server/discover":
            validate_def(result, MODERN, "DiscoverResult")
        elif asked == "tools/call" and result.get("resultType") == "task":
            _assert_valid(EXT_CREATE_TASK_RESULT, result, "CreateTaskResult (extension)")
        elif asked == "tools/call":
            validate_def(result, MODERN, "CallToolResult")
        elif asked == "tasks/get":
            _assert_valid(EXT_GET_TASK_RESULT, result, "GetTaskResult (extension)")
            if "inputRequests" in result:
                validate_def(result["inputRequests"], MODERN, "InputRequests")
            if "result" in result:
                validate_def(result["result"], MODERN, "CallToolResult")
            if "error" in result:
                validate_def(result["error"], MODERN, "Error")
        elif asked in ("tasks/update", "tasks/cancel"):
            validate_def(result, MODERN, "EmptyResult")
            assert result["resultType"] == "complete"
    return len(wire.received)


# -- helpers -------------------------------------------------------------------------------


async def poll_until(client: Client, task_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(250):
        task = await client.get_task(task_id)
        if task["status"] in statuses:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached {statuses}: {task}")


def accept_name(name: str = "Luca", gate: asyncio.Event | None = None) -> Any:
    seen: list[dict[str, Any]] = []

    async def elicit(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        if gate is not None:
            await gate.wait()
        return {"action": "accept", "content": {"name": name}}

    elicit.seen = seen  # type: ignore[attr-defined]
    return elicit


# -- legacy (2025-11-25) ---------------------------------------------------------------------


async def test_legacy_capability_and_tool_execution(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        assert client.protocol_version == LEGACY
        assert client.server.capabilities["tasks"] == {
            "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}},
        }
        tools = {t["name"]: t for t in await client.list_tools()}
        assert tools["slow"]["execution"] == {"taskSupport": "optional"}
        assert tools["must_task"]["execution"] == {"taskSupport": "required"}
        assert "execution" not in tools["plain"]
        assert check_legacy(wire_of(wires, client)) >= 2


async def test_legacy_create_poll_and_result(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        created = await client.call_tool_task("slow", {"delay": 0.2, "text": "hi"}, ttl=60_000)
        task = created["task"]
        assert task["status"] == WORKING
        assert task["ttl"] == 60_000 and task["pollInterval"] == 20
        assert len(task["taskId"]) >= 40  # 256 random bits, url-safe
        assert (await client.get_task(task["taskId"]))["status"] == WORKING
        result = await client.get_task_result(task["taskId"])
        assert result["content"] == [{"type": "text", "text": "hi"}]
        assert result["_meta"][RELATED_TASK] == {"taskId": task["taskId"]}
        done = await client.get_task(task["taskId"])
        assert done["status"] == COMPLETED
        assert done["createdAt"] == task["createdAt"]
        assert done["lastUpdatedAt"] >= task["createdAt"]
        # A result can be fetched again, identically.
        assert await client.get_task_result(task["taskId"]) == result
        check_legacy(wire_of(wires, client))


async def test_legacy_result_returns_the_error_exactly(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        task_id = (await client.call_tool_task("boom"))["task"]["taskId"]
        with pytest.raises(InvalidParams) as caught:
            await client.get_task_result(task_id)
        assert caught.value.code == INVALID_PARAMS
        assert caught.value.message == "boom" and caught.value.data == {"why": "boom"}
        failed = await client.get_task(task_id)
        assert failed["status"] == FAILED and failed["statusMessage"] == "boom"
        # A tool error fails a legacy task; its result is still the CallToolResult.
        task_id = (await client.call_tool_task("oops"))["task"]["taskId"]
        result = await client.get_task_result(task_id)
        assert result["isError"] is True
        assert result["content"] == [{"type": "text", "text": "oops"}]
        assert (await client.get_task(task_id))["status"] == FAILED
        check_legacy(wire_of(wires, client))


async def test_legacy_cancel(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        task_id = (await client.call_tool_task("forever"))["task"]["taskId"]
        cancelled = await client.cancel_task(task_id)
        assert cancelled["taskId"] == task_id and cancelled["status"] == CANCELLED
        assert (await client.get_task(task_id))["status"] == CANCELLED
        with pytest.raises(MCPError) as again:
            await client.cancel_task(task_id)
        assert again.value.code == INVALID_PARAMS
        with pytest.raises(MCPError) as no_result:
            await client.get_task_result(task_id)
        assert no_result.value.code == INVALID_PARAMS
        # Cancelling a completed task is -32602 too, and the task stays completed.
        done_id = (await client.call_tool_task("slow", {"delay": 0}))["task"]["taskId"]
        await client.get_task_result(done_id)
        with pytest.raises(MCPError) as terminal:
            await client.cancel_task(done_id)
        assert terminal.value.code == INVALID_PARAMS
        assert (await client.get_task(done_id))["status"] == COMPLETED
        check_legacy(wire_of(wires, client))


async def test_legacy_task_support_mismatch_is_method_not_found(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        with pytest.raises(MCPError) as forbidden:
            await client.call_tool_task("plain")
        assert forbidden.value.code == METHOD_NOT_FOUND
        with pytest.raises(MCPError) as required:
            await client.call_tool("must_task")
        assert required.value.code == METHOD_NOT_FOUND
        task_id = (await client.call_tool_task("must_task", {"text": "ok"}))["task"]["taskId"]
        result = await client.get_task_result(task_id)
        assert result["content"][0]["text"] == "ok"
        # An optional tool still runs inline when no task is asked for.
        assert (await client.call_tool("slow", {"delay": 0}))["content"][0]["text"] == "done"
        check_legacy(wire_of(wires, client))


async def test_legacy_list_is_paginated_and_unknown_ids_fail(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="legacy") as client:
        ids = [(await client.call_tool_task("slow", {"delay": 0}))["task"]["taskId"]
               for _ in range(3)]
        first = await client.request("tasks/list")
        assert len(first["tasks"]) == 2 and "nextCursor" in first  # the peer's page size is 2
        assert [t["taskId"] for t in await client.list_tasks()] == ids
        with pytest.raises(MCPError) as bad_cursor:
            await client.request("tasks/list", {"cursor": "not-a-cursor"})
        assert bad_cursor.value.code == INVALID_PARAMS
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            with pytest.raises(MCPError) as unknown:
                await client.request(method, {"taskId": "no-such-task"})
            assert unknown.value.code == INVALID_PARAMS
        check_legacy(wire_of(wires, client))


async def test_legacy_input_required_inside_a_task(wires: dict[int, Wire]) -> None:
    gate = asyncio.Event()
    elicit = accept_name("Ada", gate)
    statuses: list[str] = []

    async def on_notification(notification: Any) -> None:
        if notification.method == "notifications/tasks/status":
            statuses.append(notification.params["status"])

    handlers = ClientHandlers(elicitation=elicit, on_notification=on_notification)
    async with connect_stdio(PEER, mode="legacy", handlers=handlers) as client:
        task_id = (await client.call_tool_task("ask_name"))["task"]["taskId"]
        waiting = await poll_until(client, task_id, INPUT_REQUIRED)
        assert "elicitation/create" in waiting["statusMessage"]
        # The elicitation came to the client as a request tied to the task.
        assert elicit.seen[0]["_meta"][RELATED_TASK] == {"taskId": task_id}
        assert elicit.seen[0]["message"] == "Please enter your name."
        gate.set()
        result = await client.get_task_result(task_id)
        assert result["content"][0]["text"] == "Hello, Ada!"
        assert (await client.get_task(task_id))["status"] == COMPLETED
        for _ in range(50):
            if COMPLETED in statuses:
                break
            await asyncio.sleep(0.01)
        assert statuses[:3] == [INPUT_REQUIRED, WORKING, COMPLETED]
        wire = wire_of(wires, client)
        assert wire.server_requests("elicitation/create")
        assert wire.notifications("notifications/tasks/status")
        check_legacy(wire)


# -- modern (2026-07-28, extension) ----------------------------------------------------------


async def test_modern_call_tool_follows_the_task(wires: dict[int, Wire]) -> None:
    handlers = ClientHandlers(tasks=True)
    async with connect_stdio(PEER, mode="modern", handlers=handlers) as client:
        assert client.protocol_version == MODERN
        assert client.server.capabilities["extensions"] == {TASKS_EXTENSION: {}}
        assert "tasks" not in client.server.capabilities
        result = await client.call_tool("slow", {"delay": 0.1, "text": "later"})
        assert result["content"] == [{"type": "text", "text": "later"}]
        assert result["resultType"] == "complete"
        wire = wire_of(wires, client)
        created = wire.responses_to("tools/call")[0]["result"]
        assert created["resultType"] == "task" and created["pollIntervalMs"] == 20
        assert created["status"] == WORKING and isinstance(created["ttlMs"], int)
        assert wire.responses_to("tasks/get")[-1]["result"]["status"] == COMPLETED
        # The request declared the extension in its per-request capabilities.
        call = next(m for m in wire.sent.values() if m["method"] == "tools/call")
        caps = call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
        assert caps["extensions"] == {TASKS_EXTENSION: {}}
        # Failures: a JSON-RPC error fails the task; a tool error completes it.
        with pytest.raises(InvalidParams) as caught:
            await client.call_tool("boom")
        assert caught.value.data == {"why": "boom"}
        oops = await client.call_tool("oops")
        assert oops["isError"] is True
        assert wire.responses_to("tasks/get")[-1]["result"]["status"] == COMPLETED
        assert check_modern(wire) > 5


async def test_modern_without_the_extension(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="modern") as client:
        # An optional tool runs inline; no task is ever returned.
        result = await client.call_tool("slow", {"delay": 0})
        assert result["content"][0]["text"] == "done"
        with pytest.raises(MCPError) as missing:
            await client.call_tool("must_task")
        assert missing.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
        assert missing.value.data == {
            "requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}},
        }
        assert TASKS_EXTENSION in missing.value.message
        # The extension's methods do not exist for a request that does not declare it.
        with pytest.raises(MCPError) as unknown:
            await client.get_task("anything")
        assert unknown.value.code == METHOD_NOT_FOUND
        wire = wire_of(wires, client)
        assert not [r for r in wire.received
                    if r.get("result", {}).get("resultType") == "task"]
        check_modern(wire)


async def test_modern_input_required_and_update(wires: dict[int, Wire]) -> None:
    elicit = accept_name("Luca")
    handlers = ClientHandlers(tasks=True, elicitation=elicit)
    async with connect_stdio(PEER, mode="modern", handlers=handlers) as client:
        # Driven by hand: the wire flow of the extension.
        created = await client.request("tools/call", {"name": "ask_name", "arguments": {}})
        assert created["resultType"] == "task"
        task_id = created["taskId"]
        waiting = await poll_until(client, task_id, INPUT_REQUIRED)
        request = waiting["inputRequests"]["name"]
        assert request["method"] == "elicitation/create"
        assert request["params"]["requestedSchema"] == NAME_SCHEMA
        # Unknown keys are ignored, malformed answers leave the request outstanding.
        await client.update_task(task_id, {"nope": {"action": "accept"},
                                           "name": {"not": "an elicit result"}})
        await asyncio.sleep(0.05)
        assert (await client.get_task(task_id))["status"] == INPUT_REQUIRED
        await client.update_task(task_id, {"name": {"action": "accept",
                                                    "content": {"name": "Grace"}}})
        done = await poll_until(client, task_id, COMPLETED)
        assert done["result"]["content"][0]["text"] == "Hello, Grace!"
        assert "inputRequests" not in done
        # An answer for an already answered key is ignored.
        await client.update_task(task_id, {"name": {"action": "decline"}})
        # Driven by call_tool: it answers inputRequests through the elicitation handler.
        result = await client.call_tool("ask_name")
        assert result["content"][0]["text"] == "Hello, Luca!"
        assert elicit.seen and "_meta" not in elicit.seen[0]
        wire = wire_of(wires, client)
        assert len(wire.responses_to("tasks/update")) == 4
        check_modern(wire)


async def test_modern_cancel_and_unknown_task(wires: dict[int, Wire]) -> None:
    async with connect_stdio(PEER, mode="modern", handlers=ClientHandlers(tasks=True)) as client:
        created = await client.request("tools/call", {"name": "forever", "arguments": {}})
        task_id = created["taskId"]
        ack = await client.cancel_task(task_id)
        assert ack["resultType"] == "complete"
        assert set(ack) <= {"resultType", "_meta"}
        assert (await client.get_task(task_id))["status"] == CANCELLED
        # Cancelling again (a terminal task) is acknowledged; the status stays cancelled.
        await client.cancel_task(task_id)
        assert (await client.get_task(task_id))["status"] == CANCELLED
        for method, extra in (("tasks/get", {}), ("tasks/cancel", {}),
                              ("tasks/update", {"inputResponses": {}})):
            with pytest.raises(MCPError) as unknown:
                await client.request(method, {"taskId": "no-such-task", **extra})
            assert unknown.value.code == INVALID_PARAMS
        # The core methods of the legacy era do not exist here.
        with pytest.raises(MCPError) as gone:
            await client.request("tasks/list")
        assert gone.value.code == METHOD_NOT_FOUND
        check_modern(wire_of(wires, client))


async def test_modern_call_tool_cancels_the_task_when_the_caller_gives_up(
    wires: dict[int, Wire],
) -> None:
    async with connect_stdio(PEER, mode="modern", handlers=ClientHandlers(tasks=True)) as client:
        client.task_timeout = 0.2
        with pytest.raises(TimeoutError):
            await client.call_tool("forever")
        wire = wire_of(wires, client)
        cancel = next(m for m in wire.sent.values() if m["method"] == "tasks/cancel")
        assert (await client.get_task(cancel["params"]["taskId"]))["status"] == CANCELLED
        check_modern(wire)


# -- per-session isolation (one in-process server, two connections) ----------------------------


def isolation_server() -> Server:
    server = Server("isolation", task_store=TaskStore(poll_interval_ms=10))

    @server.tool(task_support="optional")
    async def wait(ctx: Context) -> str:
        """Waits until cancelled."""
        await asyncio.Event().wait()
        return "never"

    @server.tool(task_support="optional")
    async def quick() -> str:
        """Answers at once."""
        return "quick"

    return server


@contextlib.asynccontextmanager
async def in_process(server: Server, wire: Wire) -> AsyncIterator[tuple[Client, asyncio.Task]]:
    left, right = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=left)
    client_reader, client_writer = await asyncio.open_connection(sock=right)
    serving = asyncio.create_task(
        serve_channel(server, LineChannel(server_reader, server_writer))
    )
    channel = RecordingChannel(LineChannel(client_reader, client_writer), wire)
    connection = ClientConnection(channel, mode="legacy")
    try:
        await connection.connect()
        yield Client(connection), serving
    finally:
        await connection.aclose()
        await asyncio.wait_for(serving, 5)


async def test_legacy_tasks_are_isolated_per_session() -> None:
    server = isolation_server()
    wire_a, wire_b = Wire(), Wire()
    async with in_process(server, wire_a) as (a, serving_a), in_process(server, wire_b) as (b, _):
        mine = (await a.call_tool_task("wait"))["task"]["taskId"]
        done = (await a.call_tool_task("quick"))["task"]["taskId"]
        await a.get_task_result(done)
        theirs = (await b.call_tool_task("quick"))["task"]["taskId"]
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            with pytest.raises(MCPError) as foreign:
                await b.request(method, {"taskId": mine})
            assert foreign.value.code == INVALID_PARAMS
        assert [t["taskId"] for t in await b.list_tasks()] == [theirs]
        assert [t["taskId"] for t in await a.list_tasks()] == [mine, done]
        # A modern request on the same connection cannot reach the session's tasks either.
        meta = request_meta(MODERN, {"extensions": {TASKS_EXTENSION: {}}})
        with pytest.raises(MCPError) as modern:
            await a.connection.session.request("tasks/get", {"taskId": mine, "_meta": meta})
        assert modern.value.code == INVALID_PARAMS
        assert (await a.get_task(mine))["status"] == WORKING
        store = server.tasks.store
        record = next(r for c in server.subscribers.connections for r in store.owned_by(c)
                      if r.task_id == mine)
        # Ending a session ends its tasks (and their work).
        await a.connection.aclose()
        await asyncio.wait_for(serving_a, 5)
        assert record.status == CANCELLED
        await asyncio.sleep(0)
        assert record.runner is not None and record.runner.done()
        assert [t["taskId"] for t in await b.list_tasks()] == [theirs]
    for wire in (wire_a, wire_b):
        legacy_only = Wire()
        legacy_only.sent = wire.sent
        legacy_only.received = [m for m in wire.received
                                if "_meta" not in (wire.sent.get(m.get("id"), {})
                                                   .get("params") or {})]
        check_legacy(legacy_only)


# -- the store ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _value(record: Any) -> dict[str, Any]:
    return {"content": []}


async def test_store_ttl_expiry_and_bounds() -> None:
    clock = FakeClock()
    store = TaskStore(max_tasks=2, min_ttl_ms=0, default_ttl_ms=1000, clock=clock)
    assert store.ttl_for(None) == 1000 and store.ttl_for(10**9) == store.max_ttl_ms
    first = store.create("me", _value, ttl_ms=500)
    second = store.create("me", _value)
    await asyncio.gather(store.wait(first), store.wait(second))
    # Full of terminal tasks: the oldest is evicted for a new one.
    third = store.create("me", _value)
    assert [r.task_id for r in store.owned_by("me")] == [second.task_id, third.task_id]
    await store.wait(third)
    clock.now += 1.0  # both expire
    assert store.owned_by("me") == []
    with pytest.raises(InvalidParams):
        store.get(second.task_id, "me")

    # Full of running tasks: no room.
    gate = asyncio.Event()

    async def blocked(record: Any) -> dict[str, Any]:
        await gate.wait()
        return {"content": []}

    running = [store.create("me", blocked) for _ in range(2)]
    with pytest.raises(MCPError):
        store.create("me", blocked)
    # Expiry stops the work of a running task.
    clock.now += 10.0
    store.purge()
    await asyncio.sleep(0)
    assert all(r.status == CANCELLED and r.runner is not None and r.runner.done()
               for r in running)
    assert len(store) == 0


async def test_store_per_owner_limit_and_isolation() -> None:
    store = TaskStore(max_active_per_owner=1)
    gate = asyncio.Event()

    async def blocked(record: Any) -> dict[str, Any]:
        await gate.wait()
        return {"content": []}

    mine = store.create("a", blocked)
    with pytest.raises(MCPError):
        store.create("a", blocked)
    store.create("b", blocked)
    with pytest.raises(InvalidParams):
        store.get(mine.task_id, "b")
    gate.set()
    await store.wait(mine)
    store.create("a", blocked)  # room again
    store.close()


async def test_store_terminal_states_never_change() -> None:
    store = TaskStore()
    stopped = asyncio.Event()

    async def stubborn(record: Any) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            return {"content": [{"type": "text", "text": "finished anyway"}]}
        return {"content": []}

    record = store.create("me", stubborn)
    await asyncio.sleep(0)
    assert await store.cancel(record)
    await asyncio.wait_for(stopped.wait(), 1)
    await asyncio.sleep(0)
    assert record.status == CANCELLED and record.result is None
    assert not await store.cancel(record)
    await store.set_status(record, WORKING)
    assert record.status == CANCELLED

    async def failing(record: Any) -> dict[str, Any]:
        raise InvalidParams("bad", data={"x": 1})

    failed = store.create("me", failing)
    await store.wait(failed)
    assert failed.status == FAILED
    assert failed.error == {"code": INVALID_PARAMS, "message": "bad", "data": {"x": 1}}
    assert failed.modern_task()["error"] == failed.error

    async def crashing(record: Any) -> dict[str, Any]:
        raise RuntimeError("kaput")

    crashed = store.create("me", crashing)
    await store.wait(crashed)
    assert crashed.status == FAILED and crashed.error is not None
    assert crashed.error["code"] == -32603
    legacy = crashed.legacy_task()
    assert set(legacy) == {"taskId", "status", "statusMessage", "createdAt", "lastUpdatedAt",
                           "ttl", "pollInterval"}
    validate_def(legacy, LEGACY, "Task")


async def test_store_input_keys_are_unique_over_a_task() -> None:
    store = TaskStore()
    asked: list[dict[str, Any]] = []
    ask = {"method": "roots/list"}

    async def twice(record: Any) -> dict[str, Any]:
        first = await store.request_input(record, {"k": ask})
        second = await store.request_input(record, {"k": ask})
        return {"content": [], "structuredContent": {"a": first, "b": second}}

    record = store.create("me", twice)
    for expected in ("k", "k-2"):
        for _ in range(100):
            if list(record.input_requests) == [expected]:
                break
            await asyncio.sleep(0)
        assert record.status == INPUT_REQUIRED
        assert list(record.modern_task()["inputRequests"]) == [expected]
        asked.append(dict(record.input_requests))
        answer = {"roots": [{"uri": f"file:///{expected}"}]}
        assert store.provide_input(record, {expected: answer}) == 1
    await store.wait(record)
    assert record.status == COMPLETED
    assert record.result is not None
    assert record.result["structuredContent"]["b"] == {"k": {"roots": [{"uri": "file:///k-2"}]}}
