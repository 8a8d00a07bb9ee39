"""How the OAuth client presents itself: redirect URI, name, CIMD URL, pre-registrations.

`OAuthClientSettings` is plain, validated data (the configuration layer builds it from the
`oauth:` block of an HTTP upstream). Its checks run when it is made, so a bad redirect URI or
CIMD URL is a configuration error, not a surprise in the middle of an authorization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import get_args
from urllib.parse import urlsplit

from bastion.client.oauth.store import TokenAuthMethod

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class PreRegisteredClient:
    """A client identity obtained out of band, for one authorization server (its issuer)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    #: None: chosen from what the authorization server supports.
    token_endpoint_auth_method: TokenAuthMethod | None = None

    def __post_init__(self) -> None:
        if not self.client_id or len(self.client_id) > 1024:
            raise ValueError("a pre-registered client needs a client_id (at most 1024 chars)")
        method = self.token_endpoint_auth_method
        if method is not None and method not in get_args(TokenAuthMethod):
            raise ValueError(f"token_endpoint_auth_method {method!r} is not supported; use one "
                             f"of {', '.join(get_args(TokenAuthMethod))}")
        if method in ("client_secret_basic", "client_secret_post") and not self.client_secret:
            raise ValueError(f"token_endpoint_auth_method {method} needs a client_secret")


@dataclass(frozen=True, slots=True)
class OAuthClientSettings:
    """The OAuth client's identity (see the module doc)."""

    #: Where the authorization server sends the user back: https, or http on a loopback host
    #: (RFC 8252 native clients). Exact-matched by the server and by this client.
    redirect_uri: str
    client_name: str = "Bastion"
    #: CIMD: the https URL of this client's metadata document, used as its `client_id`
    #: where the authorization server supports it.
    client_metadata_url: str | None = None
    #: Pre-registered clients, by authorization server issuer (exact string).
    clients: Mapping[str, PreRegisteredClient] = field(default_factory=dict)
    #: Ask for `offline_access` (a refresh token) where the server lists it.
    offline_access: bool = True
    #: How long an authorization may wait for its redirect, in seconds.
    pending_ttl: float = 600.0

    def __post_init__(self) -> None:
        check_redirect_uri(self.redirect_uri)
        if self.client_metadata_url is not None:
            parts = urlsplit(self.client_metadata_url)
            if parts.scheme != "https" or not parts.hostname or parts.path in ("", "/") \
                    or parts.fragment:
                raise ValueError("client_metadata_url must be an https URL with a path and no "
                                 f"fragment (got {self.client_metadata_url!r})")
        if not 0 < self.pending_ttl <= 3600:
            raise ValueError("pending_ttl must be between 0 and 3600 seconds")
        object.__setattr__(self, "clients", MappingProxyType(dict(self.clients)))


def check_redirect_uri(uri: str) -> None:
    """SPEC-AUTH-11: https, or http on a loopback host; no fragment."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ValueError(f"redirect_uri {uri!r} is malformed: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.fragment or not host:
        raise ValueError(f"redirect_uri {uri!r} needs a host and no fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS):
        return
    raise ValueError(f"redirect_uri {uri!r} must be https, or http on localhost/127.0.0.1/[::1]")


def is_loopback_redirect(uri: str) -> bool:
    """Whether the redirect goes to this machine (a native application, RFC 8252)."""
    return (urlsplit(uri).hostname or "").lower() in _LOOPBACK_HOSTS


__all__ = [
    "OAuthClientSettings",
    "PreRegisteredClient",
    "check_redirect_uri",
    "is_loopback_redirect",
]
