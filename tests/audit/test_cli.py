"""SPEC-AUDIT: `bastion audit verify` exit codes (0 intact, 1 tampered naming the record,
2 unreadable) and `bastion audit export-key` round-tripping into `--public-key`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer
from typer.testing import CliRunner

from bastion.audit import load_or_create_signing_key
from bastion.commands import audit

runner = CliRunner()
WIDE = {"COLUMNS": "400"}


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Bastion (test harness)."""

    audit.register(app)
    return app


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(_app(), ["audit", *args], env=WIDE)
    return result.exit_code, result.output


def test_spec_audit_cli_verify_intact(trail: Path) -> None:
    code, output = _run("verify", "--db", str(trail))
    assert code == 0, output
    assert "audit trail intact: 50 records" in output and "gw-1" in output
    assert "no --public-key" in output


def test_spec_audit_cli_verify_tampered_exits_1(trail: Path) -> None:
    with sqlite3.connect(trail) as connection:
        connection.execute("DELETE FROM records WHERE seq = 33")
    connection.close()
    code, output = _run("verify", "--db", str(trail))
    assert code == 1
    assert "NOT intact" in output and "'gw-1', seq 33" in output
    assert "Traceback" not in output


def test_spec_audit_cli_export_key_and_verify_with_it(
        trail: Path, pristine_trail: tuple[Path, Path], tmp_path: Path) -> None:
    state = pristine_trail[1]
    for key_format in ("pem", "base64"):
        code, output = _run("export-key", "--state-dir", str(state), "--format", key_format)
        assert code == 0, output
        key_file = tmp_path / f"key.{key_format}"
        key_file.write_text(output)
        code, output = _run("verify", "--db", str(trail), "--public-key", str(key_file))
        assert code == 0 and "no --public-key" not in output, output
    # A key from another state directory refuses the trail.
    other = tmp_path / "other-state"
    load_or_create_signing_key(other)
    code, output = _run("export-key", "--state-dir", str(other))
    (tmp_path / "other.pem").write_text(output)
    code, output = _run("verify", "--db", str(trail), "--public-key", str(tmp_path / "other.pem"))
    assert code == 1 and "signature" in output


def test_spec_audit_cli_bad_input(tmp_path: Path, trail: Path) -> None:
    code, output = _run("verify", "--db", str(tmp_path / "missing.sqlite3"))
    assert code == 2 and "no such audit database" in output
    (tmp_path / "junk.pem").write_text("junk")
    code, output = _run("verify", "--db", str(trail), "--public-key", str(tmp_path / "junk.pem"))
    assert code == 2 and "public key" in output
    code, output = _run("verify", "--db", str(trail), "--public-key", str(tmp_path / "none"))
    assert code == 2 and "cannot read the public key" in output
    code, output = _run("export-key", "--state-dir", str(tmp_path / "empty"))
    assert code == 1 and "no audit signing key yet" in output
    code, output = _run("export-key", "--state-dir", str(tmp_path), "--format", "der")
    assert code == 2
