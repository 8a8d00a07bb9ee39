"""`bastion keys create|list|revoke`: the API keys agents use when they cannot run OAuth.

Keys live in `<state_dir>/api_keys.sqlite3` (the state directory of the configuration given
with `--config`, or the default one). `create` prints the key once: only a hash is stored.
A running gateway sees a new or revoked key within about 2 seconds.

Also the small helpers the identity commands share (`--config` loading, durations, lists).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.config import (
    BastionConfig,
    ConfigError,
    default_config,
    load_config,
    resolve_state_dir,
)
from bastion.guard.identity.api_keys import REFRESH_INTERVAL, ApiKeyError, ApiKeyStore

console = Console()
errors = Console(stderr=True)
_DURATION = re.compile(r"(\d{1,9})\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The configuration file (its state_dir holds the keys).")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop with one red line (no traceback)."""
    # Text, not markup: a message may hold brackets.
    errors.print(Text(f"error: {message}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


def load(config_file: Path | None) -> BastionConfig:
    """The configuration of `--config`, or the defaults; a bad file exits 2."""
    try:
        return load_config(config_file) if config_file is not None else default_config()
    except ConfigError as exc:
        fail(str(exc), 2)


def parse_duration(text: str) -> int:
    """Seconds from `90`, `30s`, `15m`, `1h` or `7d`; BadParameter otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r} is not a duration: use a positive number with s, "
                                 "m, h or d, such as 1h or 30d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def split_values(values: list[str] | None) -> list[str]:
    """Repeated options, each also split on commas and spaces (`--roles a,b --roles c`)."""
    return [item for value in values or [] for item in re.split(r"[,\s]+", value) if item]


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _store(config_file: Path | None) -> ApiKeyStore:
    return ApiKeyStore.in_state_dir(resolve_state_dir(load(config_file)))


def create(
    name: Annotated[str, typer.Option("--name", help="The agent the key is for (its client id).")],
    subject: Annotated[str, typer.Option("--sub", "--subject",
                                         help="The person the agent acts for.")],
    roles: Annotated[list[str] | None, typer.Option("--roles", help="Roles (repeat or a,b).")
                     ] = None,
    scopes: Annotated[list[str] | None, typer.Option("--scope", help="Scopes (repeat or a,b).")
                      ] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="Lifetime such as 90d (default: until revoked).")] = None,
    config_file: ConfigOption = None,
) -> None:
    """Create an API key and print it once."""
    lifetime = parse_duration(expires) if expires is not None else None
    store = _store(config_file)
    try:
        key, record = store.create(
            name=name, subject=subject, roles=split_values(roles), scopes=split_values(scopes),
            expires_at=time.time() + lifetime if lifetime is not None else None)
    except ApiKeyError as exc:
        fail(str(exc))
    errors.print(f"API key [bold]{record.id}[/bold] created for agent {record.name!r} acting "
                 f"for {record.subject!r}, expires {_when(record.expires_at)}.", highlight=False)
    typer.echo(key)
    errors.print("[yellow]Store it now: Bastion keeps only its hash and cannot show it "
                 "again.[/yellow]")


def list_keys(config_file: ConfigOption = None) -> None:
    """List the API keys (never their secrets)."""
    try:
        records = _store(config_file).list()
    except ApiKeyError as exc:
        fail(str(exc))
    if not records:
        console.print("No API keys; create one with `bastion keys create`.")
        return
    table = Table("ID", "Agent", "Subject", "Roles", "Scopes", "Created", "Expires", "State")
    now = time.time()
    for record in records:
        state = record.state(now)
        table.add_row(record.id, record.name, record.subject, ", ".join(record.roles),
                      " ".join(record.scopes), _when(record.created_at),
                      _when(record.expires_at),
                      Text(state, style="green" if state == "active" else "red"))
    console.print(table)


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `bastion keys list`).")],
    config_file: ConfigOption = None,
) -> None:
    """Revoke an API key; running gateways refuse it within seconds."""
    try:
        record = _store(config_file).revoke(key_id)
    except ApiKeyError as exc:
        fail(str(exc))
    console.print(f"API key {record.id} ({record.name}) revoked at {_when(record.revoked_at)}; "
                  f"gateways refuse it within {REFRESH_INTERVAL:g} seconds.", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `keys create|list|revoke` to the `bastion` app."""
    keys_app = typer.Typer(help="Manage API keys for agents that cannot use OAuth.",
                           no_args_is_help=True, add_completion=False)
    keys_app.command("create")(create)
    keys_app.command("list")(list_keys)
    keys_app.command("revoke")(revoke)
    app.add_typer(keys_app, name="keys")
