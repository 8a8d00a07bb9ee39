"""Unpadded base64url: the spelling of every opaque token Bastion hands out.

Sealed request state, list cursors and the gateway's task ids are bytes spelled this way
(URL- and header-safe, no `=` padding); one pair of functions writes and reads them all.
"""

from __future__ import annotations

import base64


def token_text(raw: bytes) -> str:
    """`raw` as unpadded base64url text."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_bytes(text: str) -> bytes:
    """The bytes of unpadded base64url `text`; ValueError if it is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


__all__ = ["token_bytes", "token_text"]
