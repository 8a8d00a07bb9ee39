"""The pins on disk: `<state_dir>/pins.sqlite3`, one approved definition per item.

A row is keyed by (server identity, kind, name) and holds the three digests of the approved
definition, the definition itself (for `bastion pin diff` and rename detection), who approved
it, when, and how (`cli`: `bastion pin approve`; `tofu`: trusted on first use by a gateway;
`config` rows are never written, the configuration's `pins.approved` is read as it is). A
revoked row stays as a tombstone (`revoked_at`), so that trust on first use cannot quietly
trust the item again.

The server identity is one Bastion controls (`server_identity`): the upstream's name in the
configuration and a SHA-256 of its exact command line and working directory, or of its URL.
Never what the server says about itself (`serverInfo.name`), which any server can copy.

`PinStore` reads and writes the file (mode 0600, in a 0700 directory); the gateway's
`PinChecker` keeps an in-memory snapshot and asks `signature()` every few seconds whether the
file changed, reading it again only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import orjson

from bastion.config.keys import ensure_private_file
from bastion.config.models import UpstreamConfig
from bastion.guard.pin.canonical import (
    KEY_FIELDS,
    MAX_CANONICAL_BYTES,
    PIN_KINDS,
    PinDigest,
    PinKind,
    canonical_json,
)

STORE_FILE = "pins.sqlite3"
PinSource = Literal["config", "cli", "tofu"]
PIN_SOURCES: tuple[PinSource, ...] = ("config", "cli", "tofu")
#: SQLite's "file change counter" (bytes 24-27 of the header) moves at every committed write.
_HEADER_BYTES = 100
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pins (
    server_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ({", ".join(repr(kind) for kind in PIN_KINDS)})),
    name TEXT NOT NULL,
    raw_digest TEXT NOT NULL,
    normalized_digest TEXT NOT NULL,
    body_digest TEXT NOT NULL,
    definition TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('cli', 'tofu')),
    revoked_at REAL,
    PRIMARY KEY (server_id, kind, name)
)"""
_COLUMNS = ("server_id, kind, name, raw_digest, normalized_digest, body_digest, definition, "
            "approved_by, approved_at, source, revoked_at")


class PinStoreError(Exception):
    """The pin store cannot be read or written; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class PinRecord:
    """One pinned item. `definition` is None for a pin the configuration gives by digest."""

    server_id: str
    kind: PinKind
    name: str
    digest: PinDigest
    definition: dict[str, Any] | None
    approved_by: str
    approved_at: float
    source: PinSource
    revoked_at: float | None = None

    @property
    def upstream(self) -> str:
        """The upstream's name in the configuration (the first part of the server id)."""
        return self.server_id.partition(":")[0]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def server_identity(upstream: UpstreamConfig) -> str:
    """The identity pins of `upstream` are keyed by: `<name>:stdio:<sha256>` over the exact
    command line and working directory, or `<name>:http:<sha256>` over the URL (scheme and
    host in lower case, no fragment). Hashed, because a command line or a URL may hold a
    credential; changing either makes every item of the upstream new again, on purpose."""
    if not upstream.name:
        raise ValueError("the upstream has no name (UpstreamConfig.name is empty)")
    if upstream.command is not None:
        target: dict[str, Any] = {"argv": [upstream.command, *upstream.args],
                                  "cwd": upstream.cwd}
    else:
        parts = urlsplit(upstream.url or "")
        userinfo, at, host = parts.netloc.rpartition("@")
        target = {"url": parts._replace(scheme=parts.scheme.lower(),
                                        netloc=userinfo + at + host.lower(),
                                        fragment="").geturl()}
    fingerprint = hashlib.sha256(canonical_json(target)).hexdigest()
    return f"{upstream.name}:{upstream.transport}:{fingerprint}"


