"""The approvals on disk: `<state_dir>/approvals.sqlite3` (mode 0600, in a 0700 directory).

One row per request and one row per step (`events`). Every change of status is one
transaction: a conditional `UPDATE ... WHERE status = ...` and its event together, under
SQLite's write lock (`BEGIN IMMEDIATE`), so two approvers racing, an approval racing the
expiry, or two gateways consuming the same approval cannot both win, whether they share a
process or not. Pending requests live in the file, so they survive a restart of the gateway
and are seen by the CLI and any other process that opens it.

The methods block (SQLite); the `a`-prefixed twins run them in a worker thread for the
gateway's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bastion.config.keys import ensure_private_file
from bastion.guard.approval.errors import (
    ApprovalAlreadyUsed,
    ApprovalError,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalStoreError,
)
from bastion.guard.approval.request import (
    STATUSES,
    ApprovalEvent,
    ApprovalRequest,
    Status,
    Step,
    check_reason,
)

STORE_FILE = "approvals.sqlite3"
#: Most rows one listing returns.
MAX_LIST = 1000
_SCHEMA = (f"""
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, principal TEXT NOT NULL, binding TEXT NOT NULL,
    agent TEXT, upstream TEXT NOT NULL, tool TEXT NOT NULL, upstream_tool TEXT NOT NULL,
    arguments TEXT NOT NULL, arguments_sha256 TEXT NOT NULL, arguments_shown TEXT NOT NULL,
    policy_version TEXT NOT NULL, approver_roles TEXT NOT NULL,
    approver_subjects TEXT NOT NULL, self_approval INTEGER NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    decided_by TEXT, reason TEXT, decided_at REAL, executed_at REAL,
    result_status TEXT, result_sha256 TEXT)""",
    "CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals (status, expires_at)",
    """CREATE TABLE IF NOT EXISTS approval_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, approval_id TEXT NOT NULL, step TEXT NOT NULL,
    actor TEXT, reason TEXT, at REAL NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS approval_events_by_id ON approval_events (approval_id, seq)")
_COLUMNS = ("id", "rule", "principal", "binding", "agent", "upstream", "tool", "upstream_tool",
            "arguments", "arguments_sha256", "arguments_shown", "policy_version",
            "approver_roles", "approver_subjects", "self_approval", "created_at", "expires_at",
            "status", "decided_by", "reason", "decided_at", "executed_at", "result_status",
            "result_sha256")
_JSON_COLUMNS = frozenset({"principal", "arguments", "arguments_shown", "approver_roles",
                           "approver_subjects", "decided_by"})
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM approvals"
_EXPIRY_ACTOR = {"system": "expiry"}


