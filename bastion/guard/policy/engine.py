"""The one decision function: may this principal see, and use, this target with these arguments?

`PolicyEngine.decide` answers both questions the gateway asks, so list filtering and call
enforcement can never drift apart (the Kong 3.13.0.1 bug, where `tools/list` showed tools the
ACL denied):

- a *call* (`arguments` given, `{}` when there are none): any matching deny rule wins; else
  the first matching allow rule; else the default. Conditions (argument constraints, hours)
  are checked.
- a *listing* (`arguments=None`): "could some call be allowed?". A conditional allow rule
  counts as possibly allowing, and a conditional deny rule hides nothing (only a call can
  tell whether its conditions hold).

Every decision carries `visible`: False when the principal may not even know the target
exists (an unconditional deny, or nothing that could allow it under a default deny); the
guard then answers as for an unknown name. `visible` is the listing answer, so a call the
list showed is at worst refused, and one it hid is unknown.

Rules are compiled once; a decision is a loop of set and regex tests (tens of µs for dozens
of rules), plus jsonschema-rs for rules with `args`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from bastion.config.policy import DEFAULT_RULE, Effect, PolicyConfig
from bastion.guard.policy.classes import ClassCache, ToolClasses
from bastion.guard.policy.rules import POSSIBLY, CompiledRule, Target
from bastion.protocol.principal import Principal

Outcome = Literal["matched", "not matched", "conditions fail", "per call"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy said about one target, and why."""

    allowed: bool
    #: Whether the principal may know the target exists (list it; be told "denied").
    visible: bool
    effect: Effect
    #: The deciding rule's name, or "default".
    rule: str
    #: One sentence, without argument values (it reaches denials and the audit trail).
    reason: str
    target: Target
    policy_version: str

    def for_audit(self) -> dict[str, Any]:
        return {"effect": self.effect, "allowed": self.allowed, "visible": self.visible,
                "rule": self.rule, "reason": self.reason, "target": self.target.for_audit(),
                "policy_version": self.policy_version}


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule fared in a decision (for `bastion policy explain`)."""

    name: str
    effect: Effect
    outcome: Outcome
    why: str


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    classes: ToolClasses
    default: Effect
    rules: tuple[RuleTrace, ...]


class PolicyEngine:
    """A compiled policy (see the module doc). `default` is the effective default: see
    `PolicyConfig.effective_default`."""

    def __init__(self, config: PolicyConfig, *, default: Effect) -> None:
        self.config = config
        self.default: Effect = default
        self.rules = tuple(CompiledRule(index, rule) for index, rule in enumerate(config.rules))
        self.classes = ClassCache(config.annotations, config.annotations_by_upstream)
        canonical = orjson.dumps({"default": default, "policy": config.model_dump(
            mode="json", by_alias=True)}, option=orjson.OPT_SORT_KEYS)
        #: Names the policy a decision came from in the audit trail.
        self.version = hashlib.sha256(canonical).hexdigest()[:16]

    def decide(self, principal: Principal, target: Target,
               arguments: Mapping[str, Any] | None = None, *,
               now: datetime | None = None) -> Decision:
        """The decision for a call (`arguments`, `{}` if none) or a listing (None)."""
        return self._evaluate(principal, target, arguments, now, None)

    def explain(self, principal: Principal, target: Target,
                arguments: Mapping[str, Any] | None = None, *,
                now: datetime | None = None) -> Explanation:
        """`decide`, with how every rule fared."""
        trace: list[RuleTrace] = []
        decision = self._evaluate(principal, target, arguments, now, trace)
        classes = self.classes.of(target.kind, target.upstream, target.definition)
        return Explanation(decision, classes, self.default, tuple(trace))

    def _evaluate(self, principal: Principal, target: Target,
                  arguments: Mapping[str, Any] | None, now: datetime | None,
                  trace: list[RuleTrace] | None) -> Decision:
        listing = arguments is None
        classes = self.classes.of(target.kind, target.upstream, target.definition).classes
        hidden_by = denied_by = allowed_by = may_allow = near = None
        near_why = ""
        for rule in self.rules:
            why = rule.who_fails(principal) or rule.what_fails(target, classes)
            if why is not None and why != POSSIBLY:
                _note(trace, rule, "not matched", why)
                continue
            if why is None and not rule.has_conditions:
                _note(trace, rule, "matched", "")
                if rule.effect == "deny":
                    hidden_by = hidden_by or rule
                    if trace is None:
                        break  # an unconditional deny decides; nothing after can change it
                else:
                    may_allow = may_allow or rule
                    allowed_by = allowed_by or rule
                continue
            if rule.effect == "allow":
                may_allow = may_allow or rule
            if listing:
                _note(trace, rule, "per call", "its conditions are checked per call")
                continue
            # A template (not a URI) named in a call: only a deny may match it (fail closed).
            failure = (rule.condition_fails(arguments, now) if why is None or rule.effect == "deny"
                       else "only a concrete resource URI can match it")
            if failure is not None:
                _note(trace, rule, "conditions fail", failure)
                if rule.effect == "allow" and near is None:
                    near, near_why = rule, failure
                continue
            _note(trace, rule, "matched", rule.conditions_text())
            if rule.effect == "deny":
                denied_by = denied_by or rule
            else:
                allowed_by = allowed_by or rule
        return self._conclude(target, listing, hidden_by, denied_by, allowed_by, may_allow,
                              near, near_why)

    def _conclude(self, target: Target, listing: bool, hidden_by: CompiledRule | None,
                  denied_by: CompiledRule | None, allowed_by: CompiledRule | None,
                  may_allow: CompiledRule | None, near: CompiledRule | None,
                  near_why: str) -> Decision:
        def decision(allowed: bool, visible: bool, rule: str, reason: str) -> Decision:
            return Decision(allowed, visible, "allow" if allowed else "deny", rule, reason,
                            target, self.version)

        if hidden_by is not None:
            return decision(False, False, hidden_by.name, _rule_reason(hidden_by))
        visible = may_allow is not None or self.default == "allow"
        if listing:
            if may_allow is not None:
                reason = _rule_reason(may_allow) if not may_allow.has_conditions else \
                    "some calls may be allowed (its conditions are checked per call)"
                return decision(True, True, may_allow.name, reason)
            if visible:
                return decision(True, True, DEFAULT_RULE, "no rule allows it; the default is allow")
            return decision(False, False, DEFAULT_RULE, "no rule allows it; the default is deny")
        if denied_by is not None:
            return decision(False, visible, denied_by.name, _rule_reason(denied_by))
        if allowed_by is not None:
            return decision(True, True, allowed_by.name, _rule_reason(allowed_by))
        if self.default == "allow":
            return decision(True, True, DEFAULT_RULE, "no rule decided; the default is allow")
        if near is not None:
            return decision(False, visible, near.name,
                            f"{near_why}, and no other rule allows it")
        return decision(False, visible, DEFAULT_RULE, "no rule allows it; the default is deny")


def _rule_reason(rule: CompiledRule) -> str:
    """Why a rule that matched decided (read after "allowed/denied by rule 'x': ")."""
    return rule.conditions_text() or "the rule matches (it has no conditions)"


def _note(trace: list[RuleTrace] | None, rule: CompiledRule, outcome: Outcome,
          why: str) -> None:
    if trace is not None:
        trace.append(RuleTrace(rule.name, rule.effect, outcome, why))
