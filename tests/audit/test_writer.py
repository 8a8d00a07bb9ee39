"""SPEC-AUDIT: the batching writer: chains continue across restarts, a full queue blocks
or drops (counted, alerted, noted in the trail), checkpoints follow counts, time and close,
and bad records or a closed log are refused."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import stat
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import (
    MAX_RECORD_BYTES,
    AuditClosedError,
    AuditLog,
    AuditRecordError,
    AuditStoreError,
    PostgresStore,
    SQLiteStore,
    open_audit_log,
    open_reader,
    verify_database,
    verify_store,
)
from bastion.config.audit import AuditConfig
from tests.audit.conftest import write_trail


def _bodies(db: Path, instance: str = "gw-1") -> list[dict[str, object]]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT body FROM records WHERE instance = ? ORDER BY seq",
                                  (instance,)).fetchall()
    connection.close()
    return [orjson.loads(row[0]) for row in rows]


def _checkpoint_seqs(db: Path) -> list[int]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT seq FROM checkpoints ORDER BY seq").fetchall()
    connection.close()
    return [row[0] for row in rows]


async def test_spec_audit_records_are_stored_in_order_with_time(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    await write_trail(db, signing_key, 12)
    bodies = _bodies(db)
    assert [body["seq"] for body in bodies] == list(range(1, 13))
    assert [body["record"]["n"] for body in bodies] == list(range(12))  # type: ignore[index]
    assert all(isinstance(body["record"]["time"], float) for body in bodies)  # type: ignore[index]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_spec_audit_restart_continues_the_chain(tmp_path: Path,
                                                      signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    await write_trail(db, signing_key, 10)
    await write_trail(db, signing_key, 5)
    report = verify_database(db)
    assert report.ok, report.problem
    assert report.records == {"gw-1": 15}
    assert _checkpoint_seqs(db) == [10, 15]


async def test_spec_audit_full_queue_blocks_without_loss(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog(db, signing_key, "gw-1", queue_size=1, full_policy="block", batch_size=1)
    await log.start()
    accepted = await asyncio.gather(*(log.log({"n": n}) for n in range(40)))
    await log.aclose()
    assert all(accepted) and log.dropped == 0
    assert sorted(body["record"]["n"] for body in _bodies(db)) == list(range(40))  # type: ignore[index]
    assert verify_database(db).ok


async def test_spec_audit_full_queue_drops_counts_alerts_and_notes(
        tmp_path: Path, signing_key: Ed25519PrivateKey,
        caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog(db, signing_key, "gw-1", queue_size=2, full_policy="drop")
    await log.start()
    with caplog.at_level(logging.ERROR, logger="bastion.audit"):
        # The writer cannot run between these calls: only two fit in the queue.
        accepted = [await log.log({"n": n}) for n in range(10)]
    await log.aclose()
    assert accepted == [True, True] + [False] * 8 and log.dropped == 8
    alerts = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(alerts) == 1  # rate-limited, not one line per record
    records = [body["record"] for body in _bodies(db)]
    assert records[-1]["event"] == "audit.dropped" and records[-1]["count"] == 8  # type: ignore[index]
    assert verify_database(db).ok


async def test_spec_audit_checkpoint_by_time_and_at_close(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog(db, signing_key, "gw-1", checkpoint_every=1000, checkpoint_interval=0.1,
                   flush_interval=0.01)
    await log.start()
    await log.log({"n": 1})
    for _ in range(100):
        await asyncio.sleep(0.02)
        if _checkpoint_seqs(db) == [1]:
            break
    assert _checkpoint_seqs(db) == [1]
    await log.log({"n": 2})
    await log.aclose()
    assert _checkpoint_seqs(db) == [1, 2]
    assert verify_database(db).ok


async def test_spec_audit_log_bad_input(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3", signing_key, "gw-1")
    with pytest.raises(AuditClosedError):
        await log.log({"n": 1})  # not started
    await log.start()
    with pytest.raises(AuditRecordError, match="JSON object"):
        await log.log(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(AuditRecordError, match="JSON values"):
        await log.log({"bad": {1, 2}})
    with pytest.raises(AuditRecordError, match="bytes"):
        await log.log({"big": "x" * MAX_RECORD_BYTES})
    assert await log.log({"ok": True})
    await log.aclose()
    await log.aclose()  # idempotent
    with pytest.raises(AuditClosedError):
        await log.log({"n": 2})
    with pytest.raises(AuditClosedError):
        await log.start()
    assert [body["record"]["ok"] for body in _bodies(tmp_path / "audit.sqlite3")] == [True]  # type: ignore[index]


@pytest.mark.parametrize("options", [
    {"instance": ""}, {"instance": "x" * 300}, {"full_policy": "panic"}, {"queue_size": 0},
    {"batch_size": 0}, {"checkpoint_every": 0}, {"flush_interval": 0},
    {"checkpoint_interval": -1},
])
def test_spec_audit_log_bad_options(tmp_path: Path, signing_key: Ed25519PrivateKey,
                                    options: dict[str, object]) -> None:
    instance = options.pop("instance", "gw-1")
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.sqlite3", signing_key, instance, **options)  # type: ignore[arg-type]


async def test_spec_audit_unwritable_database(tmp_path: Path,
                                              signing_key: Ed25519PrivateKey) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    log = AuditLog(tmp_path / "dir.sqlite3", signing_key, "gw-1")
    with pytest.raises(AuditStoreError, match="cannot open"):
        await log.start()


async def test_spec_audit_writer_failure_fails_closed(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog(db, signing_key, "gw-1", queue_size=1, batch_size=1, flush_interval=0.01)
    await log.start()
    # Another process takes seq 1 behind the writer's back: its insert fails.
    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO records VALUES ('gw-1', 1, x'00', x'00', x'00')")
    connection.close()
    await log.log({"n": 0})
    results = await asyncio.gather(*(log.log({"n": n}) for n in range(1, 5)),
                                   return_exceptions=True)
    assert any(isinstance(result, AuditClosedError) for result in results)
    with pytest.raises(AuditClosedError, match="failed"):
        await log.log({"n": 9})
    with pytest.raises(AuditClosedError, match=r"UNIQUE|constraint"):
        await log.aclose()


async def test_spec_audit_queue_depth(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3", signing_key, "gw-1", queue_size=10)
    await log.start()
    assert log.queue_depth == 0
    for n in range(3):  # the writer cannot run between these calls
        await log.log({"n": n})
    assert log.queue_depth == 3
    await log.aclose()
    assert log.queue_depth == 0 and log.seq == 3


async def test_spec_audit_open_audit_log_from_config(
        tmp_path: Path, pg_dsn: str, signing_key: Ed25519PrivateKey) -> None:
    state = tmp_path / "state"
    config = AuditConfig(instance="gw-cfg", batch_size=2, checkpoint_every=2)
    log = open_audit_log(config, state_dir=state, base_dir=None, key=signing_key)
    assert isinstance(log.store, SQLiteStore) and log.instance == "gw-cfg"
    assert log.store.path == state / "audit.sqlite3"
    await log.start()
    for n in range(4):
        await log.log({"n": n})
    await log.aclose()
    assert _checkpoint_seqs(state / "audit.sqlite3") == [2, 4]
    relative = AuditConfig(sqlite=Path("logs/a.sqlite3"))
    assert open_audit_log(relative, state_dir=state, base_dir=tmp_path,
                          key=signing_key).store.path == tmp_path / "logs/a.sqlite3"  # type: ignore[attr-defined]

    log = open_audit_log(AuditConfig.model_validate({"postgres": pg_dsn, "instance": "gw-pg"}),
                         state_dir=state, base_dir=None, key=signing_key)
    assert isinstance(log.store, PostgresStore)
    await log.start()
    await log.log({"n": 1})
    await log.aclose()
    reader = await open_reader(dsn=pg_dsn)
    try:
        report = await verify_store(reader)
    finally:
        await reader.close()
    assert report.ok and report.records == {"gw-pg": 1}


async def test_spec_audit_committed_record_is_written_ahead_of_the_batch(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    # Ordinary records wait up to 30 s for their batch; a committed one does not.
    log = AuditLog(db, signing_key, "gw-1", flush_interval=30.0, batch_size=1000)
    assert not log.running
    await log.start()
    assert log.running
    await log.log({"event": "call", "n": 1})
    await asyncio.sleep(0.05)  # the writer is now gathering a batch around record 1
    assert await log.log({"event": "intent", "n": 2}, committed=True)
    assert [body["record"]["n"] for body in _bodies(db)] == [2]  # type: ignore[index]
    await log.aclose()
    assert not log.running
    assert [body["record"]["n"] for body in _bodies(db)] == [2, 1]  # type: ignore[index]
    assert verify_database(db).ok


async def test_spec_audit_committed_record_fails_closed(
        tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "audit.sqlite3"
    log = AuditLog(db, signing_key, "gw-1", full_policy="drop", queue_size=1)
    await log.start()
    with sqlite3.connect(db) as connection:  # seq 1 is taken behind the writer's back
        connection.execute("INSERT INTO records VALUES ('gw-1', 1, x'00', x'00', x'00')")
    connection.close()
    with pytest.raises(AuditClosedError, match=r"UNIQUE|constraint"):
        await log.log({"event": "intent"}, committed=True)
    assert not log.running
    with pytest.raises(AuditClosedError):
        await log.log({"event": "intent"}, committed=True)
    with pytest.raises(AuditClosedError):
        await log.aclose()
