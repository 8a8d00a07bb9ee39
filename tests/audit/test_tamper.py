"""SPEC-AUDIT: every kind of tampering with a real SQLite trail is found and named
(instance and seq); an intact trail verifies."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import AuditStoreError, Checkpoint, public_key_raw_b64, verify_database
from tests.audit.conftest import write_trail


def _sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    with sqlite3.connect(path) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)
    connection.close()


def _problem(path: Path, **options: object) -> tuple[str, int, str]:
    report = verify_database(path, **options)  # type: ignore[arg-type]
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.instance, report.problem.seq, report.problem.reason


def test_spec_audit_intact_trail_verifies(trail: Path) -> None:
    report = verify_database(trail)
    assert report.ok, report.problem
    assert report.records == {"gw-1": 50}
    assert report.checkpoints["gw-1"] == 3  # at 20 and 40 records, and at close (50)


def test_spec_audit_flipped_byte_in_body_is_named(trail: Path) -> None:
    _sql(trail, ("UPDATE records SET body = CAST(replace(CAST(body AS TEXT), 'tool-9\"', "
                 "'tool-8\"') AS BLOB) WHERE seq = 10", ()))
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 10) and "edited" in reason


def test_spec_audit_deleted_record_is_named(trail: Path) -> None:
    _sql(trail, ("DELETE FROM records WHERE seq = 10", ()))
    assert _problem(trail)[:2] == ("gw-1", 10)


def test_spec_audit_swapped_records_are_named(trail: Path) -> None:
    _sql(trail, ("UPDATE records SET seq = -1 WHERE seq = 10", ()),
         ("UPDATE records SET seq = 10 WHERE seq = 11", ()),
         ("UPDATE records SET seq = 11 WHERE seq = -1", ()))
    assert _problem(trail)[:2] == ("gw-1", 10)


def test_spec_audit_forged_row_after_checkpoint_is_refused(trail: Path) -> None:
    with sqlite3.connect(trail) as connection:
        seq, digest = connection.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    connection.close()
    body = b'{"instance":"gw-1","record":{"forged":true},"seq":%d}' % (seq + 1)
    _sql(trail, ("INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                 ("gw-1", seq + 1, hashlib.sha256(digest + body).digest(), digest, body)))
    instance, bad, reason = _problem(trail)
    assert (instance, bad) == ("gw-1", 51) and "no signed checkpoint" in reason
    # Accepting an unsigned tail (a live gateway) still says so.
    report = verify_database(trail, allow_unsigned_tail=True)
    assert report.ok and any("after seq 50" in warning for warning in report.warnings)


def test_spec_audit_rechained_edit_is_caught_by_checkpoint(trail: Path) -> None:
    # An attacker without the signing key rewrites record 5 and recomputes every later link.
    with sqlite3.connect(trail) as connection:
        rows = connection.execute("SELECT seq, prev, body FROM records WHERE seq >= 5 "
                                  "ORDER BY seq").fetchall()
        prev = rows[0][1]
        for seq, _, body in rows:
            if seq == 5:
                body = body.replace(b'"allow"', b'"deny!"')
            digest = hashlib.sha256(prev + body).digest()
            connection.execute("UPDATE records SET hash = ?, prev = ?, body = ? WHERE seq = ?",
                               (digest, prev, body, seq))
            prev = digest
    connection.close()
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 20) and "checkpoint" in reason


def test_spec_audit_truncated_tail_is_named(trail: Path) -> None:
    _sql(trail, ("DELETE FROM records WHERE seq > 45", ()))
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 50) and "truncated" in reason


def test_spec_audit_replaced_checkpoint_signature_is_named(trail: Path) -> None:
    _sql(trail, ("UPDATE checkpoints SET signature = ? WHERE seq = 20", (bytes(64),)))
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 20) and "signature" in reason


def test_spec_audit_changed_checkpoint_count_is_named(trail: Path) -> None:
    _sql(trail, ("UPDATE checkpoints SET count = 19 WHERE seq = 20", ()))
    assert _problem(trail)[:2] == ("gw-1", 20)


def test_spec_audit_other_key_is_refused(trail: Path) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    assert "signature" in _problem(trail, public_key=other)[2]


def test_spec_audit_record_moved_to_other_instance_is_named(trail: Path) -> None:
    # Renaming the chain breaks the signed checkpoints, the genesis link and the bodies.
    _sql(trail, ("UPDATE records SET instance = 'gw-2'", ()),
         ("UPDATE checkpoints SET instance = 'gw-2'", ()))
    assert _problem(trail)[:2] == ("gw-2", 20)
    _sql(trail, ("DELETE FROM checkpoints", ()))
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-2", 1) and "chain" in reason


async def test_spec_audit_two_instances_in_one_file(tmp_path: Path,
                                                    signing_key: Ed25519PrivateKey) -> None:
    db = tmp_path / "shared.sqlite3"
    await write_trail(db, signing_key, 5, instance="a")
    await write_trail(db, signing_key, 7, instance="b")
    report = verify_database(db)
    assert report.ok and report.records == {"a": 5, "b": 7}


def test_spec_audit_verify_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AuditStoreError, match="no such audit database"):
        verify_database(tmp_path / "missing.sqlite3")
    other = tmp_path / "other.sqlite3"
    _sql(other, ("CREATE TABLE t(x)", ()))
    with pytest.raises(AuditStoreError, match="not an audit database"):
        verify_database(other)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(AuditStoreError):
        verify_database(garbage)


def test_spec_audit_inserted_record_is_named(trail: Path) -> None:
    # Renumber the records after seq 10 and slip in one chained from seq 10.
    with sqlite3.connect(trail) as connection:
        connection.execute("UPDATE records SET seq = seq + 1000 WHERE seq > 10")
        connection.execute("UPDATE records SET seq = seq - 999 WHERE seq > 1000")
        prev = connection.execute("SELECT hash FROM records WHERE seq = 10").fetchone()[0]
        body = b'{"instance":"gw-1","record":{"forged":true},"seq":11}'
        connection.execute("INSERT INTO records VALUES ('gw-1', 11, ?, ?, ?)",
                           (hashlib.sha256(prev + body).digest(), prev, body))
    connection.close()
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 12) and "chain" in reason


def test_spec_audit_checkpoint_forged_with_other_key_is_named(trail: Path) -> None:
    # Truncate to 45 and sign a new final checkpoint with the attacker's own key.
    attacker = Ed25519PrivateKey.generate()
    with sqlite3.connect(trail) as connection:
        connection.execute("DELETE FROM records WHERE seq > 45")
        connection.execute("DELETE FROM checkpoints WHERE seq = 50")
        head = connection.execute("SELECT hash FROM records WHERE seq = 45").fetchone()[0]
        point = Checkpoint("gw-1", 45, head, 45, 1.0)
        raw = base64.b64decode(public_key_raw_b64(attacker.public_key()))
        connection.execute("INSERT INTO checkpoints VALUES ('gw-1', 45, ?, 45, 1.0, ?, ?)",
                           (head, point.sign(attacker), raw))
    connection.close()
    instance, seq, reason = _problem(trail)
    assert (instance, seq) == ("gw-1", 20) and "different keys" in reason
