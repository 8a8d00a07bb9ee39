"""SPEC-AUDIT: `bastion audit verify` exit codes (0 intact, 1 tampered naming the record,
2 unreadable) on SQLite and PostgreSQL, `bastion audit export-key` round-tripping into
`--public-key`, and `tail` (with --follow), `show` filters and `export` jsonl|cef."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import sys
import tempfile
from pathlib import Path

import asyncpg
import orjson
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from bastion.audit import PostgresStore, load_or_create_signing_key
from bastion.commands import audit
from tests.audit.conftest import write_trail
from tests.audit.test_export import parse_cef
from tests.audit.test_query import RECORDS, write_records

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


# --- verify --dsn, tail, show, export (SQLite and a real PostgreSQL server) ---------------

async def _pg_trail(dsn: str, count: int = 50) -> None:
    key = load_or_create_signing_key(Path(tempfile.mkdtemp()) / "state")
    await write_trail(PostgresStore(dsn), key, count)


async def test_spec_audit_cli_verify_dsn(pg_dsn: str) -> None:
    await _pg_trail(pg_dsn)
    code, output = await asyncio.to_thread(_run, "verify", "--dsn", pg_dsn)
    assert code == 0 and "audit trail intact: 50 records" in output, output
    db = await asyncpg.connect(pg_dsn)
    try:
        await db.execute("DELETE FROM records WHERE seq = 33")
    finally:
        await db.close()
    code, output = await asyncio.to_thread(_run, "verify", "--dsn", pg_dsn)
    assert code == 1 and "'gw-1', seq 33" in output and "Traceback" not in output


def test_spec_audit_cli_dsn_errors_exit_2_without_password() -> None:
    code, output = _run("verify", "--dsn", "postgresql://bob:TopSecret99@127.0.0.1:1/auditdb")
    assert code == 2 and "127.0.0.1" in output and "auditdb" in output
    assert "TopSecret99" not in output and "Traceback" not in output
    code, output = _run("show", "--dsn", "mysql://bob:TopSecret99@h/db")
    assert code == 2 and "TopSecret99" not in output


async def _queried_trail(tmp_path: Path, signing_key: Ed25519PrivateKey) -> Path:
    db = tmp_path / "q.sqlite3"
    await write_records(db, signing_key, RECORDS)
    return db


async def test_spec_audit_cli_show_filters(tmp_path: Path, pg_dsn: str,
                                           signing_key: Ed25519PrivateKey) -> None:
    db = await _queried_trail(tmp_path, signing_key)
    await write_records(PostgresStore(pg_dsn), signing_key, RECORDS)
    for where in (["--db", str(db)], ["--dsn", pg_dsn]):
        code, output = await asyncio.to_thread(_run, "show", *where, "--sub", "alice",
                                               "--since", "2027-01-01T00:00:00Z")
        assert code == 0, output
        assert output.count("alice") == 3 and "bob" not in output
        assert "create_issue" in output and "ok/allow" in output
        code, output = await asyncio.to_thread(_run, "show", *where, "--agent", "cursor",
                                               "--json")
        lines = [orjson.loads(line) for line in output.splitlines()]
        assert [line["record"]["target"] for line in lines] == ["delete_repo"]
        assert lines[0]["seq"] == 2 and len(lines[0]["hash"]) == 64
        code, output = await asyncio.to_thread(
            _run, "show", *where, "--upstream", "github", "--status", "ok", "--tool",
            "create_issue", "--limit", "1", "--json")
        assert [orjson.loads(line)["seq"] for line in output.splitlines()] == [6]
        code, output = await asyncio.to_thread(_run, "show", *where, "--until", "1h",
                                               "--instance", "nope", "--json")
        assert code == 0 and output == ""


async def test_spec_audit_cli_tail(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = await _queried_trail(tmp_path, signing_key)
    code, output = await asyncio.to_thread(_run, "tail", "--db", str(db), "-n", "2", "--json")
    assert code == 0 and [orjson.loads(line)["seq"] for line in output.splitlines()] == [4, 6]
    code, output = await asyncio.to_thread(_run, "tail", "--db", str(db))
    assert code == 0 and "Seq" in output and "delete_repo" in output and "denied/deny" in output


async def test_spec_audit_cli_export_formats(tmp_path: Path, pg_dsn: str,
                                             signing_key: Ed25519PrivateKey) -> None:
    db = await _queried_trail(tmp_path, signing_key)
    await write_records(PostgresStore(pg_dsn), signing_key, RECORDS)
    for where in (["--db", str(db)], ["--dsn", pg_dsn]):
        code, output = await asyncio.to_thread(_run, "export", *where)
        lines = [orjson.loads(line) for line in output.splitlines()]
        assert code == 0 and [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
        assert lines[1]["record"] == RECORDS[1]
        target = tmp_path / "out.cef"
        code, output = await asyncio.to_thread(_run, "export", *where, "--format", "cef",
                                               "--since", "2027-01-15T08:00:00Z",
                                               "--output", str(target))
        assert code == 0 and "exported 5 records" in output, output
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        cef = [parse_cef(line) for line in target.read_text().splitlines()]
        assert [ext["cn1"] for _, ext in cef] == ["1", "2", "3", "4", "6"]
        assert cef[1][0][6] == "6" and cef[1][1]["suser"] == "bob"


async def test_spec_audit_cli_reads_the_configured_database(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = await _queried_trail(tmp_path, signing_key)
    config = tmp_path / "bastion.yaml"
    config.write_text(f"state_dir: state\naudit:\n  sqlite: {db.name}\n"
                      "mcpServers:\n  time:\n    command: uvx\n")
    code, output = await asyncio.to_thread(_run, "show", "--config", str(config), "--json")
    assert code == 0 and len(output.splitlines()) == 6
    code, output = _run("verify", "--config", str(config))
    assert code == 0 and "6 records" in output


def test_spec_audit_cli_query_bad_input(tmp_path: Path, trail: Path) -> None:
    code, output = _run("show", "--db", str(trail), "--since", "yesterday")
    assert code == 2 and "neither a duration" in output and "Traceback" not in output
    code, output = _run("show", "--db", str(trail), "--since", "1h", "--until", "2h")
    assert code == 2 and "after --until" in output
    code, output = _run("show", "--db", str(tmp_path / "missing.sqlite3"))
    assert code == 2 and "no such audit database" in output
    code, output = _run("tail", "--db", str(trail), "--dsn", "postgresql://h/db")
    assert code == 2 and "not both" in output
    code, output = _run("verify", "--db", str(trail), "--dsn", "postgresql://h/db")
    assert code == 2 and "not both" in output
    code, output = _run("export", "--db", str(trail), "--format", "xml")
    assert code == 2
    code, output = _run("export", "--db", str(trail), "--output", str(tmp_path / "no" / "f"))
    assert code == 2 and "cannot write the export" in output
    code, output = _run("tail", "--db", str(trail), "-n", "0")
    assert code == 2
    (tmp_path / "bad.yaml").write_text("audit: {sqlite: a, postgres: 'postgresql://h/d'}\n")
    code, output = _run("show", "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and "not both" in output


async def test_spec_audit_cli_tail_follow(tmp_path: Path,
                                          signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "live.sqlite3"
    await write_trail(db, signing_key, 3)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from bastion.cli import main; main()", "audit", "tail",
        "--db", str(db), "--follow", "--json", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    assert process.stdout is not None
    try:
        seen = [orjson.loads(await asyncio.wait_for(process.stdout.readline(), 20))["seq"]
                for _ in range(3)]
        assert seen == [1, 2, 3]
        await write_trail(db, signing_key, 2)
        seen = [orjson.loads(await asyncio.wait_for(process.stdout.readline(), 10))["seq"]
                for _ in range(2)]
        assert seen == [4, 5]
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
