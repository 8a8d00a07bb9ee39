"""The `pins:` section of the configuration: how tool, prompt and template definitions are pinned.

```yaml
pins:
  mode: auto        # auto | tofu | strict
                    #   tofu: an item never seen before is trusted and pinned on first use
                    #   strict: it is quarantined until `bastion pin approve`
                    #   auto (default): tofu when the gateway listens on loopback only, else strict
  approved:         # pre-approved definitions, by digest (see `bastion pin list`)
    - server: siem                 # the upstream's name under mcpServers
      kind: tool                   # tool | prompt | template | instructions (default: tool)
      name: search                 # the upstream's own name (a template's uriTemplate)
      sha256: 9f2c...              # the raw digest: 64 hex digits
```

In every mode a changed or renamed item is quarantined until approved again; only a new name
is trusted on first use. An entry matches by (server, kind, name, digest) together, never by
digest alone. `check_upstreams` reports entries that name no configured upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

PinKind = Literal["tool", "prompt", "template", "instructions"]
PIN_KINDS: tuple[PinKind, ...] = ("tool", "prompt", "template", "instructions")
PinMode = Literal["auto", "tofu", "strict"]
#: Longest item name (a URI template can be long), and most entries one file may list.
MAX_NAME_LENGTH = 8192
MAX_APPROVED = 10_000
_SHA256 = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def parse_sha256(value: str) -> str:
    """A digest as 64 lower-case hex digits (`sha256:` prefix allowed); ValueError otherwise."""
    match = _SHA256.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("sha256 must be 64 hex digits (the digest `bastion pin list` shows)")
    return match.group(1).lower()


class ApprovedPin(_Model):
    """One pre-approved definition: (server, kind, name, digest)."""

    server: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    kind: PinKind = "tool"
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        return parse_sha256(value)


class PinsConfig(_Model):
    """Pinning of definitions (see the module doc)."""

    mode: PinMode = "auto"
    approved: list[ApprovedPin] = Field(default_factory=list, max_length=MAX_APPROVED)

    def effective_mode(self, *, loopback: bool) -> Literal["tofu", "strict"]:
        """`tofu` or `strict`; `auto` is `tofu` only when every listener is on loopback."""
        if self.mode == "auto":
            return "tofu" if loopback else "strict"
        return self.mode

    def check_upstreams(self, names: Iterable[str]) -> None:
        """ValueError naming every `approved` entry whose server is not a configured upstream."""
        known = set(names)
        unknown = sorted({entry.server for entry in self.approved if entry.server not in known})
        if unknown:
            raise ValueError(f"pins.approved names upstreams that are not configured: "
                             f"{', '.join(unknown)}; known upstreams: "
                             f"{', '.join(sorted(known)) or '(none)'}")
