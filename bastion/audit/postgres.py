"""The PostgreSQL audit store (asyncpg): the same tables and keys as SQLite, `bytea` bodies.

`PostgresStore` is the writer's `AuditStore`: one connection (the writer is one task),
each batch copied in with `COPY` and its checkpoint inserted in the same transaction.
`PostgresReader` is the `AuditReader` for verification and queries, paging each chain by
seq. Several gateway replicas may share a database: each writes its own instance's chain,
and the schema is created under an advisory lock so simultaneous first starts do not race.
A DSN names a password at most in `mask_dsn` form in anything logged or raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bastion.audit.query import RecordQuery, StoredRecord, postgres_select
from bastion.audit.store import (
    CHUNK,
    AuditStoreError,
    ChainRow,
    CheckpointRow,
    Row,
    SignedCheckpoint,
)

CONNECT_TIMEOUT = 10.0
#: No single statement may hang the writer or a CLI command longer than this.
COMMAND_TIMEOUT = 60.0
_SCHEMA_LOCK = 0x6261_7374_696F_6E  # "bastion": serialises CREATE TABLE across replicas
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    instance TEXT NOT NULL, seq BIGINT NOT NULL, hash BYTEA NOT NULL, prev BYTEA NOT NULL,
    body BYTEA NOT NULL, PRIMARY KEY(instance, seq));
CREATE TABLE IF NOT EXISTS checkpoints(
    instance TEXT NOT NULL, seq BIGINT NOT NULL, head BYTEA NOT NULL, count BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL, signature BYTEA NOT NULL, public_key BYTEA NOT NULL,
    PRIMARY KEY(instance, seq));
"""
_SECRET_PARAMETERS = {"password", "sslpassword", "passfile"}


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***` (for messages and logs)."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{hostport}"
        query = urlencode([(key, "***" if key.lower() in _SECRET_PARAMETERS else value)
                           for key, value in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="/")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable PostgreSQL DSN>"


def _secrets(dsn: str) -> list[str]:
    try:
        parts = urlsplit(dsn)
        found = [parts.password or ""]
        found += [value for key, value in parse_qsl(parts.query)
                  if key.lower() in _SECRET_PARAMETERS]
    except ValueError:
        return []
    return [secret for secret in found if len(secret) >= 3]


def _scrub(dsn: str, text: str) -> str:
    # Drivers sometimes echo connection parameters in their messages.
    for secret in _secrets(dsn):
        text = text.replace(secret, "***")
    return text


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection to `dsn`; AuditStoreError (naming host and database, never the
    password) when it cannot be made."""
    if not dsn.startswith(("postgres://", "postgresql://")):
        raise AuditStoreError(mask_dsn(dsn), "a PostgreSQL DSN must start with postgresql://")
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT,
                                     command_timeout=COMMAND_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            ValueError) as exc:
        detail = _scrub(dsn, str(exc) or type(exc).__name__)
        raise AuditStoreError(mask_dsn(dsn), f"cannot connect to the audit database: {detail}; "
                              "check the host, port, database name and credentials") from None


class _Connected:
    """A DSN and, once opened, its connection; database errors become AuditStoreError."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.description = mask_dsn(dsn)
        self._connection: asyncpg.Connection | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"

    def _live(self) -> asyncpg.Connection:
        if self._connection is None:
            raise AuditStoreError(self.description, "the audit store is not open")
        return self._connection

    def _error(self, exc: Exception, doing: str) -> AuditStoreError:
        return AuditStoreError(self.description,
                               f"cannot {doing} the audit database: {_scrub(self._dsn, str(exc))}")

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close(timeout=CONNECT_TIMEOUT)


_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresStore(_Connected):
    """`AuditStore` on PostgreSQL."""

    async def open(self) -> None:
        self._connection = await connect(self._dsn)
        try:
            async with self._connection.transaction():
                await self._connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await self._connection.execute(_SCHEMA)
        except _DB_ERRORS as exc:
            await self.close()
            raise self._error(exc, "create the tables of") from None

    async def head(self, instance: str) -> tuple[int, bytes] | None:
        try:
            row = await self._live().fetchrow("SELECT seq, hash FROM records WHERE instance "
                                              "= $1 ORDER BY seq DESC LIMIT 1", instance)
            return None if row is None else (int(row[0]), bytes(row[1]))
        except _DB_ERRORS as exc:
            raise self._error(exc, "read") from None

    async def last_checkpoint_seq(self, instance: str) -> int:
        try:
            value = await self._live().fetchval("SELECT max(seq) FROM checkpoints "
                                                "WHERE instance = $1", instance)
            return int(value) if value is not None else 0
        except _DB_ERRORS as exc:
            raise self._error(exc, "read") from None

    async def write_batch(self, rows: list[Row], checkpoint: SignedCheckpoint | None) -> None:
        connection = self._live()
        try:
            async with connection.transaction():
                if rows:
                    await connection.copy_records_to_table(
                        "records", records=rows,
                        columns=("instance", "seq", "hash", "prev", "body"))
                if checkpoint is not None:
                    point, signature, public_key = checkpoint
                    await connection.execute(
                        "INSERT INTO checkpoints(instance, seq, head, count, time, signature, "
                        "public_key) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                        "ON CONFLICT (instance, seq) DO UPDATE SET head = EXCLUDED.head, "
                        "count = EXCLUDED.count, time = EXCLUDED.time, "
                        "signature = EXCLUDED.signature, public_key = EXCLUDED.public_key",
                        point.instance, point.seq, point.head, point.count, point.time,
                        signature, public_key)
        except _DB_ERRORS as exc:
            raise self._error(exc, "write to") from None


class PostgresReader(_Connected):
    """`AuditReader` on PostgreSQL; `await PostgresReader.open(dsn)`."""

    @classmethod
    async def open(cls, dsn: str) -> PostgresReader:
        reader = cls(dsn)
        reader._connection = await connect(dsn)
        try:
            tables = {row[0] for row in await reader._connection.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()")}
        except _DB_ERRORS as exc:
            await reader.close()
            raise reader._error(exc, "read") from None
        if not {"records", "checkpoints"} <= tables:
            await reader.close()
            raise AuditStoreError(reader.description, "not an audit database (no records or "
                                  "checkpoints table)")
        return reader

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self._live().fetch(sql, *args))
        except _DB_ERRORS as exc:
            raise self._error(exc, "read") from None

    async def instances(self) -> list[str]:
        return [row[0] for row in await self._fetch(
            "SELECT instance FROM records UNION SELECT instance FROM checkpoints")]

    async def chain(self, instance: str) -> AsyncIterator[list[ChainRow]]:
        after = -(2 ** 63)
        while True:
            rows = await self._fetch(
                "SELECT seq, hash, prev, body FROM records WHERE instance = $1 AND seq > $2 "
                "ORDER BY seq LIMIT $3", instance, after, CHUNK)
            if not rows:
                return
            yield [(row[0], row[1], row[2], row[3]) for row in rows]
            after = rows[-1][0]

    async def checkpoints(self, instance: str) -> list[CheckpointRow]:
        return [tuple(row) for row in await self._fetch(  # type: ignore[misc]
            "SELECT seq, head, count, time, signature, public_key FROM checkpoints "
            "WHERE instance = $1 ORDER BY seq", instance)]

    async def query(self, query: RecordQuery) -> list[StoredRecord]:
        sql, parameters = postgres_select(query)
        return [StoredRecord.from_row(*row) for row in await self._fetch(sql, *parameters)]
