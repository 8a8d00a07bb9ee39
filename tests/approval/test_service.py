"""The approval state machine: which calls need a person, who may decide, waiting, and the
exact call running once (SPEC-TOOL-01, SPEC-TOOL-05, SPEC-TOOL-06)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bastion.guard.approval import (
    ApprovalAlreadyUsed,
    ApprovalMismatch,
    ApprovalNotPending,
    ApprovalService,
    ApprovalStore,
    NotAnApprover,
    SelfApproval,
)
from tests.approval.support import (
    ARGS,
    BOB,
    BOB_OTHER_AGENT,
    CAROL,
    ISOLATE,
    MALLORY,
    RULE,
    SEARCH,
    service,
)
from tests.policy.support import person, tool


def test_spec_tool_06_rules_match_by_tool_class_args_and_principal(tmp_path: Path) -> None:
    approvals = service(tmp_path, [
        RULE,
        {"name": "big-deletes", "tools": ["db__*"], "args": {"rows": {"minimum": 1000}},
         "approvers": {"subjects": ["carol"]}},
    ])
    assert approvals.needs_approval(BOB, ISOLATE, ARGS).name == RULE["name"]  # type: ignore[union-attr]
    assert approvals.needs_approval(MALLORY, ISOLATE, ARGS) is None  # not a responder
    assert approvals.needs_approval(BOB, SEARCH, {}) is None  # another tool
    # SPEC-TOOL-01: a hint of read-only on a tool whose name says isolate is not believed.
    lying = tool("edr__isolate_host", readOnlyHint=True)
    assert approvals.needs_approval(BOB, lying, ARGS) is not None
    delete = tool("db__delete_rows")
    assert approvals.needs_approval(MALLORY, delete, {"rows": 5}) is None
    matched = approvals.needs_approval(MALLORY, delete, {"rows": 5000})
    assert matched is not None and matched.approver_subjects == ("carol",)
    with pytest.raises(ValueError, match="JSON object"):
        approvals.needs_approval(BOB, ISOLATE, ["x"])  # type: ignore[arg-type]


async def test_open_approve_wait_consume(tmp_path: Path) -> None:
    approvals = service(tmp_path)
    opened = await approvals.open(BOB, ISOLATE, dict(ARGS), "v1", upstream_tool="isolate_host")
    assert opened.status == "pending" and opened.agent == "agent-1"
    assert opened.expires_at - opened.created_at == 600
    assert ARGS["token"] not in str(opened.arguments_shown)  # approvers see it redacted
    assert opened.arguments == ARGS
    waiter = asyncio.create_task(approvals.wait(opened.id, 30))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await approvals.approve(opened.id, CAROL, "confirmed with the host owner")
    decided = await waiter
    assert decided.status == "approved" and time.monotonic() - started < 0.5  # woken, not polled
    with pytest.raises(ApprovalMismatch) as caught:
        await approvals.consume(opened.id, BOB, ISOLATE, {**ARGS, "host": "dc-01"}, "v1")
    assert caught.value.field == "arguments"
    with pytest.raises(ApprovalMismatch, match="binding"):
        await approvals.consume(opened.id, BOB_OTHER_AGENT, ISOLATE, ARGS, "v1")
    used = await approvals.consume(opened.id, BOB, ISOLATE, ARGS, "v1")
    assert used.arguments == ARGS
    with pytest.raises(ApprovalAlreadyUsed):
        await approvals.consume(opened.id, BOB, ISOLATE, ARGS, "v1")
    await approvals.record_result(opened.id, {"content": [], "isError": False}, ok=True)
    steps = [event.step for event in await approvals.events(opened.id)]
    assert steps == ["requested", "approved", "refused", "refused", "executed", "result"]
    await approvals.aclose()


async def test_who_may_decide(tmp_path: Path) -> None:
    approvals = service(tmp_path)
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    with pytest.raises(NotAnApprover):
        await approvals.approve(opened.id, MALLORY)
    with pytest.raises(NotAnApprover):
        await approvals.deny(opened.id, MALLORY)
    # The requester through another agent, even holding the approver role, is still the requester.
    with pytest.raises(SelfApproval):
        await approvals.approve(opened.id, BOB_OTHER_AGENT)
    denied = await approvals.deny(opened.id, CAROL, "not now")
    assert denied.status == "denied" and denied.reason == "not now"
    with pytest.raises(ApprovalNotPending, match="denied"):
        await approvals.approve(opened.id, person("dave", "soc-lead"))
    with pytest.raises(ValueError, match="at most"):
        await approvals.deny(opened.id, CAROL, "x" * 5000)


async def test_the_requester_may_deny_their_own_request(tmp_path: Path) -> None:
    approvals = service(tmp_path)
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    assert (await approvals.deny(opened.id, BOB, "changed my mind")).status == "denied"


async def test_self_approval_when_configured(tmp_path: Path) -> None:
    approvals = service(tmp_path, [{**RULE, "self_approval": True,
                                    "approvers": {"roles": ["responder"]}}])
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    assert (await approvals.approve(opened.id, BOB)).status == "approved"


async def test_decision_from_another_process_is_seen_by_polling(tmp_path: Path) -> None:
    approvals = service(tmp_path, poll_interval=0.05)
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    waiter = asyncio.create_task(approvals.wait(opened.id, 30))
    await asyncio.sleep(0.1)
    # The CLI: its own store (and service) on the same file.
    other = ApprovalService(approvals.config, ApprovalStore(approvals.store.path))
    await other.deny(opened.id, CAROL, "no")
    assert (await asyncio.wait_for(waiter, 5)).status == "denied"


async def test_wait_times_out_pending_and_expiry_denies(tmp_path: Path) -> None:
    now = [time.time()]
    approvals = service(tmp_path, poll_interval=0.05, clock=lambda: now[0])
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    assert (await approvals.wait(opened.id, 0.1)).status == "pending"
    now[0] += 601
    assert (await approvals.wait(opened.id, 5)).status == "expired"
    with pytest.raises(ValueError, match="timeout"):
        await approvals.wait(opened.id, -1)
    second = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    now[0] += 601
    assert await approvals.expire_due() == [second.id]
    assert [r.id for r in await approvals.list("expired")] == [second.id, opened.id]


async def test_withdraw_only_by_the_requester(tmp_path: Path) -> None:
    approvals = service(tmp_path)
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    with pytest.raises(ApprovalMismatch, match="binding"):
        await approvals.withdraw(opened.id, MALLORY)
    assert (await approvals.withdraw(opened.id, BOB, "client cancelled")).status == "withdrawn"
    with pytest.raises(ApprovalNotPending):
        await approvals.approve(opened.id, CAROL)


async def test_restart_sees_pending_requests(tmp_path: Path) -> None:
    first = service(tmp_path)
    opened = await first.open(BOB, ISOLATE, ARGS, "v1")
    restarted = service(tmp_path)
    assert [r.id for r in await restarted.list("pending")] == [opened.id]
    assert (await restarted.approve(opened.id, CAROL)).status == "approved"
    assert (await restarted.consume(opened.id, BOB, ISOLATE, ARGS, "v1")).status == "executed"


async def test_open_refuses_bad_input(tmp_path: Path) -> None:
    approvals = service(tmp_path)
    with pytest.raises(ValueError, match="no approval rule"):
        await approvals.open(BOB, SEARCH, {}, "v1")
    prompt = tool("edr__isolate_host")
    with pytest.raises(ValueError, match="tool calls"):
        await approvals.open(BOB, type(prompt)("prompt", "p", "edr"), {}, "v1")
