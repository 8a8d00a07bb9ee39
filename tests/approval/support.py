"""Small builders shared by the approval tests: configurations, stores, services, calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.config.approvals import ApprovalsConfig
from bastion.guard.approval import ApprovalService, ApprovalStore
from tests.policy.support import person, tool

ISOLATE = tool("edr__isolate_host", destructiveHint=True)
SEARCH = tool("siem__search", readOnlyHint=True)
BOB = person("bob", "responder", client="agent-1")
BOB_OTHER_AGENT = person("bob", "responder", "soc-lead", client="agent-2")
CAROL = person("carol", "soc-lead")
MALLORY = person("mallory", "analyst")
ARGS = {"host": "ws-042", "reason": "beaconing", "token": "ghp_" + "a1B2c3D4" * 5}
RULE: dict[str, Any] = {"name": "isolation-needs-a-second-person",
                        "tools": ["edr__isolate_host"], "classes": ["destructive"],
                        "roles": ["responder"], "approvers": {"roles": ["soc-lead"]},
                        "expiry": "10m"}


def config(rules: list[dict[str, Any]] | None = None, **fields: Any) -> ApprovalsConfig:
    return ApprovalsConfig.model_validate({"rules": [RULE] if rules is None else rules,
                                          **fields})


def service(tmp_path: Path, rules: list[dict[str, Any]] | None = None, **kwargs: Any
            ) -> ApprovalService:
    fields = kwargs.pop("fields", {})
    return ApprovalService(config(rules, **fields),
                           ApprovalStore.in_state_dir(tmp_path / "state"), **kwargs)
