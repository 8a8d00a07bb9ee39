"""`bastion approvals list|show|approve|deny`: decide approvals from the gateway host.

For operators on the gateway host: the command opens `<state_dir>/approvals.sqlite3` of the
configuration given with `--config` directly, with no token and no network; a gateway
waiting on a request sees the decision within about a second. Whoever can run it can already
write that file, so the command adds no power: it only keeps the rules honest. The approver
is the local operating-system user (`issuer bastion:local`) holding the roles of
`--as-roles` (default: `auth.local_roles`); the approval rule's `approvers` decide as
everywhere else (a role, or a subject equal to the local user name). Remote approvers use the
admin API or the web page (`bastion.admin`).

Exit codes: 0 done; 1 refused or failed (not an approver, self-approval, unknown id, already
decided, unreadable store); 2 bad configuration or options.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bastion.admin.approval_page import actor_text as _who
from bastion.admin.approval_page import utc_text as _when
from bastion.commands.keys import ConfigOption, fail, load, split_values
from bastion.config import BastionConfig, resolve_state_dir
from bastion.guard.approval import (
    STATUSES,
    ApprovalError,
    ApprovalRequest,
    ApprovalService,
    ApprovalStore,
)
from bastion.guard.approval.store import MAX_LIST
from bastion.protocol.principal import local_principal

console = Console()
T = TypeVar("T")

approvals_app = typer.Typer(help="Decide the calls waiting for a person (on the gateway host).",
                            no_args_is_help=True, add_completion=False)
RolesOption = Annotated[list[str] | None, typer.Option(
    "--as-roles", help="Decide with these roles (repeat or a,b; default: auth.local_roles).")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (kept in the record).")]


def _service(config: BastionConfig) -> ApprovalService:
    return ApprovalService(config.approvals, ApprovalStore.in_state_dir(resolve_state_dir(config)))


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run the service call; its typed errors become one red line and exit 1."""
    try:
        return asyncio.run(work)
    except ApprovalError as exc:
        fail(str(exc), 1)
    except ValueError as exc:
        fail(str(exc), 2)


def list_approvals(
    status: Annotated[str, typer.Option("--status", help="pending, all, or one of: "
                                        + ", ".join(STATUSES))] = "pending",
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIST)] = 50,
    config_file: ConfigOption = None,
) -> None:
    """List approvals, newest first (pending ones by default)."""
    if status != "all" and status not in STATUSES:
        fail(f"--status must be all or one of: {', '.join(STATUSES)}", 2)
    service = _service(load(config_file))
    found = _run(service.list(None if status == "all" else status, limit))  # type: ignore[arg-type]
    if not found:
        console.print(f"No {'' if status == 'all' else status + ' '}approvals.")
        return
    table = Table("ID", "Tool", "Requested by", "Agent", "Rule", "Status", "Expires")
    for item in found:
        table.add_row(item.id, item.tool, _who(item.principal), item.agent or "-", item.rule,
                      item.status, _when(item.expires_at))
    console.print(table)


def show(approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
         config_file: ConfigOption = None) -> None:
    """Show one approval: the call (arguments redacted), who asked, and every step."""
    service = _service(load(config_file))

    async def both() -> tuple[ApprovalRequest, list[Any]]:
        return await service.get(approval_id), await service.events(approval_id)

    request, events = _run(both())
    facts = Table(show_header=False)
    for name, value in (
            ("ID", request.id), ("Tool", request.tool),
            ("Upstream", f"{request.upstream} (its tool {request.upstream_tool})"),
            ("Requested by", _who(request.principal)), ("Agent", request.agent or "-"),
            ("Rule", request.rule), ("Status", request.status),
            ("Requested", _when(request.created_at)), ("Expires", _when(request.expires_at)),
            ("Decided by", _who(request.decided_by)), ("Reason", request.reason or "-"),
            ("Arguments (redacted)", orjson.dumps(request.arguments_shown,
                                                  option=orjson.OPT_INDENT_2).decode()),
            ("Arguments SHA-256", request.arguments_sha256)):
        facts.add_row(name, value)
    console.print(facts)
    trail = Table("When", "Step", "By", "Reason", title="Events")
    for event in events:
        trail.add_row(_when(event.at), event.step, _who(event.actor), event.reason or "-")
    console.print(trail)


def _decide(approval_id: str, approve: bool, reason: str | None, roles: list[str] | None,
            config_file: Path | None) -> None:
    config = load(config_file)
    chosen = split_values(roles) if roles else list(config.auth.local_roles)
    approver = local_principal(frozenset(chosen))
    service = _service(config)
    act = service.approve if approve else service.deny
    decided = _run(act(approval_id, approver, reason))
    console.print(f"{decided.id} is now [bold]{decided.status}[/bold] (by {approver.subject}).",
                  highlight=False)


def approve(approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
            reason: ReasonOption = None, roles: RolesOption = None,
            config_file: ConfigOption = None) -> None:
    """Approve a pending call: it may then run once, exactly as requested."""
    _decide(approval_id, True, reason, roles, config_file)


def deny(approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
         reason: ReasonOption = None, roles: RolesOption = None,
         config_file: ConfigOption = None) -> None:
    """Deny a pending call."""
    _decide(approval_id, False, reason, roles, config_file)


approvals_app.command("list")(list_approvals)
approvals_app.command("show")(show)
approvals_app.command("approve")(approve)
approvals_app.command("deny")(deny)


def register(app: typer.Typer) -> None:
    """Add `approvals` to the `bastion` app."""
    app.add_typer(approvals_app, name="approvals")


__all__ = ["approvals_app", "register"]
