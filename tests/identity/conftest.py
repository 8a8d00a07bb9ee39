"""A real identity provider for the identity tests: JWKS and metadata over HTTP on loopback.

`idp` starts a Starlette app under uvicorn on 127.0.0.1 (a free port) that publishes the
public halves of `Idp.keys` at `/jwks` and RFC 8414 metadata for its issuer, counting the
requests it gets; tests rotate keys, change answers and mint tokens with `Idp.mint`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.live_server import start_uvicorn, stop_uvicorn

RESOURCE = "https://gw.example.com/mcp"

#: Key generation is the slow part (RSA); one set per test session is enough.
_KEYS: dict[str, Key] = {}


def key(name: str) -> Key:
    """A private key by test name: rsa*, ec*, ed* (kid = name)."""
    if name not in _KEYS:
        parameters = {"kid": name, "use": "sig"}
        if name.startswith("rsa"):
            _KEYS[name] = RSAKey.generate_key(2048, parameters=parameters)
        elif name.startswith("ec"):
            _KEYS[name] = ECKey.generate_key("P-256", parameters=parameters)
        else:
            _KEYS[name] = OKPKey.generate_key("Ed25519", parameters=parameters)
    return _KEYS[name]


_ALGORITHM = {"rsa": "RS256", "ec": "ES256", "ed": "EdDSA"}


@dataclass
class Idp:
    base: str = ""
    keys: list[Key] = field(default_factory=lambda: [key("rsa1")])
    requests: Counter = field(default_factory=Counter)
    #: Overrides of the metadata document's fields.
    metadata: dict[str, Any] = field(default_factory=dict)
    jwks_status: int = 200
    jwks_body: bytes | None = None
    cache_control: str | None = None

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def jwks_uri(self) -> str:
        return f"{self.base}/jwks"

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": RESOURCE, "sub": "alice", "iat": now,
                  "exp": now + 300, "jti": f"jti-{now}", "scope": "mcp:tools",
                  "roles": ["analyst"], "azp": "agent-1"}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, signer: Key | None = None, *, header: dict[str, Any] | None = None,
             **claims: Any) -> str:
        signer = signer or self.keys[0]
        alg = _ALGORITHM[str(signer.kid)[:3].rstrip("0123456789")]
        full = {"alg": alg, "kid": signer.kid, "typ": "at+jwt", **(header or {})}
        full = {name: value for name, value in full.items() if value is not None}
        return jwt.encode(full, self.claims(**claims), signer, algorithms=[full["alg"]])

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            self.requests["jwks"] += 1
            if self.jwks_body is not None:
                return Response(self.jwks_body, self.jwks_status,
                                media_type="application/json")
            document = {"keys": [k.as_dict(private=False) for k in self.keys]}
            headers = {"cache-control": self.cache_control} if self.cache_control else None
            return JSONResponse(document, self.jwks_status, headers=headers)

        async def metadata(request: Request) -> Response:
            self.requests[request.url.path] += 1
            document = {"issuer": self.issuer, "jwks_uri": self.jwks_uri,
                        "authorization_endpoint": f"{self.base}/authorize"}
            document.update(self.metadata)
            return JSONResponse(document)

        return Starlette(routes=[
            Route("/jwks", jwks),
            Route("/.well-known/oauth-authorization-server", metadata),
        ])


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    provider = Idp()
    config = uvicorn.Config(provider.app(), host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task, port = await start_uvicorn(server)
    provider.base = f"http://127.0.0.1:{port}"
    yield provider
    await stop_uvicorn(server, task)
