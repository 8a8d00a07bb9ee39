"""An in-process server and client joined by a real socket pair (fast, no child process)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from bastion.client import Client, ClientHandlers
from bastion.server import Server
from bastion.session.client_side import ClientConnection
from bastion.session.server_side import serve_channel
from bastion.transport.framing import LineChannel
from tests.wire_check import SchemaCheckedChannel, WireLog


async def _channel(sock: socket.socket, side: str, log: WireLog) -> SchemaCheckedChannel:
    reader, writer = await asyncio.open_connection(sock=sock)
    return SchemaCheckedChannel(LineChannel(reader, writer), side, log)


@contextlib.asynccontextmanager
async def connect(
    server: Server, *, mode: str = "auto", handlers: ClientHandlers | None = None,
    log_level: str | None = None,
) -> AsyncIterator[Client]:
    left, right = socket.socketpair()
    log = WireLog()
    server_channel = await _channel(left, "server", log)
    client_channel = await _channel(right, "client", log)
    serving = asyncio.create_task(serve_channel(server, server_channel))
    connection = ClientConnection(client_channel, mode=mode, handlers=handlers,
                                  log_level=log_level, probe_timeout=2.0)
    try:
        await connection.connect()
        client = Client(connection)
        client.wire = log  # type: ignore[attr-defined]  # tests flag their deliberate bad input
        yield client
    finally:
        await connection.aclose()
        await asyncio.wait_for(serving, 5)
    log.assert_clean()
    assert log.checked > 0


@pytest.fixture(params=["legacy", "modern"])
def era(request: pytest.FixtureRequest) -> str:
    return request.param
