"""From the `audit:` configuration to a store: the gateway's `open_audit_log` and the CLI's
`open_reader`, choosing SQLite (default, in the state directory) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.postgres import PostgresReader, PostgresStore
from bastion.audit.store import AuditReader, AuditStore, SQLiteReader, SQLiteStore
from bastion.audit.writer import AuditLog
from bastion.config.audit import AuditConfig


def open_store(config: AuditConfig, *, state_dir: Path,
               base_dir: Path | None = None) -> AuditStore:
    """The configured store, not yet opened (`AuditLog.start()` opens it)."""
    dsn = config.dsn
    if dsn is not None:
        return PostgresStore(dsn)
    return SQLiteStore(config.database(state_dir, base_dir))


def open_audit_log(config: AuditConfig, *, state_dir: Path, base_dir: Path | None,
                   key: Ed25519PrivateKey, listener: str | None = None) -> AuditLog:
    """The gateway's audit log as configured (`listener`, e.g. the port, names the chain
    when `instance` does not); call `await log.start()` before `log()` and
    `await log.aclose()` at shutdown."""
    return AuditLog(open_store(config, state_dir=state_dir, base_dir=base_dir), key,
                    config.instance_id(listener), queue_size=config.queue_size,
                    full_policy=config.full_policy, batch_size=config.batch_size,
                    flush_interval=config.flush_ms / 1000,
                    checkpoint_every=config.checkpoint_every,
                    checkpoint_interval=config.checkpoint_seconds)


async def open_reader(*, db: Path | None = None, dsn: str | None = None) -> AuditReader:
    """A reader of the SQLite file `db` or the PostgreSQL database `dsn` (exactly one);
    AuditStoreError when it cannot be opened or is not an audit database."""
    if (db is None) == (dsn is None):
        raise ValueError("open_reader needs exactly one of db or dsn")
    if dsn is not None:
        return await PostgresReader.open(dsn)
    assert db is not None
    return SQLiteReader(db)
