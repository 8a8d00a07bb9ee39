"""Shared test helpers: reading challenges, forging tokens no library would sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import orjson
import pytest

from bastion.transport.http.auth import AuthChallenge

_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """A compact JWS by hand: HMAC-SHA256 with `secret`, or no signature at all."""
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(),
                                                    hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer` challenge (quoted-string escapes undone)."""
    assert header.startswith("Bearer "), header
    params = {name: re.sub(r"\\(.)", r"\1", value) for name, value in _PARAM.findall(header)}
    # Every parameter was quoted-string: nothing left over but separators.
    assert _PARAM.sub("", header[len("Bearer "):]).replace(",", "").strip() == "", header
    return params


async def refused(authenticator: Any, token: str | None = None, *, authorization: str | None = None,
                  query: bytes = b"", status: int = 401,
                  error: str | None = "invalid_token") -> tuple[AuthChallenge, dict[str, str]]:
    """Authenticate and expect a challenge of `status`/`error`; returns it and its params."""
    headers = {}
    if authorization is None and token is not None:
        authorization = f"Bearer {token}"
    if authorization is not None:
        headers["authorization"] = authorization
    with pytest.raises(AuthChallenge) as caught:
        await authenticator.authenticate(headers, query)
    challenge = caught.value
    params = challenge_params(challenge.www_authenticate)
    assert (challenge.status, challenge.error, params.get("error")) == (status, error, error), \
        (challenge.status, challenge.www_authenticate)
    if token:
        assert token not in challenge.www_authenticate and token not in challenge.message
    return challenge, params
