"""The `audit:` section: where the tamper-evident audit trail is written and how.

```yaml
audit:
  sqlite: audit.sqlite3        # relative to the config file; default <state_dir>/audit.sqlite3
  # postgres: postgresql://bastion:${AUDIT_DB_PASSWORD}@db.internal/audit   # instead of sqlite
  instance: gw-eu-1            # the chain's id; default: host:port (host:pidN:n on stdio)
  queue_size: 10000            # records waiting for the writer
  full_policy: block           # block the call, or drop (counted, alerted, noted in the trail)
  batch_size: 1000             # records per transaction at most
  flush_ms: 50                 # a batch waits at most this long for more records
  checkpoint_every: 10000      # a signed checkpoint every N records ...
  checkpoint_seconds: 60       # ... or every T seconds with new records, and at shutdown
  arguments: redacted          # keep redacted call arguments, or only their digest (digest)
  max_argument_bytes: 4096     # larger redacted arguments are left out (digest kept)
```
The signing key is `<state_dir>/audit-signing.key`, generated at first start. Several
replicas may share one PostgreSQL database, each with its own `instance`. The DSN is kept as
a secret (masked in dumps and messages); put its password in an environment variable.
"""

from __future__ import annotations

import os
import socket
from itertools import count
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DEFAULT_AUDIT_DB = "audit.sqlite3"
#: Gateways of one process without a configured instance id get distinct chains.
_LOCAL_IDS = count(1)


class AuditConfig(BaseModel):
    """The whole `audit:` section."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sqlite: Path | None = None
    #: A PostgreSQL URI (`postgresql://user:password@host:port/database?sslmode=require`).
    postgres: SecretStr | None = None
    instance: str | None = Field(default=None, min_length=1, max_length=256)
    queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    full_policy: Literal["block", "drop"] = "block"
    batch_size: int = Field(default=1_000, ge=1, le=100_000)
    flush_ms: int = Field(default=50, ge=1, le=60_000)
    checkpoint_every: int = Field(default=10_000, ge=1, le=100_000_000)
    checkpoint_seconds: float = Field(default=60.0, gt=0, le=86_400)
    #: What a record keeps of a call's arguments besides their SHA-256 and size: the
    #: arguments after redaction (`redacted`), or nothing more (`digest`).
    arguments: Literal["redacted", "digest"] = "redacted"
    #: Redacted arguments larger than this are left out of the record (digest kept).
    max_argument_bytes: int = Field(default=4096, ge=0, le=32_768)

    @model_validator(mode="after")
    def _one_store(self) -> AuditConfig:
        # Checked here, not in a field validator: the config loader quotes a bad scalar
        # value in its message, and this one may hold a password.
        if self.sqlite is not None and self.postgres is not None:
            raise ValueError("audit: set sqlite or postgres, not both")
        dsn = self.dsn
        if dsn is not None and (not dsn.startswith(("postgresql://", "postgres://"))
                                or len(dsn) > 4096):
            raise ValueError("audit.postgres must be a URI starting with postgresql:// (such "
                             "as postgresql://user:${AUDIT_DB_PASSWORD}@host:5432/audit)")
        return self

    @property
    def dsn(self) -> str | None:
        """The PostgreSQL DSN (with its password), or None for SQLite."""
        return None if self.postgres is None else self.postgres.get_secret_value()

    def database(self, state_dir: Path, base_dir: Path | None = None) -> Path:
        """The SQLite file: `sqlite` (relative to `base_dir`) or the state directory's."""
        if self.sqlite is None:
            return state_dir / DEFAULT_AUDIT_DB
        path = self.sqlite.expanduser()
        return path if path.is_absolute() else (base_dir or Path.cwd()) / path

    def instance_id(self, listener: str | None = None) -> str:
        """The chain's instance id: configured, else the host and the listener (`:8000`),
        else (stdio, embedded) host, process and a counter, so gateways running side by side
        on one host never write the same chain."""
        if self.instance is not None:
            return self.instance
        host = socket.gethostname() or "bastion"
        if listener is not None:
            return f"{host}:{listener}"
        return f"{host}:pid{os.getpid()}:{next(_LOCAL_IDS)}"
