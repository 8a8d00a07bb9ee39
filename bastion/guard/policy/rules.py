"""Compiled policy rules: what a request targets, and whether one rule matches it.

A rule is compiled once from its configuration (`bastion.config.policy.RuleConfig`): identity
fields become frozensets, globs one regex per field, `args` a jsonschema-rs validator, `hours`
a `TimeWindow`. Matching has three steps, cheapest first, each answering None (it holds) or a
short sentence saying why not (shown by `bastion policy explain` and in denials):

1. `who_fails(principal)`: subjects, clients, roles, groups, scopes, auth methods, claims;
2. `what_fails(target, classes)`: upstream, name or URI, classes; or `POSSIBLY` when only a
   call can tell (a resource glob against a URI template);
3. `condition_fails(arguments, now)`: the arguments and the time window, which only a call
   has. A rule with conditions (or a `POSSIBLY` match) is *conditional*.

Sentences never hold argument values: they go into denials and the audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jsonschema_rs

from bastion.config.policy import (
    DAYS,
    HoursConfig,
    RuleConfig,
    args_validator,
    clock_minutes,
    compile_globs,
    literal_prefix,
    time_zone,
)
from bastion.protocol.principal import Principal

Kind = Literal["tool", "prompt", "resource", "template"]
#: The result of `what_fails` when only the concrete call can tell.
POSSIBLY = "possibly"
_MAX_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is about: a tool, a prompt, a resource URI or a resource template."""

    kind: Kind
    #: The public tool or prompt name, the resource URI, or the URI template.
    name: str
    upstream: str
    #: The definition clients see (tools: its annotations and title feed the classes).
    definition: Mapping[str, Any] = field(default_factory=dict)
    #: For a resource read through a template: the template's `uriTemplate`.
    template: str | None = None

    def for_audit(self) -> dict[str, Any]:
        record = {"kind": self.kind, "name": self.name, "upstream": self.upstream}
        if self.template is not None:
            record["template"] = self.template
        return record


def _shown(values: Any) -> str:
    values = sorted(values)
    more = len(values) - _MAX_SHOWN
    return ", ".join(values[:_MAX_SHOWN]) + (f" (+{more} more)" if more > 0 else "")


class TimeWindow:
    """A rule's `hours`: the local days and times it applies (see `HoursConfig`)."""

    __slots__ = ("days", "end", "start", "text", "zone")

    def __init__(self, hours: HoursConfig) -> None:
        self.days = frozenset(DAYS.index(day) for day in hours.days)
        self.start = clock_minutes(hours.start)
        self.end = clock_minutes(hours.to, end=True)
        self.zone = time_zone(hours.tz)
        days = "every day" if len(self.days) == 7 else ",".join(hours.days)
        self.text = (f"{days} {self.start // 60:02d}:{self.start % 60:02d}-"
                     f"{self.end // 60:02d}:{self.end % 60:02d} {hours.tz}")

    def contains(self, moment: datetime) -> bool:
        if moment.tzinfo is None:  # a naive time is UTC, never the host's zone
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Past midnight: the evening belongs to today, the morning to yesterday's window.
        if minute >= self.start:
            return day in self.days
        return minute < self.end and (local - timedelta(days=1)).weekday() in self.days


