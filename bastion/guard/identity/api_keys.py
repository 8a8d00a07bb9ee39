"""Bastion API keys: long-lived credentials for agents that cannot run an OAuth flow.

A key reads `bst_<id>_<secret>`: `id` is 12 hex digits (public, it names the key in lists,
logs and the audit trail), `secret` is 32 random bytes in base64url. The store keeps only the
SHA-256 of the secret. A slow password hash (scrypt, argon2) would add nothing: it exists to
make guessing low-entropy passwords expensive, and a 256-bit random secret cannot be guessed
at any speed; a fast hash keeps the check cheap on every request.

`ApiKeyStore` is the SQLite file `<state_dir>/api_keys.sqlite3` (mode 0600) the `bastion keys`
commands write. `ApiKeyVerifier` is what the gateway checks keys with: an in-memory snapshot
of the store, reloaded in a worker thread every 2 seconds, so no request waits on the disk. A
revoked key is therefore refused at most ~2 seconds after `bastion keys revoke` returns. If
the store cannot be read for 30 seconds, keys are refused (fail closed), since revocations
could no longer be seen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bastion.config.keys import ensure_private_file
from bastion.guard.identity.errors import InvalidToken, KeysUnavailable
from bastion.guard.refresh import SnapshotRefresher
from bastion.protocol.principal import Principal

log = logging.getLogger(__name__)

KEY_PREFIX = "bst_"
API_KEY_ISSUER = "bastion:api-key"
STORE_FILE = "api_keys.sqlite3"
REFRESH_INTERVAL = 2.0
#: The snapshot is trusted this long after the last successful reload, then keys are refused.
MAX_SNAPSHOT_AGE = 30.0
_KEY = re.compile(r"bst_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    roles TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
)"""
_COLUMNS = "id, digest, name, subject, roles, scopes, created_at, expires_at, revoked_at"


class ApiKeyError(Exception):
    """A key store operation failed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One key as stored (no secret: only its digest, kept out of repr)."""

    id: str
    name: str
    subject: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    digest: bytes = field(default=b"", repr=False)

    def state(self, now: float) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def _secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_api_key(token: str) -> tuple[str, str]:
    """`(id, secret)` of a key; `InvalidToken` when it is not shaped like one."""
    match = _KEY.fullmatch(token)
    if match is None:
        raise InvalidToken("the credential starts like a Bastion API key but is not one "
                           "(bst_<12 hex digits>_<43 base64url characters>)")
    try:
        secret = base64.urlsafe_b64decode(match.group(2) + "=")
    except binascii.Error:
        secret = b""
    if len(secret) != 32:
        raise InvalidToken("the API key's secret is malformed")
    return match.group(1), match.group(2)


def _check_values(values: Iterable[str], what: str) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(values))
    for value in cleaned:
        if not _NAME.fullmatch(value):
            raise ApiKeyError(f"{what} {value!r} is not valid: use up to 128 letters, digits "
                              "and '_.@:-', starting with a letter or digit")
    return cleaned


