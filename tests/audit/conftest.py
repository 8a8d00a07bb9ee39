"""Helpers for the audit tests: real SQLite and PostgreSQL trails written by a real
`AuditLog` (PostgreSQL: a private server started by `tests.postgres`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import AuditLog, AuditStore, load_or_create_signing_key
from tests.postgres import pg_dsn, postgres_server  # noqa: F401


async def write_trail(path: Path | AuditStore, key: Ed25519PrivateKey, count: int, *,
                      instance: str = "gw-1", **options: object) -> None:
    """Write `count` records (checkpoint every 20 unless told) and close the log."""
    options.setdefault("checkpoint_every", 20)
    options.setdefault("batch_size", 5)
    log = AuditLog(path, key, instance, **options)  # type: ignore[arg-type]
    await log.start()
    for number in range(count):
        await log.log({"method": "tools/call", "target": f"tool-{number}", "n": number,
                       "principal": {"sub": "alice"}, "decision": "allow"})
    await log.aclose()


@pytest.fixture
def signing_key(tmp_path: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key(tmp_path / "state")


@pytest.fixture(scope="session")
def pristine_trail(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(db, state_dir) of an intact 50-record trail of instance gw-1; copy before editing."""
    import asyncio

    base = tmp_path_factory.mktemp("pristine")
    key = load_or_create_signing_key(base / "state")
    asyncio.run(write_trail(base / "audit.sqlite3", key, 50))
    return base / "audit.sqlite3", base / "state"


@pytest.fixture
def trail(tmp_path: Path, pristine_trail: tuple[Path, Path]) -> Path:
    """A private copy of the pristine trail, to tamper with."""
    copy = tmp_path / "audit.sqlite3"
    shutil.copyfile(pristine_trail[0], copy)
    return copy
