"""What an approval is: one exact call, bound to who made it, and every step it went through.

An `ApprovalRequest` binds the principal (its `binding`: issuer, subject and agent), the
upstream, the tool (the public name and the upstream's own), the exact arguments and their
SHA-256 over canonical JSON (`bastion.guard.pin.canonical`), the policy version and the expiry.
The gateway forwards the stored arguments, never a new copy, so what runs is what was approved.

Statuses: `pending` -> `approved` | `denied` | `expired` | `withdrawn`; `approved` ->
`executed` (once) | `expired`. Each change is an `ApprovalEvent` for the audit trail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.guard.approval.errors import ApprovalTooLarge
from bastion.guard.pin.canonical import CanonicalError, canonical_json

Status = Literal["pending", "approved", "denied", "expired", "withdrawn", "executed"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "denied", "expired", "withdrawn",
                                "executed")
#: The steps an event records (a status, plus `result` and a refused `consume`).
Step = Literal["requested", "approved", "denied", "expired", "withdrawn", "executed", "result",
               "refused"]
#: The largest arguments (canonical JSON bytes) an approval holds.
MAX_ARGUMENT_BYTES = 256 * 1024
#: The longest reason an approver or the system may give.
MAX_REASON = 1000


def arguments_sha256(arguments: dict[str, Any]) -> str:
    """The SHA-256 (hex) of the canonical JSON of a call's arguments; `ApprovalTooLarge` past
    `MAX_ARGUMENT_BYTES`, ValueError when they are not JSON."""
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments must be a JSON object, not {type(arguments).__name__}")
    try:
        document = canonical_json(arguments)
    except CanonicalError as exc:
        raise ValueError(f"the arguments are not canonical JSON: {exc}") from None
    if len(document) > MAX_ARGUMENT_BYTES:
        raise ApprovalTooLarge(len(document), MAX_ARGUMENT_BYTES)
    return hashlib.sha256(document).hexdigest()


def check_reason(reason: str | None) -> str | None:
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise ValueError(f"a reason is text of at most {MAX_REASON} characters")
    return reason


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One approval (see the module doc). Times are epoch seconds."""

    id: str
    rule: str
    #: The requester: `Principal.for_audit()`.
    principal: dict[str, Any]
    #: `Principal.binding` of the requester: the call must come from it.
    binding: str
    #: The agent (the requester's client id).
    agent: str | None
    upstream: str
    #: The public (namespaced) tool name, and the upstream's own name for it.
    tool: str
    upstream_tool: str
    #: Exactly what was approved, and what is forwarded.
    arguments: dict[str, Any]
    arguments_sha256: str
    #: `arguments` with secrets redacted: what approvers are shown.
    arguments_shown: dict[str, Any]
    policy_version: str
    #: Who may decide: roles and subjects, and whether the requester may.
    approver_roles: tuple[str, ...]
    approver_subjects: tuple[str, ...]
    self_approval: bool
    created_at: float
    expires_at: float
    status: Status = "pending"
    #: The approver (`for_audit()`), or None.
    decided_by: dict[str, Any] | None = None
    reason: str | None = None
    decided_at: float | None = None
    executed_at: float | None = None
    #: How the call ended ("ok" or "error") and the SHA-256 of its canonical result.
    result_status: str | None = None
    result_sha256: str | None = None

    def is_open(self, now: float) -> bool:
        """Pending and not yet past its expiry."""
        return self.status == "pending" and now < self.expires_at

    def for_display(self) -> dict[str, Any]:
        """Everything but the unredacted arguments: for approvers, the API and webhooks."""
        return {"id": self.id, "rule": self.rule, "who": self.principal, "agent": self.agent,
                "upstream": self.upstream, "tool": self.tool,
                "upstream_tool": self.upstream_tool, "arguments": self.arguments_shown,
                "arguments_sha256": self.arguments_sha256,
                "policy_version": self.policy_version, "created_at": self.created_at,
                "expires_at": self.expires_at, "status": self.status,
                "decided_by": self.decided_by, "reason": self.reason,
                "decided_at": self.decided_at, "executed_at": self.executed_at,
                "result_status": self.result_status, "result_sha256": self.result_sha256}


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """One step of one approval, for the audit trail."""

    approval_id: str
    step: Step
    #: Who took the step (`for_audit()`), or `{"system": ...}` for expiry.
    actor: dict[str, Any] | None
    reason: str | None
    at: float
    detail: dict[str, Any] = field(default_factory=dict)
