"""`bastion pin list|approve|diff|revoke`: review and approve the definitions upstreams offer.

`approve` and `diff` connect to the upstreams of the configuration given with `--config`
(as the gateway does: the same command line or URL, environment and credentials), list their
tools, prompts, resource templates and instructions, and compare each with its pin in
`<state_dir>/pins.sqlite3` and the file's `pins.approved`. `approve` shows what is new,
changed, renamed or revoked and pins it (all of it, or `--name`; it asks first unless
`--yes`); `diff` prints what changed, hidden characters made visible, and exits 1 when
anything is not approved (0 when all is, 2 on an error), so CI can run it. `list` shows the
pins without connecting; `revoke` withdraws one. Running gateways see changes within seconds.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.commands.keys import load
from bastion.commands.upstream_probe import UPSTREAM_ERRORS, Offerings, probe_upstream
from bastion.config import BastionConfig, UpstreamConfig, resolve_state_dir
from bastion.config.pins import PIN_KINDS, PinKind
from bastion.guard.pin import (
    PinChecker,
    PinRecord,
    PinStoreError,
    PinVerdict,
    instructions_definition,
    item_name,
    server_identity,
)
from bastion.guard.pin.checker import REFRESH_INTERVAL

console = Console()
errors = Console(stderr=True)
_STATUS_STYLES = {"approved": "green", "new": "yellow", "changed": "red", "renamed": "red",
                  "revoked": "red", "unverifiable": "red"}

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The configuration file: its upstreams, its pins: section, and the "
    "state_dir that holds pins.sqlite3.")]
ServerOption = Annotated[list[str] | None, typer.Option(
    "--server", "-s", help="Only this upstream (repeatable).")]
NameOption = Annotated[list[str] | None, typer.Option(
    "--name", "-n", help="Only the item of this name (repeatable; a template's uriTemplate).")]
KindOption = Annotated[str | None, typer.Option(
    "--kind", "-k", help="Only this kind: tool, prompt, template or instructions.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    # Text, not markup: a message may quote brackets from a definition or a file.
    errors.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


@dataclass(frozen=True, slots=True)
class LiveItem:
    """One definition an upstream offers now, and what its pin says."""

    upstream: str
    kind: PinKind
    name: str
    definition: dict[str, Any]
    verdict: PinVerdict


# -- the configuration ------------------------------------------------------------------------


def _checker(config: BastionConfig) -> PinChecker:
    """A strict checker over the store and the file's approvals (not loaded yet): the CLI
    only reports, it never trusts anything on first use."""
    try:
        return PinChecker.from_config(config.pins, config.mcp_servers.values(),
                                      resolve_state_dir(config), loopback=False, mode="strict")
    except ValueError as exc:
        _fail(str(exc))


def _load(checker: PinChecker) -> None:
    try:
        checker.load()
    except PinStoreError as exc:
        _fail(str(exc))


def _upstreams(config: BastionConfig, servers: list[str] | None) -> list[UpstreamConfig]:
    if not servers:
        return config.upstreams
    unknown = [name for name in servers if name not in config.mcp_servers]
    if unknown:
        _fail(f"no upstream named {', '.join(map(repr, unknown))} in the configuration; known: "
              f"{', '.join(config.mcp_servers) or '(none)'}")
    return [config.mcp_servers[name] for name in dict.fromkeys(servers)]


def _kind(kind: str | None) -> PinKind | None:
    if kind is not None and kind not in PIN_KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(PIN_KINDS)}, not {kind!r}")
    return kind  # type: ignore[return-value]


# -- the live definitions ---------------------------------------------------------------------


def _definitions(offered: Offerings) -> list[tuple[PinKind, dict[str, Any]]]:
    """What a pin covers: the instructions, tools, prompts and resource templates."""
    found: list[tuple[PinKind, dict[str, Any]]] = []
    if offered.instructions:
        found.append(("instructions", instructions_definition(offered.instructions)))
    found += [("tool", item) for item in offered.tools]
    found += [("prompt", item) for item in offered.prompts]
    found += [("template", item) for item in offered.templates]
    return found


async def _fetch(upstream: UpstreamConfig) -> list[tuple[PinKind, dict[str, Any]]]:
    return _definitions(await probe_upstream(upstream, resources=False))


async def _fetch_all(upstreams: list[UpstreamConfig]
                     ) -> list[list[tuple[PinKind, dict[str, Any]]] | BaseException]:
    return await asyncio.gather(*(_fetch(upstream) for upstream in upstreams),
                                return_exceptions=True)


def _review(config: BastionConfig, servers: list[str] | None, names: list[str] | None,
            kind: PinKind | None) -> tuple[PinChecker, list[LiveItem], bool]:
    """The live items of the selected upstreams with their verdicts, and whether every
    upstream could be reached (each failure is printed)."""
    checker = _checker(config)
    upstreams = _upstreams(config, servers)
    _load(checker)  # a damaged store is reported before anything is started
    fetched_all = asyncio.run(_fetch_all(upstreams))
    _load(checker)  # connecting may take longer than a snapshot stays trusted
    wanted = set(names or ())
    items: list[LiveItem] = []
    reached = True
    for upstream, fetched in zip(upstreams, fetched_all, strict=True):
        if isinstance(fetched, BaseException):
            if not isinstance(fetched, UPSTREAM_ERRORS):
                raise fetched
            reached = False
            reason = str(fetched) or type(fetched).__name__
            errors.print(Text(f"error: cannot list the definitions of upstream "
                              f"{upstream.name!r}: {reason}", style="red"), soft_wrap=True)
            continue
        server_id = checker.server_id(upstream.name)
        for item_kind, definition in fetched:
            name = item_name(item_kind, definition) if isinstance(definition, dict) else None
            if name is None:
                errors.print(Text(f"warning: upstream {upstream.name!r} lists a {item_kind} "
                                  "without a name; skipped", style="yellow"))
                continue
            if (kind is not None and item_kind != kind) or (wanted and name not in wanted):
                continue
            verdict = checker.check(item_kind, server_id, name, definition)
            items.append(LiveItem(upstream.name, item_kind, name, definition, verdict))
    return checker, items, reached


# -- output -----------------------------------------------------------------------------------


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container with an unnamed uid)
        return f"uid {os.getuid()}"


def _count(number: int) -> str:
    return f"{number} definition" + ("" if number == 1 else "s")


def _note(verdict: PinVerdict) -> str:
    """What the status alone does not say."""
    pinned = verdict.pinned
    if verdict.status == "changed" and verdict.hidden_only:
        return "only invisible characters changed (hidden text)"
    if verdict.status == "renamed" and pinned is not None:
        return f"same body as the pinned {pinned.name!r}"
    if verdict.status == "revoked" and pinned is not None:
        return f"revoked {_when(pinned.revoked_at)}"
    if verdict.status == "unverifiable":
        return verdict.reason
    return ""


def _review_table(items: list[LiveItem], title: str) -> Table:
    table = Table("Upstream", "Kind", title=title)
    table.add_column("Name", overflow="fold")
    for column in ("Status", "SHA-256", "Note"):
        table.add_column(column)
    for item in items:
        verdict = item.verdict
        digest = verdict.digest.raw[:16] if verdict.digest is not None else "-"
        table.add_row(item.upstream, item.kind, Text(item.name), _status(verdict.status),
                      digest, Text(_note(verdict)))
    return table


def _print_diff(item: LiveItem) -> None:
    verdict = item.verdict
    console.print(Text(f"{item.upstream} {item.kind} {item.name}: ", style="bold")
                  + _status(verdict.status))
    console.print(Text(f"  {verdict.reason}"), soft_wrap=True)
    pinned = verdict.pinned
    if verdict.status == "new":
        console.print(Text("  not pinned yet; approve it with `bastion pin approve`"))
    elif pinned is not None and pinned.definition is None:
        console.print(Text("  pinned by digest only (pins.approved), so there is no definition "
                           f"to compare with: {pinned.digest.raw}"))
    for change in verdict.diff:
        console.print(Text("  " + change.describe()), soft_wrap=True)


# -- the commands -----------------------------------------------------------------------------


def list_pins(config_file: ConfigOption = None, servers: ServerOption = None) -> None:
    """List the pins (the store's and the configuration's) without connecting to anything."""
    config = load(config_file)
    checker = _checker(config)
    selected = {upstream.name for upstream in _upstreams(config, servers)}
    current = {server_identity(u): u.name for u in config.mcp_servers.values()}
    try:
        records = checker.store.load()
    except PinStoreError as exc:
        _fail(str(exc))
    records += [record for by_digest in checker.configured.values()
                for record in by_digest.values()]
    rows = [record for record in records if record.upstream in selected or not servers]
    if not rows:
        console.print("No pins; review and approve definitions with `bastion pin approve`.")
        return
    table = Table("Upstream", "Kind")
    # Names and the full digest (what pins.approved takes) are folded, never cut short.
    table.add_column("Name", overflow="fold")
    for column in ("Source", "Approved", "State"):
        table.add_column(column)
    table.add_column("SHA-256", overflow="fold")
    for record in sorted(rows, key=lambda r: (r.upstream, r.kind, r.name, r.source)):
        approved = (record.approved_by if record.source == "config"
                    else f"{record.approved_by}, {_when(record.approved_at)}")
        table.add_row(record.upstream, record.kind, Text(record.name), record.source,
                      Text(approved), _record_state(record, current), record.digest.raw)
    console.print(table)


def _record_state(record: PinRecord, current: dict[str, str]) -> Text:
    if record.revoked:
        return Text(f"revoked {_when(record.revoked_at)}", style="red")
    if record.server_id not in current:
        # The upstream was removed, or its command line or URL changed: a new identity.
        return Text("stale (not this configuration's upstream)", style="yellow")
    return Text("active", style="green")


def approve(
    config_file: ConfigOption = None,
    servers: ServerOption = None,
    names: NameOption = None,
    kind: KindOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve without asking.")] = False,
    approver: Annotated[str | None, typer.Option(
        "--by", help="Who approves (default: the user running the command).")] = None,
) -> None:
    """Connect to the upstreams, show what is not approved, and pin it."""
    checker, items, reached = _review(load(config_file), servers, names, _kind(kind))
    pending = [item for item in items if item.verdict.quarantined]
    if not pending:
        console.print(f"Nothing to approve: {_count(len(items))} approved.")
        raise typer.Exit(0 if reached else 1)
    console.print(_review_table(pending, f"{len(pending)} of {_count(len(items))} not "
                                "approved"))
    approvable = [item for item in pending if item.verdict.digest is not None]
    if len(approvable) < len(pending):
        errors.print(Text("warning: unverifiable definitions cannot be approved (see Note)",
                          style="yellow"))
    if not approvable:
        raise typer.Exit(1)
    if not yes and not typer.confirm(f"Approve {_count(len(approvable))}?", default=False):
        errors.print("Nothing approved.")
        raise typer.Exit(1)
    who = approver or _user()
    now = time.time()
    records = [PinRecord(checker.server_id(item.upstream), item.kind, item.name,
                         item.verdict.digest, item.definition, who, now, "cli")  # type: ignore[arg-type]
               for item in approvable]
    try:
        checker.store.approve(records)
    except PinStoreError as exc:
        _fail(str(exc), 1)
    console.print(Text(f"Approved {_count(len(records))} as {who}; running gateways use "
                       f"them within {REFRESH_INTERVAL:g} seconds."), soft_wrap=True)
    raise typer.Exit(0 if reached else 1)


def diff(
    config_file: ConfigOption = None,
    servers: ServerOption = None,
    names: NameOption = None,
    kind: KindOption = None,
) -> None:
    """Show what changed in the live definitions since they were approved (exit 1 if any)."""
    _, items, reached = _review(load(config_file), servers, names, _kind(kind))
    pending = [item for item in items if item.verdict.quarantined]
    for item in pending:
        _print_diff(item)
    if not reached:
        raise typer.Exit(2)
    if pending:
        raise typer.Exit(1)
    console.print(f"No differences: {_count(len(items))} approved.")


def revoke(
    name: Annotated[str, typer.Argument(help="The item's name (a template's uriTemplate).")],
    server: Annotated[str, typer.Option("--server", "-s", help="Its upstream.")],
    kind: KindOption = "tool",
    config_file: ConfigOption = None,
) -> None:
    """Withdraw the approval of one definition: it is quarantined until approved again."""
    config = load(config_file)
    (upstream,) = _upstreams(config, [server])
    checker = _checker(config)
    key = (checker.server_id(upstream.name), _kind(kind) or "tool", name)
    try:
        record = checker.store.revoke(*key)  # type: ignore[arg-type]
    except PinStoreError as exc:
        if key in checker.configured:
            _fail(f"the {key[1]} {name!r} of upstream {server!r} is approved in the "
                  "configuration (pins.approved): remove it there", 1)
        _fail(str(exc), 1)
    console.print(Text(f"Revoked the {record.kind} {record.name!r} of upstream {server!r} "
                       f"(approved by {record.approved_by}); running gateways quarantine it "
                       f"within {REFRESH_INTERVAL:g} seconds."), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `pin list|approve|diff|revoke` to the `bastion` app."""
    pin_app = typer.Typer(help="Pin the definitions of tools, prompts and resource templates "
                          "(rug-pull defence).", no_args_is_help=True, add_completion=False)
    pin_app.command("list")(list_pins)
    pin_app.command("approve")(approve)
    pin_app.command("diff")(diff)
    pin_app.command("revoke")(revoke)
    app.add_typer(pin_app, name="pin")
