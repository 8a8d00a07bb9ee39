"""What the `bastion scan` tests share: a Typer app with the command, a runner, and the
command lines of the real servers they scan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result

from bastion.commands import scan

#: A poisoned stdio server written for these tests.
POISONED = [sys.executable, str(Path(__file__).with_name("poisoned_server.py"))]
#: A clean one: the demo EDR server.
SOC_EDR = [sys.executable, "-m", "bastion.testing.soc", "edr"]
WIDE = {"COLUMNS": "300"}


def _root(debug: bool = typer.Option(False, "--debug")) -> None:
    """The root options, as the real `bastion` app has them."""


app = typer.Typer(add_completion=False)
app.callback()(_root)
scan.register(app)
runner = CliRunner()


def scan_cli(*args: object, env: dict[str, str] | None = None, debug: bool = False) -> Result:
    """`bastion [--debug] scan ARGS` in-process; stdout and stderr are kept apart."""
    argv = ["--debug"] * debug + ["scan", *map(str, args)]
    return runner.invoke(app, argv, env={**WIDE, **(env or {})})


def scan_json(*args: object, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """The exit code and the parsed `--format json` document."""
    result = scan_cli("--format", "json", *args, env=env)
    assert result.stdout.isascii(), "the JSON form must be escaped ASCII"
    return result.exit_code, json.loads(result.stdout)


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scanned items of a JSON document by name (names are unique in these tests)."""
    return {item["name"]: item for item in document["tools"]}


def codes(item: dict[str, Any]) -> set[str]:
    return {finding["code"] for finding in item["findings"]}


def one_red_line(result: Result) -> str:
    """The single error line of a refused scan (no traceback, nothing on stdout)."""
    lines = result.stderr.strip().splitlines()
    assert result.stdout == "" and len(lines) == 1, (result.stdout, result.stderr)
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]
