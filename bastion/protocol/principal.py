"""Who is behind a request: the principal every guard stage, the policy and the audit read.

A `Principal` is built once per request by whoever authenticated it (a JWT from an identity
provider, an API key, the development issuer, or the local user of a stdio gateway) and is
never taken from anything the client asserts without proof. It is immutable, carries no
credential, and says who the human is (`subject`), which agent acts for them (`client_id`,
with its client-metadata URL when the client id is one), what they may claim (`roles`,
`groups`, `scopes`) and the delegation chain (RFC 8693 `act`: the actors between the human
and the caller, outermost first).

`binding` is the string sessions, sealed state and task ids are bound to: the issuer, the
subject and the client together, so neither another user nor another agent of the same user
can take over what this one started.

Pure data; it lives in the protocol layer because every layer above hands it on.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import Any, Literal

AuthMethod = Literal["jwt", "api_key", "dev", "local", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (see the module doc)."""

    subject: str
    #: `iss` of a JWT; `bastion:api-key`, `bastion:dev` or `bastion:local` otherwise.
    issuer: str
    method: AuthMethod
    #: The agent: `azp` or `client_id` of the token, the API key's name.
    client_id: str | None = None
    #: The client id when it is an https URL (a Client ID Metadata Document).
    client_metadata_url: str | None = None
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    #: RFC 8693 actors between the subject and the caller, outermost first.
    delegation: tuple[str, ...] = ()
    #: `jti` of the token or the API key's id: which credential was used (never the secret).
    credential_id: str | None = None
    #: When the credential stops being valid (epoch seconds), if it says.
    expires_at: float | None = None
    #: The claims a policy may match on beyond the above (already size-bounded).
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def binding(self) -> str:
        """What state this principal starts is bound to: issuer, subject and agent."""
        return f"{self.issuer}\x00{self.subject}\x00{self.client_id or ''}"

    @property
    def authenticated(self) -> bool:
        return self.method != "anonymous"

    def for_audit(self) -> dict[str, Any]:
        """The record of who acted, for the audit trail and logs (no secret in it)."""
        record: dict[str, Any] = {"sub": self.subject, "iss": self.issuer,
                                  "method": self.method}
        if self.client_id is not None:
            record["client_id"] = self.client_id
        if self.delegation:
            record["delegation"] = list(self.delegation)
        if self.roles:
            record["roles"] = sorted(self.roles)
        if self.credential_id is not None:
            record["credential_id"] = self.credential_id
        return record


#: The caller of a gateway that authenticates nobody (loopback or stdio without `auth`).
ANONYMOUS = Principal(subject="anonymous", issuer="bastion:anonymous", method="anonymous")


def local_principal(roles: frozenset[str] = frozenset(), subject: str | None = None) -> Principal:
    """The user who started a stdio gateway: the operating-system account that runs it."""
    try:
        name = subject or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        name = "local"
    return Principal(subject=name, issuer="bastion:local", method="local", roles=roles,
                     client_id="stdio")
