"""Where OAuth tokens and client registrations live between requests (and restarts).

Tokens are keyed by (issuer, resource): a token is only ever sent to the resource it was
issued for, by the authorization server that issued it (SPEC-TP-05). Client registrations
are keyed by issuer alone: a `client_id` belongs to the authorization server that issued it
and is never presented to another (SPEC-AUTH-09). One store serves one user: a gateway that
holds tokens for many users gives each its own store (or namespaces the keys).

`TokenStore` is what the OAuth client needs; `MemoryTokenStore` keeps everything in this
process, bounded. A persistent store must keep secrets encrypted at rest (SPEC-AUTH-12).
None of the types here shows a secret in its `repr`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Protocol

#: How a client proves itself at the token endpoint (RFC 8414 §2 names).
TokenAuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
#: Where a client identity came from (SPEC-AUTH-10).
ClientSource = Literal["pre-registered", "cimd", "dcr"]


@dataclass(frozen=True, slots=True)
class TokenSet:
    """What a token endpoint granted, and for whom."""

    access_token: str = field(repr=False)
    issuer: str
    resource: str
    client_id: str
    #: What the client asked for (the step-up union starts from it).
    requested_scopes: frozenset[str] = frozenset()
    #: What the server says it granted (the requested scopes when it does not say).
    scopes: frozenset[str] = frozenset()
    #: Epoch seconds, when the server said how long the token lives.
    expires_at: float | None = None
    refresh_token: str | None = field(default=None, repr=False)

    @property
    def authorization(self) -> str:
        """The `Authorization` header value."""
        return f"Bearer {self.access_token}"

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at - seconds

    def covers(self, scopes: frozenset[str] | set[str]) -> bool:
        """Whether this token was requested or granted with every one of `scopes`."""
        return scopes <= (self.requested_scopes | self.scopes)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """A client identity at one authorization server."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: TokenAuthMethod = "none"
    source: ClientSource = "dcr"
    #: Epoch seconds after which the secret is no longer valid (RFC 7591; None: never).
    secret_expires_at: float | None = None

    def usable(self, now: float | None = None) -> bool:
        return self.secret_expires_at is None or (
            (time.time() if now is None else now) < self.secret_expires_at)


class TokenStore(Protocol):
    """Tokens by (issuer, resource), client registrations by issuer."""

    async def get_tokens(self, issuer: str, resource: str) -> TokenSet | None: ...

    async def put_tokens(self, tokens: TokenSet) -> None: ...

    async def delete_tokens(self, issuer: str, resource: str) -> None: ...

    async def get_client(self, issuer: str) -> ClientCredentials | None: ...

    async def put_client(self, client: ClientCredentials) -> None: ...

    async def delete_client(self, issuer: str) -> None: ...


class MemoryTokenStore:
    """A `TokenStore` in this process: at most `max_entries` of each kind (oldest go first)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._tokens: OrderedDict[tuple[str, str], TokenSet] = OrderedDict()
        self._clients: OrderedDict[str, ClientCredentials] = OrderedDict()

    async def get_tokens(self, issuer: str, resource: str) -> TokenSet | None:
        return self._tokens.get((issuer, resource))

    async def put_tokens(self, tokens: TokenSet) -> None:
        key = (tokens.issuer, tokens.resource)
        self._tokens.pop(key, None)
        self._tokens[key] = tokens
        while len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)

    async def delete_tokens(self, issuer: str, resource: str) -> None:
        self._tokens.pop((issuer, resource), None)

    async def get_client(self, issuer: str) -> ClientCredentials | None:
        return self._clients.get(issuer)

    async def put_client(self, client: ClientCredentials) -> None:
        self._clients.pop(client.issuer, None)
        self._clients[client.issuer] = client
        while len(self._clients) > self.max_entries:
            self._clients.popitem(last=False)

    async def delete_client(self, issuer: str) -> None:
        self._clients.pop(issuer, None)


__all__ = [
    "ClientCredentials",
    "ClientSource",
    "MemoryTokenStore",
    "TokenAuthMethod",
    "TokenSet",
    "TokenStore",
]
