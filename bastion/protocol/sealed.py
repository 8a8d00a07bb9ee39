"""Sealed, bound, expiring state (AES-GCM): MRTR `requestState` and similar tokens.

A sealed token is opaque to the client, cannot be altered without detection, is valid only
for the binding it was made for (the method, a digest of the request's salient parameters and
the principal) and only until it expires. Anything wrong is one `InvalidParams` (-32602),
which is what the spec and the conformance suite expect for tampered state.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.protocol.errors import InvalidParams
from bastion.protocol.tokens import token_bytes, token_text

_VERSION = b"\x01"
_NONCE_SIZE = 12


def binding_for(method: str, salient: Any, principal: str | None = None) -> bytes:
    """The associated data a token is bound to: method, principal and a parameter digest."""
    digest = hashlib.sha256(orjson.dumps(salient, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{method}\x00{principal or ''}\x00{digest}".encode()


def request_binding(method: str, params: dict[str, Any], principal: str | None = None) -> bytes:
    """The binding of a request's sealed state: its method, what it is about (the target's
    name or URI and the arguments) and the principal. Computed only when a state is opened
    or sealed: most calls never need it."""
    return binding_for(method, [params.get("name"), params.get("uri"), params.get("arguments")],
                       principal)


class StateSealer:
    """Seals and opens state with one AES-256-GCM key (random unless one is given)."""

    def __init__(self, key: bytes | None = None, *, default_ttl: float = 600.0) -> None:
        if key is None:
            key = AESGCM.generate_key(bit_length=256)
        if len(key) not in (16, 24, 32):
            raise ValueError("a state-sealing key must be 16, 24 or 32 bytes")
        self._aead = AESGCM(key)
        self.default_ttl = default_ttl

    def seal(self, state: Any, binding: bytes, *, ttl: float | None = None) -> str:
        expires = time.time() + (self.default_ttl if ttl is None else ttl)
        payload = orjson.dumps({"exp": expires, "state": state})
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, payload, _VERSION + binding)
        return token_text(_VERSION + nonce + sealed)

    def open(self, token: object, binding: bytes) -> Any:
        """The state inside `token`; InvalidParams if it is malformed, altered, foreign or old."""
        if not isinstance(token, str) or not token:
            raise InvalidParams("requestState must be a non-empty string")
        try:
            raw = token_bytes(token)
        except (ValueError, TypeError):
            raise InvalidParams("requestState is not a state this server issued") from None
        if len(raw) < 1 + _NONCE_SIZE + 16 or raw[:1] != _VERSION:
            raise InvalidParams("requestState is not a state this server issued")
        nonce, sealed = raw[1 : 1 + _NONCE_SIZE], raw[1 + _NONCE_SIZE :]
        try:
            payload = orjson.loads(self._aead.decrypt(nonce, sealed, _VERSION + binding))
        except InvalidTag:
            raise InvalidParams(
                "requestState failed verification: it was altered, or belongs to another "
                "request or principal"
            ) from None
        if payload["exp"] < time.time():
            raise InvalidParams("requestState has expired: send the original request again")
        return payload["state"]
