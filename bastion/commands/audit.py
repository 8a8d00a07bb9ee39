"""`bastion audit verify|export-key`: check a tamper-evident audit trail, export its key.

`verify --db PATH` recomputes every hash chain and checks every signed checkpoint; it exits
0 when the trail is intact, 1 naming the first bad record (instance and seq) after any
edit, deletion, reordering, insertion or truncation, and 2 when the file cannot be read.
`export-key` prints the public half of `<state_dir>/audit-signing.key` (PEM or base64) to
verify elsewhere with `--public-key`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
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
from bastion.audit.signing import read_signing_key
from bastion.commands.keys import ConfigOption, console, errors, fail, load
from bastion.config import resolve_state_dir

#: A public key file is about 113 bytes; anything much larger is not one.
_MAX_PUBLIC_KEY_FILE = 4096


class KeyFormat(StrEnum):
    pem = "pem"
    base64 = "base64"


def verify(
    db: Annotated[Path, typer.Option("--db", help="The audit SQLite file.")],
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="The signing key's public half (PEM or base64), exported with "
        "`bastion audit export-key`; without it the key stored in the file is trusted.")
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
    try:
        report = verify_database(db, key, allow_unsigned_tail=allow_unsigned_tail)
    except AuditStoreError as exc:
        fail(str(exc), 2)
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
    """Add `audit verify|export-key` to the `bastion` app."""
    audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True,
                            add_completion=False)
    audit_app.command("verify")(verify)
    audit_app.command("export-key")(export_key)
    app.add_typer(audit_app, name="audit")
