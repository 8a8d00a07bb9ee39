"""A real admin server for the admin tests: the approval routes under uvicorn on loopback,
a real dev-mode `Authenticator`, an `ApprovalService` on a store in a temporary state
directory, and Bastion's own HTTP client to talk to it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from joserfc.jwk import OKPKey
from starlette.applications import Starlette

from bastion.admin import approval_routes
from bastion.config.auth import AuthConfig
from bastion.guard.approval import ApprovalRequest, ApprovalService, ApprovalStore
from bastion.guard.identity import (
    DEV_ISSUER,
    Authenticator,
    build_authenticator,
    load_or_create_dev_key,
    mint_dev_token,
)
from bastion.protocol.principal import Principal
from bastion.transport.http.h1client import HTTPClient
from tests.approval.support import ARGS, ISOLATE, config
from tests.live_server import start_uvicorn, stop_uvicorn

RESOURCE = "https://gw.example.com/mcp"
#: The requester as the dev issuer names him: a responder who is also a soc-lead.
BOB = Principal(subject="bob", issuer=DEV_ISSUER, method="dev", client_id="agent-1",
                roles=frozenset({"responder", "soc-lead"}))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Admin:
    base: str
    service: ApprovalService
    state_dir: Path
    key: OKPKey
    http: HTTPClient
    csrf_key: bytes
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, subject: str, *roles: str, ttl: float = 600) -> str:
        return mint_dev_token(self.key, audience=RESOURCE, subject=subject, roles=roles,
                              client_id="console", ttl=ttl)

    def bearer(self, subject: str, *roles: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(subject, *roles)}"}

    async def open(self, arguments: dict[str, Any] | None = None) -> ApprovalRequest:
        return await self.service.open(BOB, ISOLATE, dict(arguments or ARGS), "v1",
                                       upstream_tool="isolate_host")

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   body: bytes | None = None) -> Reply:
        response = await self.http.request(method, self.base + path, headers or {}, body,
                                           read_timeout=10)
        data = await response.read(1 << 20)
        return Reply(response.status, dict(response.headers), data)

    async def post_json(self, path: str, document: Any, headers: dict[str, str]) -> Reply:
        return await self.call("POST", path, {"content-type": "application/json", **headers},
                               orjson.dumps(document))


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    state_dir = tmp_path / "state"
    authenticator = build_authenticator(AuthConfig(mode="dev"), resource_url=RESOURCE,
                                        state_dir=state_dir)
    assert isinstance(authenticator, Authenticator)
    await authenticator.start()
    service = ApprovalService(config(), ApprovalStore.in_state_dir(state_dir),
                              poll_interval=0.05)
    csrf_key = secrets.token_bytes(32)
    app = Starlette(routes=approval_routes(service, authenticator, csrf_key=csrf_key))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False, lifespan="off"))
    task, port = await start_uvicorn(server)
    http = HTTPClient(connect_timeout=5)
    try:
        yield Admin(f"http://127.0.0.1:{port}", service, state_dir,
                    load_or_create_dev_key(state_dir), http, csrf_key)
    finally:
        await http.aclose()
        await stop_uvicorn(server, task)
        await service.aclose()
        await authenticator.aclose()
