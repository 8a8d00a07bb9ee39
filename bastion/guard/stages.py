"""The guard stages by the names the configuration uses (`guard.stages`)."""

from __future__ import annotations

from bastion.guard.approval.stage import approval_stage
from bastion.guard.header_body import header_body_stage
from bastion.guard.pin.stage import pin_stage
from bastion.guard.pipeline import StageFactory
from bastion.guard.policy import policy_stage
from bastion.guard.ratelimit import ratelimit_stage
from bastion.guard.redact.stage import redact_stage
from bastion.guard.scan.stage import scan_stage

#: Each factory gets the gateway (its `header_params_of`, catalogue and so on).
STAGES: dict[str, StageFactory] = {
    "header_body": header_body_stage,
    "policy": policy_stage,
    "ratelimit": ratelimit_stage,
    "pin": pin_stage,
    "approval": approval_stage,
    "scan": scan_stage,
    "redact": redact_stage,
}
