"""Verification of an audit trail: chains, checkpoint signatures, heads and counts.

`verify_database` reads a SQLite file synchronously (the fast path: a plain cursor);
`verify_store` reads any `AuditReader` (PostgreSQL, or SQLite) chunk by chunk. Both feed
the same checks: each instance's records in seq order, recomputing every link and
checks each body names its instance and seq; then checks each checkpoint's Ed25519
signature and that a record with its seq exists with its head hash and count. The first
problem is reported with the instance and seq it concerns. Records after the last
checkpoint are not signed: a failure unless `allow_unsigned_tail` (a running or crashed
gateway leaves such a tail until its next checkpoint).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit import store
from bastion.audit.chain import genesis
from bastion.audit.signing import Checkpoint
from bastion.audit.store import AuditReader, ChainRow, CheckpointRow
from bastion.audit.writer import body_prefix


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


def _key_warning(report: VerifyReport, public_key: Ed25519PublicKey | None) -> None:
    if public_key is None:
        report.warnings.append("no --public-key given: checkpoints are checked against the key "
                               "stored in the database, which proves integrity only against "
                               "someone without the signing key")


def verify_database(path: Path, public_key: Ed25519PublicKey | None = None, *,
                    allow_unsigned_tail: bool = False) -> VerifyReport:
    """Verify the SQLite audit database at `path`. Without `public_key` the key stored with
    the checkpoints is trusted (a warning says so). AuditStoreError if it cannot be read."""
    connection = store.open_for_reading(path)
    report = VerifyReport()
    _key_warning(report, public_key)
    try:
        for instance in store.instances(connection):
            chain = _Chain(instance, store.checkpoints(connection, instance), public_key)
            cursor = store.chain_cursor(connection, instance)
            while rows := cursor.fetchmany(store.CHUNK):
                chain.feed(rows)
            chain.finish(report, allow_unsigned_tail)
    except _Failed as failed:
        report.problem = failed.problem
    except sqlite3.Error as exc:
        raise store.AuditStoreError(path, f"cannot read the audit database: {exc}") from None
    finally:
        connection.close()
    return report


async def verify_store(reader: AuditReader, public_key: Ed25519PublicKey | None = None, *,
                       allow_unsigned_tail: bool = False) -> VerifyReport:
    """Verify every chain `reader` holds (see `verify_database`); AuditStoreError if it
    cannot be read. The reader stays open."""
    report = VerifyReport()
    _key_warning(report, public_key)
    try:
        for instance in await reader.instances():
            chain = _Chain(instance, await reader.checkpoints(instance), public_key)
            async for rows in reader.chain(instance):
                chain.feed(rows)
            chain.finish(report, allow_unsigned_tail)
    except _Failed as failed:
        report.problem = failed.problem
    return report


class _Chain:
    """One instance's chain, checked as its records are fed in seq order."""

    def __init__(self, instance: str, checkpoints: list[CheckpointRow],
                 public_key: Ed25519PublicKey | None) -> None:
        self.instance = instance
        self.checkpoints = _checked(instance, checkpoints, public_key)
        self.prefix = body_prefix(instance)
        self.prev = genesis(instance)
        self.expected = 1
        self.position = 0

    def _next_point(self) -> Checkpoint | None:
        return (self.checkpoints[self.position] if self.position < len(self.checkpoints)
                else None)

    def feed(self, rows: Iterable[ChainRow]) -> None:
        # The hot loop of verification: locals only, one SHA-256 per record.
        instance, prefix, sha256 = self.instance, self.prefix, hashlib.sha256
        prev, expected = self.prev, self.expected
        next_point = self._next_point()
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
                self.position += 1
                next_point = self._next_point()
        self.prev, self.expected = prev, expected

    def finish(self, report: VerifyReport, allow_unsigned_tail: bool) -> None:
        instance, last = self.instance, self.expected - 1
        report.checkpoints[instance] = len(self.checkpoints)
        report.records[instance] = last
        next_point = self._next_point()
        if next_point is not None:
            _fail(instance, next_point.seq, f"the signed checkpoint covers seq "
                  f"{next_point.seq} ({next_point.count} records) but the trail ends at seq "
                  f"{last}: truncated")
        signed = self.checkpoints[-1].seq if self.checkpoints else 0
        if last > signed:
            message = (f"{last - signed} record(s) after seq {signed} are covered by no signed "
                       "checkpoint (a running or crashed gateway, or appended records)")
            if not allow_unsigned_tail:
                _fail(instance, signed + 1, message)
            report.warnings.append(f"instance {instance!r}: {message}")


def _checked(instance: str, rows: list[CheckpointRow],
             public_key: Ed25519PublicKey | None) -> list[Checkpoint]:
    points = []
    for seq, head, count, when, signature, key_bytes in rows:
        point = Checkpoint(instance, seq, bytes(head), count, when)
        key = public_key if public_key is not None else _stored_key(instance, seq, key_bytes)
        if not point.verify(key, bytes(signature)):
            _fail(instance, seq, "the checkpoint's signature is not valid: forged or altered "
                  "checkpoint" + ("" if public_key is None else ", or signed by another key"))
        points.append(point)
    if public_key is None and len({bytes(row[5]) for row in rows}) > 1:
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
