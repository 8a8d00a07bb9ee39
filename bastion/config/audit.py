"""The `audit:` section: where the tamper-evident audit trail is written and how.

Not part of the gateway's configuration file yet: the gateway writes no records until the
audit stage is wired (issue 8); `bastion.audit.AuditLog` and `bastion audit verify` work.

```yaml
audit:
  sqlite: audit.sqlite3        # relative to the config file; default <state_dir>/audit.sqlite3
  instance: gw-eu-1            # the chain's id; default: the host name
  queue_size: 10000            # records waiting for the writer
  full_policy: block           # block the call, or drop (counted, alerted, noted in the trail)
  batch_size: 1000             # records per transaction at most
  flush_ms: 50                 # a batch waits at most this long for more records
  checkpoint_every: 10000      # a signed checkpoint every N records ...
  checkpoint_seconds: 60       # ... or every T seconds with new records, and at shutdown
```
The signing key is `<state_dir>/audit-signing.key`, generated at first start.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_AUDIT_DB = "audit.sqlite3"


class AuditConfig(BaseModel):
    """The whole `audit:` section."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sqlite: Path | None = None
    instance: str | None = Field(default=None, min_length=1, max_length=256)
    queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    full_policy: Literal["block", "drop"] = "block"
    batch_size: int = Field(default=1_000, ge=1, le=100_000)
    flush_ms: int = Field(default=50, ge=1, le=60_000)
    checkpoint_every: int = Field(default=10_000, ge=1, le=100_000_000)
    checkpoint_seconds: float = Field(default=60.0, gt=0, le=86_400)

    def database(self, state_dir: Path, base_dir: Path | None = None) -> Path:
        """The SQLite file: `sqlite` (relative to `base_dir`) or the state directory's."""
        if self.sqlite is None:
            return state_dir / DEFAULT_AUDIT_DB
        path = self.sqlite.expanduser()
        return path if path.is_absolute() else (base_dir or Path.cwd()) / path

    def instance_id(self) -> str:
        """The chain's instance id: configured, or the host name."""
        return self.instance or socket.gethostname() or "bastion"
