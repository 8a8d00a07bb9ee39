"""The SQLite file of the audit trail: its schema and the synchronous operations on it.

`records(instance, seq, hash, prev, body)` and `checkpoints(instance, seq, head, count, time,
signature, public_key)`, both keyed by (instance, seq) and clustered on it (WITHOUT ROWID) so
verification reads each chain in order. WAL mode: readers never block the writer.
Every function here blocks; the writer calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bastion.audit.signing import Checkpoint
from bastion.config.keys import ensure_private_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    instance TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, prev BLOB NOT NULL,
    body BLOB NOT NULL, PRIMARY KEY(instance, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints(
    instance TEXT NOT NULL, seq INTEGER NOT NULL, head BLOB NOT NULL, count INTEGER NOT NULL,
    time REAL NOT NULL, signature BLOB NOT NULL, public_key BLOB NOT NULL,
    PRIMARY KEY(instance, seq)) WITHOUT ROWID;
"""


class AuditStoreError(Exception):
    """The audit database cannot be opened, read or written."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def open_for_writing(path: Path) -> sqlite3.Connection:
    """Open (creating, 0600) the audit database with its schema, in WAL mode."""
    try:
        ensure_private_file(path)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise AuditStoreError(path, f"cannot open the audit database: {exc}; check the path "
                              "and its permissions") from None
    return connection


def open_for_reading(path: Path) -> sqlite3.Connection:
    """Open an existing audit database read-only; AuditStoreError if it is not one."""
    if not path.is_file():
        raise AuditStoreError(path, "no such audit database; pass the file set in audit.sqlite")
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise AuditStoreError(path, f"cannot read the audit database: {exc}") from None
    if not {"records", "checkpoints"} <= tables:
        connection.close()
        raise AuditStoreError(path, "not an audit database (no records or checkpoints table)")
    return connection


def head(connection: sqlite3.Connection, instance: str) -> tuple[int, bytes] | None:
    """(seq, hash) of the instance's last record, or None if it has none."""
    row = connection.execute("SELECT seq, hash FROM records WHERE instance = ? "
                             "ORDER BY seq DESC LIMIT 1", (instance,)).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def last_checkpoint_seq(connection: sqlite3.Connection, instance: str) -> int:
    row = connection.execute("SELECT max(seq) FROM checkpoints WHERE instance = ?",
                             (instance,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def write_batch(connection: sqlite3.Connection,
                rows: list[tuple[str, int, bytes, bytes, bytes]],
                checkpoint: tuple[Checkpoint, bytes, bytes] | None) -> None:
    """Insert records (and a checkpoint after them) in one transaction."""
    connection.execute("BEGIN")
    try:
        connection.executemany(
            "INSERT INTO records(instance, seq, hash, prev, body) VALUES (?, ?, ?, ?, ?)", rows)
        if checkpoint is not None:
            point, signature, public_key = checkpoint
            connection.execute(
                "INSERT OR REPLACE INTO checkpoints(instance, seq, head, count, time, "
                "signature, public_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (point.instance, point.seq, point.head, point.count, point.time, signature,
                 public_key))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
