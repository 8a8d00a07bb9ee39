"""PKCE (RFC 7636) with S256, and the `state` value: the random secrets of one authorization.

The verifier is 64 random bytes in base64url (86 characters, inside RFC 7636's 43..128),
the challenge is BASE64URL(SHA-256(verifier)) without padding, and `state` is 32 random bytes.
`plain` is never offered: MCP requires S256 (SPEC-AUTH-06).
"""

from __future__ import annotations

import base64
import hashlib
import secrets

METHOD = "S256"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    """A fresh code verifier."""
    return _b64url(secrets.token_bytes(64))


def challenge_for(verifier: str) -> str:
    """The S256 code challenge of `verifier`."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_state() -> str:
    """A fresh, unguessable `state` (compared in constant time at the callback)."""
    return _b64url(secrets.token_bytes(32))


__all__ = ["METHOD", "challenge_for", "new_state", "new_verifier"]
