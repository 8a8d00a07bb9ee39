"""Authorization policy: default deny, ordered rules, one decision function for lists and calls.

`PolicyEngine.decide(principal, target, arguments)` is the decision; `policy_stage` is the
guard stage built from `config.policy`; `explain` renders a decision rule by rule for
`bastion policy explain`. The configuration models are in `bastion.config.policy`.
"""

from bastion.guard.policy.classes import ToolClasses, tool_classes
from bastion.guard.policy.engine import Decision, Explanation, PolicyEngine, RuleTrace
from bastion.guard.policy.errors import POLICY_DENIED, PolicyDenied
from bastion.guard.policy.rules import Target
from bastion.guard.policy.stage import PolicyOff, PolicyStage, policy_stage, target_of

__all__ = [
    "POLICY_DENIED",
    "Decision",
    "Explanation",
    "PolicyDenied",
    "PolicyEngine",
    "PolicyOff",
    "PolicyStage",
    "RuleTrace",
    "Target",
    "ToolClasses",
    "policy_stage",
    "target_of",
    "tool_classes",
]
