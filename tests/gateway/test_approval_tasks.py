"""Approvals for task-capable clients, end to end: a running gateway (`auth: {mode: jwt}`, a
real identity provider), the demo EDR server as a stdio upstream, and real clients. A legacy
2025-11-25 client that asks for a task gets one of the gateway's own at once (input_required
while a person decides), and its result through tasks/result; the official SDK's modern
client waits in the call. What the EDR upstream reports as isolated shows whether the call ran.
"""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from mcp import Client as SdkClient
from mcp.client.streamable_http import streamable_http_client

from bastion.client import ClientHandlers, connect_http
from bastion.gateway.approval_tasks import APPROVAL_TASKS
from bastion.guard.approval import ApprovalRequest
from bastion.guard.approval.stage import APPROVAL_DENIED
from bastion.protocol.errors import MCPError
from bastion.protocol.meta import RELATED_TASK
from tests.gateway.conftest import LiveGateway
from tests.gateway.test_approval_stage import (
    ARGS,
    isolated,
    lead,
    pending,
    responder,
    service,
    start,
)
from tests.identity.conftest import Idp

pytestmark = pytest.mark.timeout(60)

INVALID_PARAMS = -32602
TOOL = "edr__isolate_host"


@pytest.fixture
async def live(idp: Idp, tmp_path, gateway_http) -> LiveGateway:
    return await start(gateway_http, idp, tmp_path)


async def status_of(client, task_id: str, want: str) -> dict:
    """tasks/get until the task reports `want` (the job moves on in the background)."""
    for _ in range(200):
        task = await client.get_task(task_id)
        if task["status"] == want:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never became {want} (last: {task})")


