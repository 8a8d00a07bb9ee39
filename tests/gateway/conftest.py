"""Helpers for the gateway tests: a gateway served on a real loopback port, with real
upstream processes (the conformance fixture, PyPI MCP servers, small fault peers)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.config import BastionConfig
from bastion.gateway.app import Gateway
from bastion.gateway.serve import bind_socket, http_server, listener_authenticator
from bastion.guard.identity import Authenticator
from tests.http.conftest import serve  # noqa: F401  (an HTTP fixture server, for upstreams)
from tests.identity.conftest import idp  # noqa: F401  (a real identity provider)
from tests.live_server import start_uvicorn, stop_uvicorn

PEERS = Path(__file__).parent / "peers"
EVERYTHING = [sys.executable, "-m", "bastion.testing.everything"]
TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]


def stdio_upstream(argv: list[str], **fields: Any) -> dict[str, Any]:
    return {"command": argv[0], "args": argv[1:], **fields}


def make_config(upstreams: dict[str, dict[str, Any]], **fields: Any) -> BastionConfig:
    return BastionConfig.model_validate({"mcpServers": upstreams, **fields})


@dataclass
class LiveGateway:
    gateway: Gateway
    url: str
    port: int
    authenticator: Authenticator | None = None


@pytest.fixture
async def gateway_http() -> AsyncIterator[Callable[..., Awaitable[LiveGateway]]]:
    """`await gateway_http(config)`: the gateway serving on 127.0.0.1:<free port>/mcp, with
    the authenticator its `auth` section asks for (the resource URL: `auth.resource`, or the
    listener's URL)."""
    running: list[tuple[Gateway, Any, asyncio.Task[None], Authenticator | None]] = []

    async def start(config: BastionConfig) -> LiveGateway:
        key = os.urandom(32)
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        authenticator = listener_authenticator(config, "127.0.0.1", port)
        if authenticator is not None:
            await authenticator.start()
        gateway = Gateway(config, key=key)
        await gateway.start()
        server = http_server(gateway, config, "127.0.0.1", port, key, authenticator)
        task, _ = await start_uvicorn(server, sockets=[sock])
        running.append((gateway, server, task, authenticator))
        return LiveGateway(gateway, f"http://127.0.0.1:{port}{config.server.path}", port,
                           authenticator)

    yield start
    for gateway, server, task, authenticator in running:
        await stop_uvicorn(server, task)
        await gateway.aclose()
        if authenticator is not None:
            await authenticator.aclose()
