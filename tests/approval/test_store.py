"""The approvals file: binding, single use, expiry, races between writers, restarts and the
event trail (SPEC-TOOL-06, approvals bound and single-use per security-requirements §1.9)."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from bastion.guard.approval import (
    ApprovalAlreadyUsed,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalRequest,
    ApprovalStore,
    ApprovalStoreError,
    ApprovalTooLarge,
    arguments_sha256,
    new_approval_id,
)
from tests.approval.support import ARGS, BOB, CAROL, MALLORY

T0 = 1_000_000.0


def request(**changes: object) -> ApprovalRequest:
    fields: dict[str, object] = dict(
        id=new_approval_id(), rule="r", principal=BOB.for_audit(), binding=BOB.binding,
        agent=BOB.client_id, upstream="edr", tool="edr__isolate_host",
        upstream_tool="isolate_host", arguments=dict(ARGS), arguments_sha256=arguments_sha256(ARGS),
        arguments_shown={"host": "ws-042"}, policy_version="v1", approver_roles=("soc-lead",),
        approver_subjects=(), self_approval=False, created_at=T0, expires_at=T0 + 600)
    fields.update(changes)
    return ApprovalRequest(**fields)  # type: ignore[arg-type]


def consume(store: ApprovalStore, approval_id: str, now: float = T0 + 10,
            **changes: str) -> ApprovalRequest:
    facts = dict(binding=BOB.binding, upstream="edr", tool="edr__isolate_host",
                 arguments_sha256=arguments_sha256(ARGS), policy_version="v1")
    facts.update(changes)
    return store.consume(approval_id, now=now, **facts)


@pytest.fixture
def store(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore.in_state_dir(tmp_path / "state")


def approved(store: ApprovalStore) -> ApprovalRequest:
    created = store.create(request())
    return store.decide(created.id, "approved", CAROL.for_audit(), "ok", now=T0 + 5)


def test_spec_tool_06_file_is_private_and_survives_a_restart(store: ApprovalStore,
                                                              tmp_path: Path) -> None:
    created = store.create(request())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    store.path.chmod(0o644)
    again = ApprovalStore.in_state_dir(tmp_path / "state")
    assert again.get(created.id) == created
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600  # tightened on open
    assert [r.id for r in again.list("pending")] == [created.id]


def test_approved_call_runs_once_with_the_approved_arguments(store: ApprovalStore) -> None:
    decided = approved(store)
    assert decided.status == "approved" and decided.decided_by == CAROL.for_audit()
    used = consume(store, decided.id)
    assert used.status == "executed" and used.arguments == ARGS
    with pytest.raises(ApprovalAlreadyUsed):
        consume(store, decided.id)
    store.record_result(decided.id, "ok", "ab" * 32, now=T0 + 11)
    with pytest.raises(ApprovalNotApproved):
        store.record_result(decided.id, "ok", "ab" * 32)
    assert [e.step for e in store.events(decided.id)] == [
        "requested", "approved", "executed", "result"]
    requested = store.events(decided.id)[0]
    assert requested.actor == BOB.for_audit()
    assert requested.detail["arguments_sha256"] == arguments_sha256(ARGS)
    assert requested.detail["tool"] == "edr__isolate_host"
    assert store.events(decided.id)[1].actor == CAROL.for_audit()
    assert store.get(decided.id).result_status == "ok"


@pytest.mark.parametrize(("field", "change"), [
    ("binding", {"binding": MALLORY.binding}),
    ("upstream", {"upstream": "edr2"}),
    ("tool", {"tool": "edr__delete_host"}),
    ("arguments", {"arguments_sha256": arguments_sha256({**ARGS, "host": "dc-01"})}),
    ("policy_version", {"policy_version": "v2"}),
])
def test_a_changed_call_does_not_match_its_approval(store: ApprovalStore, field: str,
                                                    change: dict[str, str]) -> None:
    decided = approved(store)
    with pytest.raises(ApprovalMismatch) as caught:
        consume(store, decided.id, **change)
    assert caught.value.field == field
    assert store.events(decided.id)[-1].step == "refused"
    # The refusal does not burn the approval: the exact call still runs.
    assert consume(store, decided.id).status == "executed"


def test_pending_or_denied_requests_cannot_be_consumed(store: ApprovalStore) -> None:
    pending = store.create(request())
    with pytest.raises(ApprovalNotApproved) as caught:
        consume(store, pending.id)
    assert caught.value.status == "pending"
    store.decide(pending.id, "denied", CAROL.for_audit(), "no", now=T0 + 1)
    with pytest.raises(ApprovalNotApproved, match="denied"):
        consume(store, pending.id)
    with pytest.raises(ApprovalNotFound):
        consume(store, "apr_missing")


def test_expiry_is_a_deny(store: ApprovalStore) -> None:
    decided = approved(store)
    with pytest.raises(ApprovalExpired):
        consume(store, decided.id, now=T0 + 600)
    assert store.get(decided.id).status == "expired"
    pending = store.create(request())
    with pytest.raises(ApprovalNotPending, match="expired"):
        store.decide(pending.id, "approved", CAROL.for_audit(), now=T0 + 601)
    later = store.create(request(expires_at=T0 + 5000))
    assert store.expire_due(T0 + 4000) == []
    assert store.expire_due(T0 + 5000) == [later.id]
    assert [e.step for e in store.events(later.id)] == ["requested", "expired"]
    assert store.events(later.id)[-1].actor == {"system": "expiry"}


def test_withdrawn_requests_close(store: ApprovalStore) -> None:
    pending = store.create(request())
    assert store.withdraw(pending.id, BOB.for_audit(), "client cancelled",
                          now=T0 + 1).status == "withdrawn"
    with pytest.raises(ApprovalNotPending, match="withdrawn"):
        store.decide(pending.id, "approved", CAROL.for_audit(), now=T0 + 2)


def test_racing_decisions_across_store_instances_have_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "state" / "approvals.sqlite3"
    ids = [ApprovalStore(path).create(request(expires_at=time.time() + 600)).id
           for _ in range(10)]
    outcomes: dict[str, list[str]] = {approval_id: [] for approval_id in ids}
    barrier = threading.Barrier(4)

    def decider(status: str) -> None:
        own = ApprovalStore(path)  # a separate instance, as another process would have
        barrier.wait()
        for approval_id in ids:
            try:
                own.decide(approval_id, status, CAROL.for_audit())
                outcomes[approval_id].append(status)
            except ApprovalNotPending:
                pass

    threads = [threading.Thread(target=decider, args=(status,))
               for status in ("approved", "denied", "approved", "denied")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    store = ApprovalStore(path)
    for approval_id, won in outcomes.items():
        assert len(won) == 1
        assert store.get(approval_id).status == won[0]
        assert [e.step for e in store.events(approval_id)] == ["requested", won[0]]


def test_racing_consumers_have_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "approvals.sqlite3"
    first = ApprovalStore(path)
    created = first.create(request(expires_at=time.time() + 600))
    first.decide(created.id, "approved", CAROL.for_audit())
    wins: list[str] = []
    barrier = threading.Barrier(4)

    def consumer() -> None:
        own = ApprovalStore(path)
        barrier.wait()
        try:
            consume(own, created.id, now=time.time())
            wins.append("won")
        except ApprovalAlreadyUsed:
            pass

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wins == ["won"]


def test_bad_input_is_refused(store: ApprovalStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pending"):
        store.create(request(status="approved"))
    pending = store.create(request())
    with pytest.raises(ValueError, match="approves or denies"):
        store.decide(pending.id, "executed", CAROL.for_audit())
    with pytest.raises(ValueError, match="at most"):
        store.decide(pending.id, "approved", CAROL.for_audit(), "x" * 1001)
    with pytest.raises(ValueError, match="unknown status"):
        store.list("maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        store.list(limit=0)
    with pytest.raises(ApprovalNotFound):
        store.get("apr_nope")
    with pytest.raises(ValueError, match="'ok' or 'error'"):
        store.record_result(pending.id, "maybe", None)
    with pytest.raises(ApprovalNotApproved, match="pending"):
        store.record_result(pending.id, "ok", None)
    with pytest.raises(ApprovalTooLarge):
        arguments_sha256({"blob": "x" * 300_000})
    with pytest.raises(ValueError, match="JSON object"):
        arguments_sha256(["not", "a", "dict"])  # type: ignore[arg-type]
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"not a database" * 100)
    with pytest.raises(ApprovalStoreError, match="damaged"):
        ApprovalStore(damaged).get("x")


def test_ids_are_random_and_url_safe() -> None:
    ids = {new_approval_id() for _ in range(1000)}
    assert len(ids) == 1000
    for approval_id in ids:
        assert len(approval_id) >= 4 + 22  # 144 bits in base64url after the prefix
        assert approval_id.replace("-", "").replace("_", "").isalnum()