async def test_SPEC_APPROVAL_TASKS_01_legacy_task_runs_once_approved(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        assert "call" in client.server.capabilities["tasks"]["requests"]["tools"]
        created = (await client.call_tool_task(TOOL, ARGS, ttl=60_000))["task"]
        task_id = created["taskId"]
        assert created["status"] == "input_required" and created["ttl"] == 60_000
        request = await pending(approvals)
        assert request.id in created["statusMessage"]
        assert (await client.get_task(task_id))["status"] == "input_required"
        listed = await client.list_tasks()
        assert [t["taskId"] for t in listed] == [task_id]
        assert await isolated(live, idp) == set()  # nothing ran while it waits
        await approvals.approve(request.id, lead(idp), "confirmed with the owner")
        result = await client.get_task_result(task_id, timeout=20)
        assert "ws-017" in result["content"][0]["text"] and not result.get("isError")
        assert result["_meta"][RELATED_TASK] == {"taskId": task_id}
        assert (await client.get_task(task_id))["status"] == "completed"
    done = await approvals.get(request.id)
    assert done.status == "executed" and done.result_status == "ok"
    assert done.arguments == ARGS and done.decided_by["sub"] == "carol"
    assert await isolated(live, idp) == {"ws-017"}


async def test_SPEC_APPROVAL_TASKS_02_denied_task_fails_with_approval_denied(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        task_id = (await client.call_tool_task(TOOL, ARGS))["task"]["taskId"]
        request = await pending(approvals)
        await approvals.deny(request.id, lead(idp), "that is the CEO's laptop")
        with pytest.raises(MCPError) as refused:
            await client.get_task_result(task_id, timeout=20)
        assert refused.value.code == APPROVAL_DENIED
        assert refused.value.data["approval"] == request.id
        assert "CEO" in refused.value.data["reason"]
        assert (await client.get_task(task_id))["status"] == "failed"
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_TASKS_02b_tool_error_fails_the_task_with_its_result(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        arguments = {**ARGS, "host": "no-such-host"}
        task_id = (await client.call_tool_task(TOOL, arguments))["task"]["taskId"]
        request = await pending(approvals)
        await approvals.approve(request.id, lead(idp), "ok")
        result = await client.get_task_result(task_id, timeout=20)
        assert result["isError"] is True and "unknown host" in result["content"][0]["text"]
        assert (await client.get_task(task_id))["status"] == "failed"
    assert (await approvals.get(request.id)).result_status == "error"


async def test_SPEC_APPROVAL_TASKS_03_cancel_withdraws_the_approval(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        task_id = (await client.call_tool_task(TOOL, ARGS))["task"]["taskId"]
        request = await pending(approvals)
        cancelled = await client.cancel_task(task_id)
        assert cancelled["status"] == "cancelled" and cancelled["taskId"] == task_id
        withdrawn = await _settled(approvals, request.id)
        assert withdrawn.status == "withdrawn"
        # An ended task cannot be cancelled again, and has no result.
        for method in ("tasks/cancel", "tasks/result"):
            with pytest.raises(MCPError) as bad:
                await client.connection.request(method, {"taskId": task_id})
            assert bad.value.code == INVALID_PARAMS
        # Approving the withdrawn request now runs nothing.
        with pytest.raises(Exception):  # noqa: B017 - the service refuses a decided request
            await approvals.approve(request.id, lead(idp), "too late")
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_TASKS_04_tasks_belong_to_their_session(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as owner:
        task_id = (await owner.call_tool_task(TOOL, ARGS))["task"]["taskId"]
        request = await pending(approvals)
        async with connect_http(live.url, mode="legacy",
                                bearer_token=responder(idp)) as other:
            for method in ("tasks/get", "tasks/cancel"):
                with pytest.raises(MCPError) as foreign:
                    await other.connection.request(method, {"taskId": task_id})
                assert foreign.value.code == INVALID_PARAMS
            assert await other.list_tasks() == []
        assert (await owner.get_task(task_id))["status"] == "input_required"  # untouched
        await owner.cancel_task(task_id)
    assert (await _settled(approvals, request.id)).status == "withdrawn"


async def test_SPEC_APPROVAL_TASKS_04b_session_end_withdraws_the_approval(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        await client.call_tool_task(TOOL, ARGS)
        request = await pending(approvals)
    # The client ended its session (DELETE): nobody can reach the task any more.
    assert (await _settled(approvals, request.id)).status == "withdrawn"
    assert len(live.gateway.approval_tasks.store) == 0


async def test_SPEC_APPROVAL_TASKS_04c_too_many_tasks_fail_closed(live, idp):
    approvals = service(live)
    live.gateway.approval_tasks.store.max_active_per_owner = 1
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        task_id = (await client.call_tool_task(TOOL, ARGS))["task"]["taskId"]
        first = await pending(approvals)
        with pytest.raises(MCPError) as refused:
            await client.call_tool_task(TOOL, ARGS)
        assert refused.value.code == -32603 and "too many running tasks" in refused.value.message
        # The request the refused call opened is not left open for an approver.
        assert [r.id for r in await approvals.list(status="pending")] == [first.id]
        await client.cancel_task(task_id)
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_TASKS_05_bad_task_ids_are_invalid_params(live, idp):
    forged = live.gateway.tasks.issue(APPROVAL_TASKS, "no-such-task", b"someone else")
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        for task_id in ("", "not-a-task", forged, 7, None):
            with pytest.raises(MCPError) as bad:
                await client.connection.request("tasks/get", {"taskId": task_id})
            assert bad.value.code == INVALID_PARAMS


async def test_SPEC_APPROVAL_TASKS_06_plain_legacy_call_still_waits_in_the_call(live, idp):
    """Without `params.task` nothing changes: the call waits and runs once approved."""
    approvals = service(live)

    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        approver = asyncio.create_task(approve_next(approvals, idp))
        result = await client.call_tool(TOOL, ARGS)
        await approver
        assert await client.list_tasks() == []
    assert "ws-017" in result["content"][0]["text"]


def modern(live: LiveGateway, idp: Idp):
    """A modern client that declares the tasks extension."""
    return connect_http(live.url, mode="modern", bearer_token=responder(idp),
                        handlers=ClientHandlers(tasks=True))


async def test_SPEC_APPROVAL_TASKS_07_modern_task_runs_once_approved(live, idp):
    approvals = service(live)
    async with modern(live, idp) as client:
        created = await client.request("tools/call", {"name": TOOL, "arguments": ARGS})
        assert created["resultType"] == "task" and created["status"] == "working"
        task_id = created["taskId"]
        request = await pending(approvals)
        assert request.id in created["statusMessage"]
        waiting = await client.get_task(task_id)
        assert waiting["status"] == "working" and "result" not in waiting
        with pytest.raises(MCPError) as nothing_to_answer:
            await client.update_task(task_id, {"x": {"action": "accept"}})
        assert nothing_to_answer.value.code == INVALID_PARAMS
        assert await isolated(live, idp) == set()
        await approvals.approve(request.id, lead(idp), "ok")
        done = await status_of(client, task_id, "completed")
        assert "ws-017" in done["result"]["content"][0]["text"]
        # call_tool follows the gateway's task to its end, as it does an upstream's.
        follower = asyncio.create_task(client.call_tool(TOOL, {**ARGS, "host": "srv-db-02"}))
        second = await pending(approvals, {request.id})
        await approvals.approve(second.id, lead(idp), "ok")
        followed = await asyncio.wait_for(follower, 20)
        assert "srv-db-02 isolated" in followed["content"][0]["text"]
    assert (await approvals.get(request.id)).status == "executed"
    assert await isolated(live, idp) == {"ws-017", "srv-db-02"}


async def test_SPEC_APPROVAL_TASKS_08_modern_denied_and_cancelled(live, idp):
    approvals = service(live)
    async with modern(live, idp) as client:
        denied_id = (await client.request("tools/call", {"name": TOOL, "arguments": ARGS})
                     )["taskId"]
        request = await pending(approvals)
        await approvals.deny(request.id, lead(idp), "no")
        failed = await status_of(client, denied_id, "failed")
        assert failed["error"]["code"] == APPROVAL_DENIED
        assert failed["error"]["data"]["approval"] == request.id
        cancelled_id = (await client.request("tools/call", {"name": TOOL, "arguments": ARGS})
                        )["taskId"]
        second = await pending(approvals, {request.id})
        ack = await client.cancel_task(cancelled_id)
        assert set(ack) <= {"resultType", "_meta"}
        await status_of(client, cancelled_id, "cancelled")
        assert (await _settled(approvals, second.id)).status == "withdrawn"
        # Another principal does not reach the task (modern tasks belong to the principal).
        other = idp.mint(sub="eve", roles=["responder"])
        async with connect_http(live.url, mode="modern", bearer_token=other,
                                handlers=ClientHandlers(tasks=True)) as eve:
            with pytest.raises(MCPError) as foreign:
                await eve.get_task(denied_id)
            assert foreign.value.code == INVALID_PARAMS
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_01_modern_sdk_client_waits_and_runs_once_approved(live, idp):
    """The official SDK's modern client declares no tasks extension: its call waits."""
    approvals = service(live)
    bearer = {"Authorization": f"Bearer {responder(idp)}"}
    async with httpx2.AsyncClient(headers=bearer) as http:
        transport = streamable_http_client(live.url, http_client=http)
        async with SdkClient(transport, mode="auto") as sdk:
            approver = asyncio.create_task(approve_next(approvals, idp))
            outcome = await sdk.call_tool(TOOL, ARGS)
            approved = await approver
    assert not outcome.is_error and "ws-017 isolated" in outcome.content[0].text
    done = await approvals.get(approved.id)
    assert done.status == "executed" and done.principal["sub"] == "bob"
    assert await isolated(live, idp) == {"ws-017"}


async def approve_next(approvals, idp: Idp) -> ApprovalRequest:
    """Approve the first request a call opens (as a soc-lead)."""
    request = await pending(approvals)
    return await approvals.approve(request.id, lead(idp), "confirmed with the owner")


async def _settled(approvals, approval_id: str) -> ApprovalRequest:
    for _ in range(100):
        request = await approvals.get(approval_id)
        if request.status != "pending":
            return request
        await asyncio.sleep(0.05)
    raise AssertionError(f"approval {approval_id} stayed pending")

