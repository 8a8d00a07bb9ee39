"""`bastion audit verify|tail|show|export|export-key`: the tamper-evident audit trail.

Every reading command takes the database as `--db FILE` (SQLite) or `--dsn URI`
(PostgreSQL), or else the one configured in `--config` (`audit.sqlite`/`audit.postgres`).
`verify` recomputes every hash chain and checks every signed checkpoint; it exits 0 when the
trail is intact, 1 naming the first bad record (instance and seq) after any edit, deletion,
reordering, insertion or truncation, and 2 when the database cannot be read. `tail` and
`show` print records (filters: principal, agent, upstream, tool, status, time); `export`
writes JSON Lines or CEF for a SIEM. `export-key` prints the public half of
`<state_dir>/audit-signing.key` to verify elsewhere with `--public-key`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from bastion.audit import (
    SIGNING_KEY_FILE,
    AuditKeyError,
    AuditStoreError,
    parse_public_key,
    public_key_pem,
    public_key_raw_b64,
    verify_database,
)
from bastion.audit.export import to_cef, to_jsonl
from bastion.audit.factory import open_reader
from bastion.audit.query import AuditQueryError, RecordQuery, StoredRecord, parse_time
from bastion.audit.signing import read_signing_key
from bastion.audit.store import CHUNK, AuditReader
from bastion.audit.verify import VerifyReport, verify_store
from bastion.commands.keys import ConfigOption, console, errors, fail, load
from bastion.config import resolve_state_dir

#: A public key file is about 113 bytes; anything much larger is not one.
_MAX_PUBLIC_KEY_FILE = 4096
_FOLLOW_INTERVAL = 0.5
_T = TypeVar("_T")

DbOption = Annotated[Path | None, typer.Option("--db", help="The audit SQLite file.")]
DsnOption = Annotated[str | None, typer.Option(
    "--dsn", help="The audit PostgreSQL database (postgresql://…).")]
SinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only records from then on: 30m, 1h, 2d or an ISO time.")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Only records up to then: 30m, 1h, 2d or an ISO time.")]
InstanceOption = Annotated[str | None, typer.Option("--instance", help="Only this chain.")]


class KeyFormat(StrEnum):
    pem = "pem"
    base64 = "base64"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    cef = "cef"


def _database(db: Path | None, dsn: str | None,
              config_file: Path | None) -> tuple[Path | None, str | None]:
    """(--db, --dsn), or the configured audit database when neither is given."""
    if db is not None and dsn is not None:
        fail("give --db (SQLite) or --dsn (PostgreSQL), not both", 2)
    if db is not None or dsn is not None:
        return db, dsn
    config = load(config_file)
    if config.audit.dsn is not None:
        return None, config.audit.dsn
    return config.audit.database(resolve_state_dir(config), config.base_dir), None


def _run(work: Callable[[AuditReader], Awaitable[_T]], db: Path | None, dsn: str | None,
         config_file: Path | None) -> _T:
    """Open the reader, run `work` on it, close it; store and filter errors exit 2."""
    db, dsn = _database(db, dsn, config_file)

    async def run() -> _T:
        reader = await open_reader(db=db, dsn=dsn)
        try:
            return await work(reader)
        finally:
            await reader.close()

    try:
        return asyncio.run(run())
    except AuditStoreError as exc:
        fail(str(exc), 2)


def _query(since: str | None = None, until: str | None = None, **fields: object) -> RecordQuery:
    now = time.time()
    try:
        return RecordQuery(since=None if since is None else parse_time(since, now),
                           until=None if until is None else parse_time(until, now),
                           **fields)  # type: ignore[arg-type]
    except AuditQueryError as exc:
        fail(str(exc), 2)


def verify(
    db: DbOption = None,
    dsn: DsnOption = None,
    config_file: ConfigOption = None,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="The signing key's public half (PEM or base64), exported with "
        "`bastion audit export-key`; without it the key stored in the database is trusted.")
    ] = None,
    allow_unsigned_tail: Annotated[bool, typer.Option(
        "--allow-unsigned-tail", help="Accept records after the last checkpoint (a running "
        "gateway's trail).")] = False,
) -> None:
    """Verify chains, signatures and checkpoints; exit 1 naming the first bad record."""
    key = None
    if public_key is not None:
        try:
            with public_key.open("rb") as handle:
                key = parse_public_key(handle.read(_MAX_PUBLIC_KEY_FILE))
        except OSError as exc:
            fail(f"{public_key}: cannot read the public key: {exc.strerror}", 2)
        except AuditKeyError as exc:
            fail(f"{public_key}: {exc}", 2)
    db, dsn = _database(db, dsn, config_file)
    report: VerifyReport
    if db is not None:
        try:  # the synchronous SQLite path: the fastest
            report = verify_database(db, key, allow_unsigned_tail=allow_unsigned_tail)
        except AuditStoreError as exc:
            fail(str(exc), 2)
    else:
        report = _run(lambda reader: verify_store(reader, key,
                                                  allow_unsigned_tail=allow_unsigned_tail),
                      None, dsn, None)
    for warning in report.warnings:
        errors.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
    if report.problem is not None:
        fail(f"audit trail NOT intact: {report.problem}")
    table = Table("Instance", "Records", "Checkpoints")
    for instance, count in sorted(report.records.items()):
        table.add_row(instance, str(count), str(report.checkpoints.get(instance, 0)))
    console.print(table)
    console.print(Text(f"audit trail intact: {sum(report.records.values())} records",
                       style="green"))


def _when(stored: StoredRecord) -> str:
    moment = stored.time
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _target(stored: StoredRecord) -> str:
    """The target; for an alert its rule and tool, for a refusal the RFC 6750 error."""
    event = stored.text("event")
    if event == "alert":
        rule, tool = stored.text("alert", "rule"), stored.text("alert", "tool")
        return f"{rule or 'alert'}: {tool}" if tool else (rule or "alert")
    if event == "refusal":
        return stored.text("error", "code") or "-"
    return stored.text("target") or "-"


def _outcome(stored: StoredRecord) -> Text:
    if stored.text("event") == "alert":
        return Text(f"alert/{stored.text('alert', 'severity') or '?'}", style="magenta")
    status = stored.text("status") or stored.text("event") or "-"
    effect = stored.text("decision", "effect")
    style = {"ok": "green", "denied": "red", "error": "red", "tool_error": "yellow"}.get(
        status, "")
    return Text(f"{status}/{effect}" if effect and effect != status else status, style=style)


def _table(records: list[StoredRecord], header: bool = True) -> Table:
    table = Table("Time (UTC)", "Instance", "Seq", "Sub", "Agent", "Method", "Target",
                  "Status", "Latency", show_header=header, box=box.HEAVY_HEAD if header else None)
    for stored in records:
        latency = stored.get("latency_ms")
        table.add_row(
            _when(stored), stored.instance, str(stored.seq),
            stored.text("principal", "sub") or "-", stored.text("principal", "client_id") or "-",
            stored.text("method") or stored.text("event") or "-",
            _target(stored), _outcome(stored),
            f"{latency:.1f} ms" if isinstance(latency, int | float) else "-")
    return table


def _print(records: list[StoredRecord], as_json: bool, header: bool = True) -> None:
    if as_json:
        for stored in records:
            typer.echo(to_jsonl(stored))
    elif records or header:
        console.print(_table(records, header))


async def _follow(reader: AuditReader, query: RecordQuery, shown: list[StoredRecord],
                  as_json: bool) -> None:
    cursors = {stored.instance: stored.seq for stored in shown}
    for instance in await reader.instances():
        if instance not in cursors:
            last = await reader.query(RecordQuery(instance=instance, order="key_desc", limit=1))
            cursors[instance] = last[0].seq if last else 0
    while True:
        await asyncio.sleep(_FOLLOW_INTERVAL)
        fresh: list[StoredRecord] = []
        for instance in await reader.instances():
            if query.instance is not None and instance != query.instance:
                continue
            after = (instance, cursors.get(instance, 0))
            page = await reader.query(dataclasses.replace(
                query, instance=instance, after=after, order="key", limit=CHUNK))
            if page:
                cursors[instance] = page[-1].seq
                fresh += page
        _print(fresh, as_json, header=False)
        sys.stdout.flush()


def tail(
    db: DbOption = None,
    dsn: DsnOption = None,
    config_file: ConfigOption = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=10_000,
                                       help="How many of the latest records.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new records (Ctrl-C stops).")
                      ] = False,
    instance: InstanceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table.")
                       ] = False,
) -> None:
    """The latest records; with --follow, new ones as they are written."""
    query = _query(instance=instance, limit=lines)

    async def work(reader: AuditReader) -> None:
        shown = list(reversed(await reader.query(query)))
        _print(shown, as_json)
        if follow:
            await _follow(reader, query, shown, as_json)

    try:
        _run(work, db, dsn, config_file)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def show(
    db: DbOption = None,
    dsn: DsnOption = None,
    config_file: ConfigOption = None,
    sub: Annotated[str | None, typer.Option("--sub", help="The human (principal sub).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="The agent (client_id).")
                     ] = None,
    upstream: Annotated[str | None, typer.Option("--upstream", help="The upstream server.")
                        ] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="The tool (or other target).")
                    ] = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="ok, tool_error, denied, error, input_required or task.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    instance: InstanceOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000,
                                       help="At most this many (the latest).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table.")
                       ] = False,
) -> None:
    """Records matching the filters, oldest first (the latest --limit of them)."""
    query = _query(since, until, sub=sub, agent=agent, upstream=upstream, tool=tool,
                   status=status, instance=instance, limit=limit)

    async def work(reader: AuditReader) -> list[StoredRecord]:
        return await reader.query(query)

    _print(list(reversed(_run(work, db, dsn, config_file))), as_json)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        # Audit data: owner-only, like the database it comes from.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        fail(f"{path}: cannot write the export: {exc.strerror}", 2)
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
        yield handle


def export(
    db: DbOption = None,
    dsn: DsnOption = None,
    config_file: ConfigOption = None,
    export_format: Annotated[ExportFormat, typer.Option(
        "--format", help="jsonl (one object per record) or cef (ArcSight CEF:0).")
    ] = ExportFormat.jsonl,
    since: SinceOption = None,
    until: UntilOption = None,
    instance: InstanceOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write here (default: standard output).")
                      ] = None,
) -> None:
    """Every matching record in chain order, for SIEM ingestion."""
    query = _query(since, until, instance=instance, order="key", limit=CHUNK)
    line = to_jsonl if export_format is ExportFormat.jsonl else to_cef

    with _output(output) as handle:
        async def work(reader: AuditReader) -> int:
            page, count = query, 0
            while records := await reader.query(page):
                handle.write("".join(f"{line(stored)}\n" for stored in records))
                count += len(records)
                page = dataclasses.replace(query, after=(records[-1].instance,
                                                         records[-1].seq))
            return count

        count = _run(work, db, dsn, config_file)
    if output is not None:
        console.print(Text(f"exported {count} records to {output}", style="green"))


def export_key(
    config_file: ConfigOption = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="The state directory holding audit-signing.key (default: the "
        "configuration's).")] = None,
    key_format: Annotated[KeyFormat, typer.Option("--format", help="pem or base64 (raw 32 "
                                                  "bytes).")] = KeyFormat.pem,
) -> None:
    """Print the audit signing key's public half, to verify trails elsewhere."""
    directory = state_dir if state_dir is not None else resolve_state_dir(load(config_file))
    try:
        key = read_signing_key(directory / SIGNING_KEY_FILE).public_key()
    except AuditKeyError as exc:
        fail(str(exc))
    text = public_key_pem(key) if key_format is KeyFormat.pem else public_key_raw_b64(key)
    typer.echo(text.rstrip("\n"))


def register(app: typer.Typer) -> None:
    """Add `audit verify|tail|show|export|export-key` to the `bastion` app."""
    audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True,
                            add_completion=False)
    audit_app.command("verify")(verify)
    audit_app.command("tail")(tail)
    audit_app.command("show")(show)
    audit_app.command("export")(export)
    audit_app.command("export-key")(export_key)
    app.add_typer(audit_app, name="audit")