class CompiledRule:
    """One rule, ready to match (see the module doc)."""

    def __init__(self, index: int, config: RuleConfig) -> None:
        self.index = index
        self.name = config.name
        self.effect = config.effect
        self.config = config
        self._identity = [(label, frozenset(values)) for label, values in (
            ("subjects", config.subjects), ("clients", config.clients),
            ("roles", config.roles), ("groups", config.groups), ("scopes", config.scopes),
            ("auth_methods", config.auth_methods)) if values]
        self._attributes = {claim: frozenset(values)
                            for claim, values in config.attributes.items()}
        self._upstreams = compile_globs(config.upstreams)
        names = {"tool": config.tools, "prompt": config.prompts, "resource": config.resources}
        # No kind named: the rule is about every kind (within its upstreams).
        self._any_kind = not any(names.values())
        self._names = {kind: compile_globs(globs) for kind, globs in names.items()}
        self._prefixes = tuple(literal_prefix(glob) for glob in config.resources)
        self.classes = frozenset(config.classes)
        self._args: jsonschema_rs.Validator | None = (
            args_validator(config.args) if config.args else None)
        self._args_schema = config.args
        self.window = TimeWindow(config.hours) if config.hours is not None else None
        self.has_conditions = self._args is not None or self.window is not None
        parts = []
        if self._args is not None:
            parts.append(f"its constraints on {_shown(repr(a) for a in config.args)} hold")
        if self.window is not None:
            parts.append(f"it is within its hours ({self.window.text})")
        self._conditions_text = " and ".join(parts)

    # -- who --------------------------------------------------------------------------------

    def who_fails(self, principal: Principal) -> str | None:
        for label, wanted in self._identity:
            held = _held(principal, label)
            if wanted.isdisjoint(held):
                return f"not in {label} [{_shown(wanted)}]"
        for claim, wanted in self._attributes.items():
            value = principal.attributes.get(claim)
            values = (value,) if isinstance(value, str) else value if isinstance(
                value, list | tuple | set | frozenset) else ()
            if wanted.isdisjoint(v for v in values if isinstance(v, str)):
                return f"claim {claim!r} is not in [{_shown(wanted)}]"
        return None

    # -- what -------------------------------------------------------------------------------

    def what_fails(self, target: Target, classes: frozenset[str]) -> str | None:
        if self._upstreams is not None and not self._upstreams.fullmatch(target.upstream):
            return f"upstream {target.upstream!r} is not in [{_shown(self.config.upstreams)}]"
        missing = self.classes - classes
        if missing:
            return f"the {target.kind} is not {_shown(missing)}"
        if self._any_kind:
            return None
        pattern = self._names["resource" if target.kind == "template" else target.kind]
        if pattern is None:
            return f"the rule is not about {target.kind}s"
        return self._name_matches(pattern, target)

    def _name_matches(self, pattern: re.Pattern[str], target: Target) -> str | None:
        if pattern.fullmatch(target.name):
            return None
        if target.template is not None and pattern.fullmatch(target.template):
            return None
        if target.kind == "template" and any(
                prefix.startswith(_template_prefix(target.name))
                or _template_prefix(target.name).startswith(prefix)
                for prefix in self._prefixes):
            # Some URI the template makes may match: a read decides (`POSSIBLY`).
            return POSSIBLY
        return f"{target.name!r} matches none of its {target.kind} globs"

    # -- conditions -------------------------------------------------------------------------

    def condition_fails(self, arguments: Mapping[str, Any], now: datetime | None) -> str | None:
        if self._args is not None and not self._args.is_valid(arguments):
            return self._args_problem(arguments)
        if self.window is not None and not self.window.contains(now or datetime.now(UTC)):
            return f"outside its hours ({self.window.text})"
        return None

    def conditions_text(self) -> str:
        """What the conditions are, for a decision that rests on them holding."""
        return self._conditions_text

    def _args_problem(self, arguments: Mapping[str, Any]) -> str:
        for error in self._args.iter_errors(arguments) if self._args is not None else ():
            path = list(error.schema_path)
            if path[:1] == ["required"]:
                missing = sorted(set(self._args_schema) - set(arguments))
                return f"argument {missing[0]!r} is missing (the rule constrains it)" \
                    if missing else "a constrained argument is missing"
            if len(path) >= 3 and path[0] == "properties":
                argument, keyword = path[1], path[2]
                constraint = self._args_schema.get(str(argument), {}).get(keyword)
                shown = f" {constraint!r}" if isinstance(constraint, str | int | float) \
                    and len(repr(constraint)) <= 200 else ""
                return f"argument {argument!r} fails its {keyword!r}{shown} constraint"
            return "the arguments are not an object"
        return "the arguments fail the rule's constraints"


def _held(principal: Principal, label: str) -> frozenset[str] | tuple[str, ...]:
    if label == "roles":
        return principal.roles
    if label == "groups":
        return principal.groups
    if label == "scopes":
        return principal.scopes
    value = {"subjects": principal.subject, "clients": principal.client_id,
             "auth_methods": principal.method}[label]
    return (value,) if value is not None else ()


def _template_prefix(template: str) -> str:
    return template.split("{", 1)[0]
