"""The audit stores: the interface both backends implement, and the SQLite backend.

`AuditStore` is what `AuditLog` writes through; `AuditReader` is what verification and
queries read through. Both backends hold the same two tables: `records(instance, seq, hash,
prev, body)` and `checkpoints(instance, seq, head, count, time, signature, public_key)`,
keyed by (instance, seq). SQLite clusters them on that key (WITHOUT ROWID) so verification
reads each chain in order, in WAL mode so readers never block the writer. The module-level
functions block; `SQLiteStore` and `SQLiteReader` run them through `asyncio.to_thread`.
PostgreSQL is in `bastion.audit.postgres`.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, TypeVar

from bastion.audit.query import RecordQuery, StoredRecord, sqlite_select
from bastion.audit.signing import Checkpoint
from bastion.config.keys import ensure_private_file

#: (instance, seq, hash, prev, body): one record as stored.
Row = tuple[str, int, bytes, bytes, bytes]
#: (seq, hash, prev, body): one record of a known instance, as verification reads it.
ChainRow = tuple[int, bytes, bytes, bytes]
#: (seq, head, count, time, signature, public_key): one checkpoint of a known instance.
CheckpointRow = tuple[int, bytes, int, float, bytes, bytes]
#: A checkpoint with its signature and the signer's raw public key.
SignedCheckpoint = tuple[Checkpoint, bytes, bytes]
#: Records read per round trip by verification and exports.
CHUNK = 4096
_T = TypeVar("_T")

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
    """The audit database cannot be opened, read or written.

    `path` is the SQLite file, or the PostgreSQL DSN with its password masked."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class AuditStore(Protocol):
    """Where `AuditLog` writes: one writer task calls these, one at a time."""

    #: Names the database in messages (never with a password).
    description: str

    async def open(self) -> None:
        """Connect and create the schema if absent; AuditStoreError on failure."""

    async def head(self, instance: str) -> tuple[int, bytes] | None:
        """(seq, hash) of the instance's last record, or None if it has none."""

    async def last_checkpoint_seq(self, instance: str) -> int:
        """The seq of the instance's last checkpoint, 0 if none."""

    async def write_batch(self, rows: list[Row], checkpoint: SignedCheckpoint | None) -> None:
        """Insert records (and a checkpoint after them) in one transaction."""

    async def close(self) -> None:
        """Release the connection; idempotent."""


class AuditReader(Protocol):
    """What verification, `audit show|tail|export` read."""

    description: str

    async def instances(self) -> list[str]:
        """Every instance with records or checkpoints."""

    def chain(self, instance: str) -> AsyncIterator[list[ChainRow]]:
        """The instance's records in seq order, in chunks of at most CHUNK."""

    async def checkpoints(self, instance: str) -> list[CheckpointRow]:
        """The instance's checkpoints in seq order."""

    async def query(self, query: RecordQuery) -> list[StoredRecord]:
        """Records matching `query`, in its order, at most `query.limit`."""

    async def close(self) -> None:
        """Release the connection; idempotent."""


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
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False)
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


#: Rows per INSERT statement (5 parameters each: far below SQLite's 32,766).
_ROWS_PER_INSERT = 500


@functools.lru_cache(maxsize=64)
def _insert_records(count: int) -> str:
    return ("INSERT INTO records(instance, seq, hash, prev, body) VALUES "
            + ",".join(["(?, ?, ?, ?, ?)"] * count))


def write_batch(connection: sqlite3.Connection, rows: list[Row],
                checkpoint: SignedCheckpoint | None) -> None:
    """Insert records (and a checkpoint after them) in one transaction."""
    connection.execute("BEGIN")
    try:
        # Multi-row INSERTs, not executemany: the sqlite3 module releases and retakes the GIL
        # around every statement step, and with the event loop busy each retake is a thread
        # switch; one step per chunk keeps the writer thread from taxing the hot path.
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            connection.execute(_insert_records(len(chunk)),
                               [value for row in chunk for value in row])
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


def instances(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute(
        "SELECT instance FROM records UNION SELECT instance FROM checkpoints")]


def checkpoints(connection: sqlite3.Connection, instance: str) -> list[CheckpointRow]:
    return [(seq, bytes(head), count, when, bytes(signature), bytes(key))
            for seq, head, count, when, signature, key in connection.execute(
                "SELECT seq, head, count, time, signature, public_key FROM checkpoints "
                "WHERE instance = ? ORDER BY seq", (instance,))]


def chain_cursor(connection: sqlite3.Connection, instance: str) -> sqlite3.Cursor:
    """A cursor over the instance's (seq, hash, prev, body) in seq order."""
    return connection.execute("SELECT seq, hash, prev, body FROM records WHERE instance = ? "
                              "ORDER BY seq", (instance,))


def query(connection: sqlite3.Connection, request: RecordQuery) -> list[StoredRecord]:
    sql, parameters = sqlite_select(request)
    return [StoredRecord.from_row(*row) for row in connection.execute(sql, parameters)]


class SQLiteStore:
    """`AuditStore` on a SQLite file (created 0600, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise AuditStoreError(self.path, "the audit store is not open")
        return self._connection

    async def open(self) -> None:
        self._connection = await asyncio.to_thread(open_for_writing, self.path)

    async def head(self, instance: str) -> tuple[int, bytes] | None:
        return await asyncio.to_thread(head, self._open(), instance)

    async def last_checkpoint_seq(self, instance: str) -> int:
        return await asyncio.to_thread(last_checkpoint_seq, self._open(), instance)

    async def write_batch(self, rows: list[Row], checkpoint: SignedCheckpoint | None) -> None:
        await asyncio.to_thread(write_batch, self._open(), rows, checkpoint)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.to_thread(connection.close)


class SQLiteReader:
    """`AuditReader` on an existing SQLite file, read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self._connection = open_for_reading(path)

    async def _call(self, function: Callable[..., _T], *args: object) -> _T:
        try:
            return await asyncio.to_thread(function, self._connection, *args)
        except sqlite3.Error as exc:
            raise AuditStoreError(self.path, f"cannot read the audit database: {exc}") from None

    async def instances(self) -> list[str]:
        return await self._call(instances)

    async def chain(self, instance: str) -> AsyncIterator[list[ChainRow]]:
        cursor = await self._call(chain_cursor, instance)
        while rows := await asyncio.to_thread(cursor.fetchmany, CHUNK):
            yield rows

    async def checkpoints(self, instance: str) -> list[CheckpointRow]:
        return await self._call(checkpoints, instance)

    async def query(self, request: RecordQuery) -> list[StoredRecord]:
        return await self._call(query, request)

    async def close(self) -> None:
        self._connection.close()