@dataclass(frozen=True, slots=True)
class PinStore:
    """The SQLite file of pins at `path` (see the module doc)."""

    path: Path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> PinStore:
        return cls(state_dir / STORE_FILE)

    # -- reading ---------------------------------------------------------------------------

    def signature(self) -> tuple[int, ...] | None:
        """Changes whenever the file does (None when there is no file): its inode, size,
        modification time and SQLite's own change counter, which catches two writes within
        one tick of the file system's clock."""
        try:
            with open(self.path, "rb") as handle:
                info = os.fstat(handle.fileno())
                header = handle.read(_HEADER_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PinStoreError(f"cannot read the pin store {self.path}: "
                                f"{exc.strerror or exc}") from None
        return (info.st_ino, info.st_size, info.st_mtime_ns, int.from_bytes(header[24:28]))

    def load(self) -> list[PinRecord]:
        """Every row, revoked ones included (an absent file holds none)."""
        if not self.path.exists():
            return []
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM pins ORDER BY server_id, kind, name"
                              ).fetchall()
        return [self._record(row) for row in rows]

    def _record(self, row: tuple[Any, ...]) -> PinRecord:
        (server_id, kind, name, raw, normalized, body, definition, approved_by, approved_at,
         source, revoked_at) = row
        try:
            parsed = orjson.loads(definition)
            if not isinstance(parsed, dict) or kind not in KEY_FIELDS:
                raise ValueError("not a definition")
        except ValueError:
            raise PinStoreError(
                f"the pin store {self.path} is damaged (the {kind} {name!r} of {server_id} "
                "holds no readable definition); revoke it with `bastion pin revoke`, or move "
                "the file aside and approve again with `bastion pin approve`") from None
        return PinRecord(server_id, kind, name, PinDigest(raw, normalized, body), parsed,
                         approved_by, approved_at, source, revoked_at)

    # -- writing ---------------------------------------------------------------------------

    def approve(self, records: Iterable[PinRecord], *, replace: bool = True) -> int:
        """Write `records` in one transaction; `replace=False` keeps rows already there
        (trust on first use must never overwrite an approval or a revocation). Returns the
        number of rows written."""
        rows = [_row(record) for record in records]
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._connect(create=True) as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany(f"{verb} INTO pins ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           rows)
            db.execute("COMMIT")
            return db.total_changes - before

    def revoke(self, server_id: str, kind: PinKind, name: str, *,
               now: float | None = None) -> PinRecord:
        """Mark one pin revoked (the first time counts); `PinStoreError` if there is none."""
        if not self.path.exists():
            raise PinStoreError(f"there are no pins yet ({self.path} does not exist)")
        with self._connect() as db:
            db.execute("UPDATE pins SET revoked_at = ? WHERE server_id = ? AND kind = ? AND "
                       "name = ? AND revoked_at IS NULL",
                       (time.time() if now is None else now, server_id, kind, name))
            row = db.execute(f"SELECT {_COLUMNS} FROM pins WHERE server_id = ? AND kind = ? "
                             "AND name = ?", (server_id, kind, name)).fetchone()
        if row is None:
            raise PinStoreError(f"no {kind} {name!r} is pinned for upstream "
                                f"{server_id.partition(':')[0]!r}; see `bastion pin list`")
        return self._record(row)

    # -- the file --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        if create:
            self._ensure_file()
        try:
            # mode=rw: reading must never create an empty file where a store was expected.
            db = sqlite3.connect(f"file:{quote(str(self.path))}?mode=rw", uri=True,
                                 timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise PinStoreError(f"cannot open the pin store {self.path}: {exc}") from None
        try:
            db.execute(_SCHEMA)
            yield db
        except sqlite3.DatabaseError as exc:
            raise PinStoreError(
                f"the pin store {self.path} is damaged or locked ({exc}); if it stays so, "
                "move it aside and approve again with `bastion pin approve`") from None
        finally:
            db.close()

    def _ensure_file(self) -> None:
        """Create the file (0600, in a 0700 directory) before SQLite does (it would use the
        umask), and take group and other permissions off an existing one."""
        try:
            ensure_private_file(self.path)
        except OSError as exc:
            raise PinStoreError(f"cannot create the pin store {self.path}: "
                                f"{exc.strerror or exc}; check the state directory") from None


def _row(record: PinRecord) -> tuple[Any, ...]:
    if record.definition is None or record.source == "config":
        raise ValueError("only approved definitions are stored; configuration pins are read "
                         "from the configuration")
    try:
        definition = orjson.dumps(record.definition)
    except orjson.JSONEncodeError as exc:
        raise PinStoreError(f"the {record.kind} {record.name!r} cannot be stored: {exc}"
                            ) from None
    if len(definition) > MAX_CANONICAL_BYTES:
        raise PinStoreError(f"the {record.kind} {record.name!r} is too large to pin "
                            f"({len(definition)} bytes)")
    return (record.server_id, record.kind, record.name, record.digest.raw,
            record.digest.normalized, record.digest.body, definition.decode(),
            record.approved_by, record.approved_at, record.source, record.revoked_at)