class ApiKeyStore:
    """The SQLite file of API keys (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ApiKeyStore:
        return cls(state_dir / STORE_FILE)

    @contextlib.contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            self._create_file()
        elif not self.path.exists():
            raise FileNotFoundError(self.path)
        try:
            connection = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ApiKeyError(f"cannot open the API key store {self.path}: {exc}") from None
        try:
            connection.execute(_SCHEMA)
            yield connection
        except sqlite3.Error as exc:
            raise ApiKeyError(f"the API key store {self.path} failed: {exc}") from None
        finally:
            connection.close()

    def _create_file(self) -> None:
        try:
            # Created 0600 before SQLite opens it; SQLite gives its journal the same mode.
            ensure_private_file(self.path)
        except OSError as exc:
            raise ApiKeyError(f"cannot create the API key store {self.path}: "
                              f"{exc.strerror or exc}; check the state directory") from None

    def create(self, *, name: str, subject: str, roles: Iterable[str] = (),
               scopes: Iterable[str] = (), expires_at: float | None = None,
               now: float | None = None) -> tuple[str, ApiKeyRecord]:
        """A new key: `(the key, its record)`. The key is shown once and never stored."""
        (name,) = _check_values([name], "name")
        (subject,) = _check_values([subject], "subject")
        created = time.time() if now is None else now
        if expires_at is not None and expires_at <= created:
            raise ApiKeyError("the expiry must be in the future")
        key_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        record = ApiKeyRecord(key_id, name, subject, _check_values(roles, "role"),
                              _check_values(scopes, "scope"), created, expires_at,
                              digest=_secret_digest(secret))
        with self._connect(create=True) as db:
            db.execute(f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                       (record.id, record.digest.hex(), name, subject,
                        orjson.dumps(record.roles).decode(), orjson.dumps(record.scopes).decode(),
                        created, expires_at, None))
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def list(self) -> list[ApiKeyRecord]:
        """Every key, oldest first (an absent store holds none)."""
        try:
            with self._connect(create=False) as db:
                rows = db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id"
                                  ).fetchall()
        except FileNotFoundError:
            return []
        return [_record(row) for row in rows]

    def revoke(self, key_id: str, *, now: float | None = None) -> ApiKeyRecord:
        """Mark a key revoked (once; revoking again keeps the first time)."""
        try:
            with self._connect(create=False) as db:
                db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS "
                           "NULL", (time.time() if now is None else now, key_id))
                row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?",
                                 (key_id,)).fetchone()
        except FileNotFoundError:
            row = None
        if row is None:
            raise ApiKeyError(f"no API key has the id {key_id!r}; see `bastion keys list`")
        return _record(row)


def _record(row: tuple) -> ApiKeyRecord:
    key_id, digest, name, subject, roles, scopes, created, expires, revoked = row
    return ApiKeyRecord(key_id, name, subject, tuple(orjson.loads(roles)),
                        tuple(orjson.loads(scopes)), created, expires, revoked,
                        digest=bytes.fromhex(digest))


class ApiKeyVerifier:
    """Checks presented keys against an in-memory snapshot of the store (see the module doc)."""

    def __init__(self, store: ApiKeyStore, *, refresh_interval: float = REFRESH_INTERVAL
                 ) -> None:
        self.store = store
        self._snapshot: dict[str, ApiKeyRecord] = {}
        self._refresher = SnapshotRefresher(self.reload, refresh_interval,
                                            max_age=MAX_SNAPSHOT_AGE, name="api-key-reload")

    async def start(self) -> None:
        """Load the store now, then keep reloading it in the background."""
        await self.reload()
        self._refresher.start()

    async def aclose(self) -> None:
        await self._refresher.aclose()

    async def reload(self) -> None:
        """Read the store into a fresh snapshot (in a worker thread)."""
        try:
            records = await asyncio.to_thread(self.store.list)
        except ApiKeyError as exc:
            log.warning("cannot reload the API keys (the last snapshot stays in use for up to "
                        "%g s): %s", MAX_SNAPSHOT_AGE, exc)
            return
        self._snapshot = {record.id: record for record in records}
        self._refresher.mark_fresh()

    def verify(self, token: str) -> Principal:
        """The principal of a presented key, or `InvalidToken`; memory only, no I/O."""
        key_id, secret = parse_api_key(token)
        if self._refresher.stale:
            raise KeysUnavailable("API keys cannot be checked right now (the key store is "
                                  "unreadable); try again later")
        record = self._snapshot.get(key_id)
        # Compared even for an unknown id, so timing says nothing about which ids exist.
        expected = record.digest if record is not None else bytes(32)
        matches = hmac.compare_digest(_secret_digest(secret), expected)
        if record is None or not matches:
            raise InvalidToken("the API key is not valid")
        # Only a holder of the secret learns why a real key is refused.
        now = time.time()
        state = record.state(now)
        if state != "active":
            raise InvalidToken(f"the API key is {state}; ask for a new one")
        return Principal(subject=record.subject, issuer=API_KEY_ISSUER, method="api_key",
                         client_id=record.name, roles=frozenset(record.roles),
                         scopes=frozenset(record.scopes), credential_id=record.id,
                         expires_at=record.expires_at)
