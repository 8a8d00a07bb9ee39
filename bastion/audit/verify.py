"""Verification of an audit database: chains, checkpoint signatures, heads and counts.

Reads each instance's records in seq order with a plain cursor, recomputes every link and
checks each body names its instance and seq; then checks each checkpoint's Ed25519
signature and that a record with its seq exists with its head hash and count. The first
problem is reported with the instance and seq it concerns. Records after the last
checkpoint are not signed: a failure unless `allow_unsigned_tail` (a running or crashed
gateway leaves such a tail until its next checkpoint).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit import store
from bastion.audit.chain import genesis
from bastion.audit.signing import Checkpoint
from bastion.audit.writer import body_prefix

_FETCH = 4096


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first thing wrong with a trail."""

    instance: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"instance {self.instance!r}, seq {self.seq}: {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    """What verification found: counts per instance, the first problem, warnings."""

    records: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, int] = field(default_factory=dict)
    problem: AuditProblem | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Failed(Exception):
    def __init__(self, problem: AuditProblem) -> None:
        self.problem = problem


def verify_database(path: Path, public_key: Ed25519PublicKey | None = None, *,
                    allow_unsigned_tail: bool = False) -> VerifyReport:
    """Verify the audit database at `path`. Without `public_key` the key stored with the
    checkpoints is trusted (a warning says so). AuditStoreError if it cannot be read."""
    connection = store.open_for_reading(path)
    report = VerifyReport()
    try:
        if public_key is None:
            report.warnings.append("no --public-key given: checkpoints are checked against "
                                   "the key stored in the database, which proves integrity "
                                   "only against someone without the signing key")
        instances = [row[0] for row in connection.execute(
            "SELECT instance FROM records UNION SELECT instance FROM checkpoints")]
        for instance in instances:
            _verify_instance(connection, instance, public_key, allow_unsigned_tail, report)
    except _Failed as failed:
        report.problem = failed.problem
    except sqlite3.Error as exc:
        raise store.AuditStoreError(path, f"cannot read the audit database: {exc}") from None
    finally:
        connection.close()
    return report


def _verify_instance(connection: sqlite3.Connection, instance: str,
                     public_key: Ed25519PublicKey | None, allow_unsigned_tail: bool,
                     report: VerifyReport) -> None:
    checkpoints = _checkpoints(connection, instance, public_key)
    report.checkpoints[instance] = len(checkpoints)
    cursor = connection.execute("SELECT seq, hash, prev, body FROM records WHERE instance = ? "
                                "ORDER BY seq", (instance,))
    prefix, sha256 = body_prefix(instance), hashlib.sha256
    prev = genesis(instance)
    expected = 1
    position = 0
    next_point = checkpoints[0] if checkpoints else None
    while rows := cursor.fetchmany(_FETCH):
        for seq, digest, stored_prev, body in rows:
            if seq != expected:
                _fail(instance, expected, f"record missing (next stored record is seq {seq}): "
                      "deleted, reordered or inserted records")
            if stored_prev != prev:
                _fail(instance, seq, "does not chain from the previous record: a record "
                      "before it was changed, removed or reordered")
            if not (body.startswith(prefix) and body.endswith(b',"seq":%d}' % seq)):
                _fail(instance, seq, "its body names another instance or seq: moved record")
            prev = sha256(prev + body).digest()
            if digest != prev:
                _fail(instance, seq, "its content does not match its hash: edited record")
            expected += 1
            if next_point is not None and next_point.seq == seq:
                if next_point.head != prev or next_point.count != seq:
                    _fail(instance, seq, "differs from the signed checkpoint (head hash or "
                          "count): records were replaced")
                position += 1
                next_point = checkpoints[position] if position < len(checkpoints) else None
    last = expected - 1
    report.records[instance] = last
    if next_point is not None:
        _fail(instance, next_point.seq, f"the signed checkpoint covers seq {next_point.seq} "
              f"({next_point.count} records) but the trail ends at seq {last}: truncated")
    signed = checkpoints[-1].seq if checkpoints else 0
    if last > signed:
        message = (f"{last - signed} record(s) after seq {signed} are covered by no signed "
                   "checkpoint (a running or crashed gateway, or appended records)")
        if not allow_unsigned_tail:
            _fail(instance, signed + 1, message)
        report.warnings.append(f"instance {instance!r}: {message}")


def _checkpoints(connection: sqlite3.Connection, instance: str,
                 public_key: Ed25519PublicKey | None) -> list[Checkpoint]:
    points = []
    for seq, head, count, when, signature, key_bytes in connection.execute(
            "SELECT seq, head, count, time, signature, public_key FROM checkpoints "
            "WHERE instance = ? ORDER BY seq", (instance,)):
        point = Checkpoint(instance, seq, bytes(head), count, when)
        key = public_key if public_key is not None else _stored_key(instance, seq, key_bytes)
        if not point.verify(key, bytes(signature)):
            _fail(instance, seq, "the checkpoint's signature is not valid: forged or altered "
                  "checkpoint" + ("" if public_key is None else ", or signed by another key"))
        points.append(point)
    if public_key is None and len({bytes(row[0]) for row in connection.execute(
            "SELECT DISTINCT public_key FROM checkpoints WHERE instance = ?", (instance,))}) > 1:
        _fail(instance, points[0].seq, "checkpoints are signed by different keys; verify with "
              "--public-key")
    return points


def _stored_key(instance: str, seq: int, raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes(raw))
    except ValueError:
        _fail(instance, seq, "the checkpoint's public key is not an Ed25519 key")


def _fail(instance: str, seq: int, reason: str) -> NoReturn:
    raise _Failed(AuditProblem(instance, seq, reason))

