"""Compiled approval rules: does this call need a person, and who may be that person?

Matching is the policy's own (`CompiledRule`: principals, targets, classes, argument
constraints, hours), so an approval rule reads exactly like a policy allow rule; the first
rule that matches applies. Tool classes come from the policy's `ClassCache`, so approvals and
the policy agree on what is destructive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.config.approvals import ApprovalsConfig
from bastion.guard.policy.classes import ClassCache
from bastion.guard.policy.rules import POSSIBLY, CompiledRule, Target
from bastion.protocol.principal import Principal


@dataclass(frozen=True, slots=True)
class MatchedRule:
    """The approval rule a call falls under, with what an approval under it needs."""

    name: str
    #: Seconds a request stays open.
    expiry: int
    approver_roles: tuple[str, ...]
    approver_subjects: tuple[str, ...]
    self_approval: bool


class ApprovalRules:
    """`config.rules`, compiled once."""

    def __init__(self, config: ApprovalsConfig, classes: ClassCache | None = None) -> None:
        self.classes = classes if classes is not None else ClassCache("verify")
        self._rules = tuple(
            (CompiledRule(index, rule), MatchedRule(
                rule.name, config.expiry_of(rule), tuple(sorted(rule.approvers.roles)),
                tuple(sorted(rule.approvers.subjects)), rule.self_approval))
            for index, rule in enumerate(config.rules))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def match(self, principal: Principal, target: Target, arguments: Mapping[str, Any], *,
              now: datetime | None = None) -> MatchedRule | None:
        """The first rule matching this call, or None when it needs nobody's approval."""
        if not isinstance(arguments, Mapping):
            raise ValueError(f"arguments must be a JSON object, not {type(arguments).__name__}")
        if not self._rules:
            return None
        classes = self.classes.of(target.kind, target.upstream, target.definition).classes
        for compiled, matched in self._rules:
            what = compiled.who_fails(principal) or compiled.what_fails(target, classes)
            # POSSIBLY (only a concrete call could tell) counts as a match: fail closed.
            if what is not None and what != POSSIBLY:
                continue
            if compiled.condition_fails(arguments, now) is None:
                return matched
        return None
