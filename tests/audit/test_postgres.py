"""SPEC-AUDIT: the PostgreSQL store against a real private server: `AuditLog` writes into it
(chains continue across restarts, failures fail closed), every kind of tampering is found
and named, and DSN passwords never reach an error message."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import (
    AuditClosedError,
    AuditLog,
    AuditStoreError,
    Checkpoint,
    PostgresReader,
    PostgresStore,
    SQLiteReader,
    VerifyReport,
    mask_dsn,
    verify_database,
    verify_store,
)
from tests.audit.conftest import write_trail
from tests.postgres import PostgresServer

Tamper = Callable[[asyncpg.Connection], Awaitable[None]]


async def _verify(dsn: str, **options: object) -> VerifyReport:
    reader = await PostgresReader.open(dsn)
    try:
        return await verify_store(reader, **options)  # type: ignore[arg-type]
    finally:
        await reader.close()


async def _trail(dsn: str, key: Ed25519PrivateKey, count: int = 50) -> None:
    await write_trail(PostgresStore(dsn), key, count)


async def _edit_byte(db: asyncpg.Connection) -> None:
    body = await db.fetchval("SELECT body FROM records WHERE seq = 10")
    await db.execute("UPDATE records SET body = $1 WHERE seq = 10",
                     body.replace(b'tool-9"', b'tool-8"'))


async def _delete(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM records WHERE seq = 10")


async def _swap(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE records SET seq = -1 WHERE seq = 10")
    await db.execute("UPDATE records SET seq = 10 WHERE seq = 11")
    await db.execute("UPDATE records SET seq = 11 WHERE seq = -1")


async def _insert(db: asyncpg.Connection) -> None:
    # Make room after seq 10 and slip in a well-formed record chained from it.
    await db.execute("UPDATE records SET seq = seq + 1000 WHERE seq > 10")
    await db.execute("UPDATE records SET seq = seq - 999 WHERE seq > 1000")
    prev = await db.fetchval("SELECT hash FROM records WHERE seq = 10")
    body = b'{"instance":"gw-1","record":{"forged":true},"seq":11}'
    await db.execute("INSERT INTO records VALUES ('gw-1', 11, $1, $2, $3)",
                     hashlib.sha256(prev + body).digest(), prev, body)


async def _truncate(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM records WHERE seq > 45")


async def _zero_signature(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE checkpoints SET signature = $1 WHERE seq = 20", bytes(64))


async def _forged_checkpoint(db: asyncpg.Connection) -> None:
    # Truncate to 45 and sign a new final checkpoint with the attacker's own key.
    await db.execute("DELETE FROM records WHERE seq > 45")
    await db.execute("DELETE FROM checkpoints WHERE seq = 50")
    head = await db.fetchval("SELECT hash FROM records WHERE seq = 45")
    attacker = Ed25519PrivateKey.generate()
    point = Checkpoint("gw-1", 45, head, 45, 1.0)
    from cryptography.hazmat.primitives import serialization
    raw = attacker.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)
    await db.execute("INSERT INTO checkpoints VALUES ('gw-1', 45, $1, 45, 1.0, $2, $3)",
                     head, point.sign(attacker), raw)


async def _rechained_edit(db: asyncpg.Connection) -> None:
    rows = await db.fetch("SELECT seq, prev, body FROM records WHERE seq >= 5 ORDER BY seq")
    prev = rows[0]["prev"]
    for row in rows:
        body = row["body"]
        if row["seq"] == 5:
            body = body.replace(b'"allow"', b'"deny!"')
        digest = hashlib.sha256(prev + body).digest()
        await db.execute("UPDATE records SET hash = $1, prev = $2, body = $3 WHERE seq = $4",
                         digest, prev, body, row["seq"])
        prev = digest


async def _appended(db: asyncpg.Connection) -> None:
    seq, digest = await db.fetchrow("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
    body = b'{"instance":"gw-1","record":{"forged":true},"seq":%d}' % (seq + 1)
    await db.execute("INSERT INTO records VALUES ('gw-1', $1, $2, $3, $4)", seq + 1,
                     hashlib.sha256(digest + body).digest(), digest, body)


@pytest.mark.parametrize(("tamper", "seq", "reason"), [
    (_edit_byte, 10, "edited"),
    (_delete, 10, "missing"),
    (_swap, 10, "chain"),
    (_insert, 12, "chain"),  # the forged 11 links fine; 12 no longer does
    (_truncate, 50, "truncated"),
    (_zero_signature, 20, "signature"),
    (_forged_checkpoint, 20, "different keys"),
    (_rechained_edit, 20, "checkpoint"),
    (_appended, 51, "no signed checkpoint"),
], ids=lambda value: getattr(value, "__name__", str(value)).strip("_"))
async def test_spec_audit_postgres_tampering_is_named(
        pg_dsn: str, signing_key: Ed25519PrivateKey, tamper: Tamper, seq: int,
        reason: str) -> None:
    await _trail(pg_dsn, signing_key)
    intact = await _verify(pg_dsn)
    assert intact.ok and intact.records == {"gw-1": 50} and intact.checkpoints == {"gw-1": 3}
    db = await asyncpg.connect(pg_dsn)
    try:
        await tamper(db)
    finally:
        await db.close()
    report = await _verify(pg_dsn)
    assert report.problem is not None, "tampering went unnoticed"
    assert (report.problem.instance, report.problem.seq) == ("gw-1", seq), report.problem
    assert reason in report.problem.reason


async def test_spec_audit_postgres_forged_checkpoint_fails_with_public_key(
        pg_dsn: str, signing_key: Ed25519PrivateKey) -> None:
    await _trail(pg_dsn, signing_key)
    db = await asyncpg.connect(pg_dsn)
    try:
        await _forged_checkpoint(db)
    finally:
        await db.close()
    report = await _verify(pg_dsn, public_key=signing_key.public_key())
    assert report.problem is not None and report.problem.seq == 45
    assert "signature" in report.problem.reason


async def test_spec_audit_postgres_restart_and_instances(
        pg_dsn: str, signing_key: Ed25519PrivateKey) -> None:
    await _trail(pg_dsn, signing_key, 10)
    await _trail(pg_dsn, signing_key, 5)  # a restart continues the chain
    await write_trail(PostgresStore(pg_dsn), signing_key, 7, instance="gw-2")
    report = await _verify(pg_dsn)
    assert report.ok, report.problem
    assert report.records == {"gw-1": 15, "gw-2": 7}
    db = await asyncpg.connect(pg_dsn)
    try:
        assert [r[0] for r in await db.fetch(
            "SELECT seq FROM checkpoints WHERE instance = 'gw-1' ORDER BY seq")] == [10, 15]
        types = {r[0]: r[1] for r in await db.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'records'")}
    finally:
        await db.close()
    assert types["body"] == "bytea" and types["seq"] == "bigint"


async def test_spec_audit_postgres_and_sqlite_verify_alike(
        pg_dsn: str, tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    await write_trail(db, signing_key, 30)
    await _trail(pg_dsn, signing_key, 30)
    reader = SQLiteReader(db)
    try:
        via_reader = await verify_store(reader)
    finally:
        await reader.close()
    direct, postgres = verify_database(db), await _verify(pg_dsn)
    assert via_reader.records == direct.records == postgres.records == {"gw-1": 30}
    assert via_reader.checkpoints == direct.checkpoints == postgres.checkpoints


async def test_spec_audit_postgres_concurrent_first_start(
        pg_dsn: str, signing_key: Ed25519PrivateKey) -> None:
    # Two replicas creating the schema at once must not race (advisory lock).
    await asyncio.gather(*(write_trail(PostgresStore(pg_dsn), signing_key, 8,
                                       instance=f"replica-{n}") for n in range(4)))
    report = await _verify(pg_dsn)
    assert report.ok and len(report.records) == 4


async def test_spec_audit_postgres_writer_failure_fails_closed(
        pg_dsn: str, signing_key: Ed25519PrivateKey) -> None:
    log = AuditLog(PostgresStore(pg_dsn), signing_key, "gw-1", queue_size=1, batch_size=1,
                   flush_interval=0.01)
    await log.start()
    assert log.queue_depth == 0
    db = await asyncpg.connect(pg_dsn)
    try:  # another writer takes seq 1 behind this one's back
        await db.execute("INSERT INTO records VALUES ('gw-1', 1, '\\x00', '\\x00', '\\x00')")
    finally:
        await db.close()
    await log.log({"n": 0})
    await asyncio.gather(*(log.log({"n": n}) for n in range(1, 5)), return_exceptions=True)
    with pytest.raises(AuditClosedError):
        await log.log({"n": 9})
    with pytest.raises(AuditClosedError, match="duplicate key"):
        await log.aclose()


def test_spec_audit_mask_dsn_hides_passwords() -> None:
    assert mask_dsn("postgresql://bob:s3cret@db:5432/audit") == \
        "postgresql://bob:***@db:5432/audit"
    masked = mask_dsn("postgresql://db/audit?user=bob&password=s3cret&sslmode=require")
    assert "s3cret" not in masked and "sslmode=require" in masked
    assert mask_dsn("postgresql://db/audit") == "postgresql://db/audit"


async def test_spec_audit_postgres_connection_errors_hide_password(
        postgres_server: PostgresServer, signing_key: Ed25519PrivateKey) -> None:
    refused = "postgresql://bob:hunter2secret@127.0.0.1:1/audit"
    with pytest.raises(AuditStoreError) as caught:
        await PostgresReader.open(refused)
    assert "hunter2secret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value) and "/audit" in str(caught.value)
    missing = postgres_server.dsn("no_such_db").replace("postgres@", "postgres:hunter2secret@")
    log = AuditLog(PostgresStore(missing), signing_key, "gw-1")
    with pytest.raises(AuditStoreError) as caught:
        await log.start()
    assert "no_such_db" in str(caught.value) and "hunter2secret" not in str(caught.value)
    with pytest.raises(AuditStoreError, match="postgresql://"):
        await PostgresReader.open("mysql://x")
    await log.aclose()


async def test_spec_audit_postgres_reader_refuses_other_database(
        postgres_server: PostgresServer, pg_dsn: str) -> None:
    with pytest.raises(AuditStoreError, match="not an audit database"):
        await PostgresReader.open(pg_dsn)
