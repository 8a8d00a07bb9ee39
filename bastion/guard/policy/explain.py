"""A policy decision for people: the verdict, the deciding rule, and how every rule fared.

Used by `bastion policy explain`. Names and reasons come from configuration and from the
command line, so they are printed as plain text (never as Rich markup).
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bastion.guard.policy.engine import Explanation
from bastion.protocol.principal import Principal

_OUTCOME_STYLE = {"matched": "bold", "not matched": "dim", "conditions fail": "yellow",
                  "per call": "cyan"}


def _who(principal: Principal) -> str:
    parts = [principal.subject]
    if principal.client_id:
        parts.append(f"via client {principal.client_id}")
    if principal.roles:
        parts.append("roles " + ", ".join(sorted(principal.roles)))
    if principal.groups:
        parts.append("groups " + ", ".join(sorted(principal.groups)))
    return "; ".join(parts)


def render(explanation: Explanation, principal: Principal) -> RenderableType:
    """The verdict, the facts it rests on, and a table of every rule."""
    decision = explanation.decision
    target = decision.target
    verdict = Text("ALLOW" if decision.allowed else "DENY",
                   style="bold green" if decision.allowed else "bold red")
    verdict.append(Text(f"  {target.kind} {target.name!r} on upstream {target.upstream!r}, "
                        f"for {_who(principal)}", style="default"))
    classes = explanation.classes
    shown = ", ".join(sorted(classes.classes)) or "none"
    if classes.note:
        shown += f" ({classes.note})"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("rule", Text(decision.rule))
    facts.add_row("reason", Text(decision.reason))
    facts.add_row("visible", "yes: listed; a call may still be refused" if decision.visible
                  else "no: hidden from lists and answered as unknown")
    facts.add_row("classes", Text(shown))
    facts.add_row("default", explanation.default)
    facts.add_row("policy version", decision.policy_version)
    rules = Table(title="rules (a matching deny wins, else the first matching allow)",
                  title_justify="left")
    rules.add_column("#", justify="right")
    rules.add_column("rule", overflow="fold")
    rules.add_column("effect")
    rules.add_column("outcome")
    rules.add_column("why", overflow="fold", ratio=1)
    for index, trace in enumerate(explanation.rules):
        rules.add_row(str(index), Text(trace.name), trace.effect,
                      Text(trace.outcome, style=_OUTCOME_STYLE[trace.outcome]), Text(trace.why))
    if not explanation.rules:
        rules.add_row("", Text("(no rules: the default decides)", style="dim"), "", "", "")
    return Group(verdict, facts, rules)


def print_explanation(console: Console, explanation: Explanation, principal: Principal) -> None:
    console.print(render(explanation, principal))
