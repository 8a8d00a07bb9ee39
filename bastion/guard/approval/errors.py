"""The typed errors of approvals: each says which check failed, so the gateway, the REST API
and the CLI can each answer in their own words without parsing messages."""

from __future__ import annotations


class ApprovalError(Exception):
    """Base of every approval error."""


class ApprovalNotFound(ApprovalError):
    def __init__(self, approval_id: str) -> None:
        self.approval_id = approval_id
        super().__init__(f"no approval {approval_id!r}; see `bastion approvals list`")


class ApprovalStoreError(ApprovalError):
    """The approvals file cannot be read or written; the message says why and what to do."""


class ApprovalTooLarge(ApprovalError):
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"the call's arguments are {size} bytes of canonical JSON, more than "
                         f"the {limit} an approval may hold; the call is refused")


class ApprovalMismatch(ApprovalError):
    """The call differs from the approved one in `field` (binding, upstream, tool, arguments,
    policy_version): what is forwarded must be exactly what was approved."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"the call does not match its approval: its {field} differs from what "
                         "was approved; ask for a new approval")


class ApprovalNotApproved(ApprovalError):
    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"the approval is {status}, not approved; the call may not run")


class ApprovalExpired(ApprovalError):
    def __init__(self) -> None:
        super().__init__("the approval expired before it was used; ask for a new one")


class ApprovalAlreadyUsed(ApprovalError):
    def __init__(self) -> None:
        super().__init__("the approval was already used; an approval allows one call")


class ApprovalNotPending(ApprovalError):
    """A decision on a request that is no longer open (decided, expired, withdrawn)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"the approval is already {status}; only a pending one can be decided")


class NotAnApprover(ApprovalError):
    def __init__(self, subject: str, rule: str) -> None:
        self.subject, self.rule = subject, rule
        super().__init__(f"{subject!r} may not decide requests of approval rule {rule!r}; "
                         "its approvers are set in approvals.rules[].approvers")


class SelfApproval(ApprovalError):
    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"{subject!r} requested this call and may not approve it; another "
                         "approver must")
