"""Why a credential was refused; the authenticator turns each into an HTTP challenge.

The messages become `error_description` in a `WWW-Authenticate` header, so they say what is
wrong and what to do, and never repeat the credential (or any part of it).
"""

from __future__ import annotations


class IdentityError(Exception):
    """A request's credential cannot be accepted; `str()` is safe to show the client."""


class MalformedCredential(IdentityError):
    """The Authorization header is not one `Bearer <token68>` credential (HTTP 400)."""


class InvalidToken(IdentityError):
    """The credential was presented and is not valid here: bad signature, expired, another
    audience or issuer, unknown key, revoked (HTTP 401 `invalid_token`)."""


class KeysUnavailable(InvalidToken):
    """The keys a credential would be checked with cannot be had right now (the identity
    provider is unreachable, the key store unreadable); refused, since nothing can be proven."""
