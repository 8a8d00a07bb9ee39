"""What the Streamable HTTP endpoint asks of an authenticator, and how it refuses a request.

The endpoint knows nothing of tokens: it hands every request's headers to an
`HttpAuthenticator` (the gateway brings one built from its `auth` configuration) before it
reads a body, and every parsed request to `check_access` before any handler runs. A refusal
is an `AuthChallenge`: an HTTP status (400 malformed, 401 missing or invalid, 403
insufficient scope) with the `WWW-Authenticate` value the client needs to recover (RFC 6750
§3, RFC 9728 §5.1), answered before anything else happens, so a refused request has no side
effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.protocol.principal import Principal


class AuthChallenge(Exception):
    """An HTTP request refused for its credentials (see the module doc).

    `error` is the RFC 6750 error code (`invalid_request`, `invalid_token`,
    `insufficient_scope`), or None when no credential was presented at all.
    """

    def __init__(self, status: int, message: str, *, www_authenticate: str,
                 error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.www_authenticate = www_authenticate
        self.error = error


@dataclass(frozen=True, slots=True)
class AuthRefusal:
    """A request refused for its credentials, as the endpoint reports it (for the audit
    trail and metrics): never the credential itself."""

    status: int
    error: str | None
    message: str
    #: The JSON-RPC method and id when the body was read (a scope refusal), else None.
    method: str | None
    request_id: Any
    #: The peer address and User-Agent, as the connection gave them.
    remote: str | None
    user_agent: str | None


#: Told of every refusal; must not raise.
RefusalHook = Callable[[AuthRefusal], Awaitable[None]]


class HttpAuthenticator(Protocol):
    """Authentication and scope checks for the HTTP endpoint."""

    async def authenticate(self, headers: Mapping[str, str], query_string: bytes) -> Principal:
        """The principal behind a request (lower-case header names), or `AuthChallenge`."""
        ...

    def check_access(self, principal: Principal, method: str, params: dict[str, Any]) -> None:
        """Raise `AuthChallenge` (403 `insufficient_scope`) when the token's scopes do not
        cover this JSON-RPC request."""
        ...