class ApprovalStore:
    """The SQLite file of approvals at `path` (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ApprovalStore:
        return cls(state_dir / STORE_FILE)

    # -- writing ---------------------------------------------------------------------------

    def create(self, request: ApprovalRequest) -> ApprovalRequest:
        """Store a new pending request and its `requested` event."""
        if request.status != "pending":
            raise ValueError("a new approval request is pending")
        row = _row(request)
        with self._transaction() as db:
            db.execute(f"INSERT INTO approvals ({', '.join(_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_COLUMNS))})", row)
            _event(db, request.id, "requested", request.principal, None, request.created_at,
                   {"rule": request.rule, "upstream": request.upstream, "tool": request.tool,
                    "arguments_sha256": request.arguments_sha256,
                    "policy_version": request.policy_version,
                    "expires_at": request.expires_at})
        return request

    def decide(self, approval_id: str, status: Status, actor: dict[str, Any],
               reason: str | None = None, *, now: float | None = None) -> ApprovalRequest:
        """Approve or deny a pending, unexpired request; `ApprovalNotPending` when another
        decision, the expiry or a withdrawal came first."""
        if status not in ("approved", "denied"):
            raise ValueError(f"a decision approves or denies, not {status!r}")
        return self._move(approval_id, "pending", status, status, actor, check_reason(reason),
                          now, decided=True)

    def withdraw(self, approval_id: str, actor: dict[str, Any] | None,
                 reason: str | None = None, *, now: float | None = None) -> ApprovalRequest:
        """The requester gave up (the client cancelled): a pending request closes."""
        return self._move(approval_id, "pending", "withdrawn", "withdrawn", actor,
                          check_reason(reason), now, decided=False)

    def consume(self, approval_id: str, *, binding: str, upstream: str, tool: str,
                arguments_sha256: str, policy_version: str,
                now: float | None = None) -> ApprovalRequest:
        """Use an approval for its call: once, only when approved and unexpired, and only when
        the caller's binding, upstream, tool, argument digest and policy version are the
        approved ones. The returned request holds the arguments to forward."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            request = _load(db, approval_id)
            refusal = _refusal(request, now, binding=binding, upstream=upstream, tool=tool,
                               arguments=arguments_sha256, policy_version=policy_version)
            if isinstance(refusal, ApprovalExpired):
                _expire(db, [approval_id], now)
            elif isinstance(refusal, ApprovalMismatch):
                _event(db, approval_id, "refused", None, f"{refusal.field} differs", now)
            elif refusal is None:
                db.execute("UPDATE approvals SET status = 'executed', executed_at = ? "
                           "WHERE id = ? AND status = 'approved'", (now, approval_id))
                _event(db, approval_id, "executed", request.principal, None, now)
        # Raised after the commit, so an expiry or a refusal stays in the audit trail.
        if refusal is not None:
            raise refusal
        return replace(request, status="executed", executed_at=now)

    def record_result(self, approval_id: str, result_status: str, result_sha256: str | None,
                      *, now: float | None = None) -> ApprovalRequest:
        """How the approved call ended (once, after `consume`)."""
        if result_status not in ("ok", "error"):
            raise ValueError(f"a result status is 'ok' or 'error', not {result_status!r}")
        now = time.time() if now is None else now
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE approvals SET result_status = ?, result_sha256 = ? WHERE id = ? AND "
                "status = 'executed' AND result_status IS NULL",
                (result_status, result_sha256, approval_id)).rowcount
            if changed:
                _event(db, approval_id, "result", None, None, now,
                       {"status": result_status, "sha256": result_sha256})
            request = _load(db, approval_id)
        if not changed:
            raise ApprovalNotApproved(request.status if request.status != "executed"
                                      else "executed with a result already recorded")
        return request

    def expire_due(self, now: float | None = None) -> list[str]:
        """Mark every pending or approved request past its expiry `expired` (a timeout is a
        deny); returns their ids."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            due = [row[0] for row in db.execute(
                "SELECT id FROM approvals WHERE status IN ('pending', 'approved') AND "
                "expires_at <= ? ORDER BY expires_at LIMIT ?", (now, MAX_LIST))]
            _expire(db, due, now)
        return due

    # -- reading ---------------------------------------------------------------------------

    def get(self, approval_id: str) -> ApprovalRequest:
        with self._connect() as db:
            return _load(db, approval_id)

    def list(self, status: Status | None = None, limit: int = 100) -> list[ApprovalRequest]:
        """Requests, newest first; `status` filters."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if not isinstance(limit, int) or not 0 < limit <= MAX_LIST:
            raise ValueError(f"limit must be between 1 and {MAX_LIST}")
        where, parameters = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._connect() as db:
            rows = db.execute(f"{_SELECT} {where} ORDER BY created_at DESC, id LIMIT ?",
                              (*parameters, limit)).fetchall()
        return [_request(row) for row in rows]

    def events(self, approval_id: str) -> list[ApprovalEvent]:
        """Every step of one approval, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT approval_id, step, actor, reason, at, detail FROM "
                              "approval_events WHERE approval_id = ? ORDER BY seq",
                              (approval_id,)).fetchall()
        return [ApprovalEvent(row[0], row[1], _json(row[2]), row[3], row[4], _json(row[5]))
                for row in rows]

    # -- async twins (for the event loop) ---------------------------------------------------

    async def acreate(self, request: ApprovalRequest) -> ApprovalRequest:
        return await asyncio.to_thread(self.create, request)

    async def aget(self, approval_id: str) -> ApprovalRequest:
        return await asyncio.to_thread(self.get, approval_id)

    async def alist(self, status: Status | None = None, limit: int = 100
                    ) -> list[ApprovalRequest]:
        return await asyncio.to_thread(self.list, status, limit)

    async def aevents(self, approval_id: str) -> list[ApprovalEvent]:
        return await asyncio.to_thread(self.events, approval_id)

    async def adecide(self, approval_id: str, status: Status, actor: dict[str, Any],
                      reason: str | None = None) -> ApprovalRequest:
        return await asyncio.to_thread(self.decide, approval_id, status, actor, reason)

    async def awithdraw(self, approval_id: str, actor: dict[str, Any] | None,
                        reason: str | None = None) -> ApprovalRequest:
        return await asyncio.to_thread(self.withdraw, approval_id, actor, reason)

    async def aconsume(self, approval_id: str, **binding: str) -> ApprovalRequest:
        return await asyncio.to_thread(lambda: self.consume(approval_id, **binding))

    async def arecord_result(self, approval_id: str, result_status: str,
                             result_sha256: str | None) -> ApprovalRequest:
        return await asyncio.to_thread(self.record_result, approval_id, result_status,
                                       result_sha256)

    async def aexpire_due(self) -> list[str]:
        return await asyncio.to_thread(self.expire_due)

    # -- internals ---------------------------------------------------------------------------

    def _move(self, approval_id: str, source: Status, target: Status, step: Step,
              actor: dict[str, Any] | None, reason: str | None, now: float | None, *,
              decided: bool) -> ApprovalRequest:
        now = time.time() if now is None else now
        with self._transaction() as db:
            if decided:
                moved = db.execute(
                    "UPDATE approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ? "
                    "WHERE id = ? AND status = ? AND expires_at > ?",
                    (target, _dump(actor), reason, now, approval_id, source, now)).rowcount
            else:
                moved = db.execute("UPDATE approvals SET status = ? WHERE id = ? AND status = ? "
                                   "AND expires_at > ?",
                                   (target, approval_id, source, now)).rowcount
            if moved:
                _event(db, approval_id, step, actor, reason, now)
            else:
                _expire(db, [approval_id], now)  # if it is due: recorded as what it is
            request = _load(db, approval_id)
        if not moved:
            raise ApprovalNotPending(request.status)
        return request

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._ensure_file()
        try:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ApprovalStoreError(f"cannot open the approval store {self.path}: {exc}"
                                     ) from None
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            yield db
        except sqlite3.DatabaseError as exc:
            raise ApprovalStoreError(f"the approval store {self.path} is damaged or locked "
                                     f"({exc}); pending approvals fail closed") from None
        finally:
            db.close()

    def _ensure_file(self) -> None:
        """Create the file (0600, in a 0700 directory) before SQLite does (it would use the
        umask), and take group and other permissions off an existing one; once per instance."""
        if self._ready:
            return
        try:
            ensure_private_file(self.path)
        except OSError as exc:
            raise ApprovalStoreError(f"cannot create the approval store {self.path}: "
                                     f"{exc.strerror or exc}; check the state directory"
                                     ) from None
        self._ready = True


def _refusal(request: ApprovalRequest, now: float, **given: str) -> ApprovalError | None:
    """Why `request` may not be consumed by a call with these facts (None: it may)."""
    if request.status == "executed":
        return ApprovalAlreadyUsed()
    if request.status == "expired" or (request.status == "approved"
                                       and now >= request.expires_at):
        return ApprovalExpired()
    if request.status != "approved":
        return ApprovalNotApproved(request.status)
    held = {"binding": request.binding, "upstream": request.upstream, "tool": request.tool,
            "arguments": request.arguments_sha256, "policy_version": request.policy_version}
    for name, value in given.items():
        if not hmac.compare_digest(held[name].encode(), value.encode()):
            return ApprovalMismatch(name)
    return None


def _expire(db: sqlite3.Connection, ids: list[str], now: float) -> None:
    for approval_id in ids:
        if db.execute("UPDATE approvals SET status = 'expired' WHERE id = ? AND status IN "
                      "('pending', 'approved') AND expires_at <= ?",
                      (approval_id, now)).rowcount:
            _event(db, approval_id, "expired", _EXPIRY_ACTOR, "not used before its expiry", now)


def _event(db: sqlite3.Connection, approval_id: str, step: Step, actor: dict[str, Any] | None,
           reason: str | None, at: float, detail: dict[str, Any] | None = None) -> None:
    db.execute("INSERT INTO approval_events (approval_id, step, actor, reason, at, detail) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (approval_id, step, _dump(actor), reason, at, _dump(detail or {})))


def _load(db: sqlite3.Connection, approval_id: str) -> ApprovalRequest:
    row = db.execute(f"{_SELECT} WHERE id = ?", (approval_id,)).fetchone()
    if row is None:
        raise ApprovalNotFound(approval_id)
    return _request(row)


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _row(request: ApprovalRequest) -> tuple[Any, ...]:
    values = []
    for column in _COLUMNS:
        value = getattr(request, column)
        if column in _JSON_COLUMNS:
            value = _dump(list(value) if isinstance(value, tuple) else value)
        values.append(value)
    return tuple(values)


def _request(row: tuple[Any, ...]) -> ApprovalRequest:
    fields = dict(zip(_COLUMNS, row, strict=True))
    for column in _JSON_COLUMNS:
        fields[column] = _json(fields[column])
    fields["approver_roles"] = tuple(fields["approver_roles"])
    fields["approver_subjects"] = tuple(fields["approver_subjects"])
    fields["self_approval"] = bool(fields["self_approval"])
    return ApprovalRequest(**fields)
