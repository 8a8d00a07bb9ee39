"""Human approvals: rules that ask for a person, requests bound to the exact call, a durable
store, the state machine, and the webhook that tells approvers.

`ApprovalService` is what the gateway stage, the admin API, the web page and the CLI use;
`ApprovalStore` is the SQLite file under the state directory. The configuration models are in
`bastion.config.approvals`.
"""

from bastion.guard.approval.errors import (
    ApprovalAlreadyUsed,
    ApprovalError,
    ApprovalExpired,
    ApprovalMismatch,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalStoreError,
    ApprovalTooLarge,
    NotAnApprover,
    SelfApproval,
)
from bastion.guard.approval.request import (
    STATUSES,
    ApprovalEvent,
    ApprovalRequest,
    Status,
    arguments_sha256,
)
from bastion.guard.approval.rules import ApprovalRules, MatchedRule
from bastion.guard.approval.service import ApprovalService, new_approval_id
from bastion.guard.approval.store import STORE_FILE, ApprovalStore
from bastion.guard.approval.webhook import (
    SIGNATURE_HEADER,
    Webhook,
    json_payload,
    sign,
    slack_payload,
)

__all__ = [
    "SIGNATURE_HEADER",
    "STATUSES",
    "STORE_FILE",
    "ApprovalAlreadyUsed",
    "ApprovalError",
    "ApprovalEvent",
    "ApprovalExpired",
    "ApprovalMismatch",
    "ApprovalNotApproved",
    "ApprovalNotFound",
    "ApprovalNotPending",
    "ApprovalRequest",
    "ApprovalRules",
    "ApprovalService",
    "ApprovalStore",
    "ApprovalStoreError",
    "ApprovalTooLarge",
    "MatchedRule",
    "NotAnApprover",
    "SelfApproval",
    "Status",
    "Webhook",
    "arguments_sha256",
    "json_payload",
    "new_approval_id",
    "sign",
    "slack_payload",
]
