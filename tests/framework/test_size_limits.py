"""Messages over the size limit: a result too large to send becomes an error, not a hang."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bastion.client import Client
from bastion.server import Server
from bastion.session.client_side import ClientConnection
from bastion.session.errors import MessageTooLarge
from bastion.session.server_side import serve_channel
from bastion.transport.framing import LineChannel


async def _pair(server: Server, limit: int) -> tuple[Client, asyncio.Task[None]]:
    left, right = socket.socketpair()
    channels = []
    for sock in (left, right):
        reader, writer = await asyncio.open_connection(sock=sock)
        channels.append(LineChannel(reader, writer, max_size=10 * limit))
    serving = asyncio.create_task(serve_channel(server, channels[0], max_message_size=limit))
    connection = ClientConnection(channels[1], mode="modern", max_message_size=limit)
    await connection.connect()
    return Client(connection), serving


async def test_an_oversized_result_is_answered_with_an_error_naming_the_size():
    server = Server("big")

    @server.tool()
    async def huge(size: int) -> str:
        return "x" * size

    client, serving = await _pair(server, limit=4096)
    try:
        assert (await client.call_tool("huge", {"size": 10}))["content"][0]["text"] == "x" * 10
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(client.call_tool("huge", {"size": 50_000}), 5)
        assert "over the 4096-byte message limit" in str(caught.value)
        # The connection is still usable afterwards.
        assert (await client.call_tool("huge", {"size": 3}))["content"][0]["text"] == "xxx"
    finally:
        await client.aclose()
        await asyncio.wait_for(serving, 5)


async def test_an_oversized_request_is_not_sent():
    server = Server("small")

    @server.tool()
    async def echo(text: str) -> str:
        return text

    client, serving = await _pair(server, limit=4096)
    try:
        with pytest.raises(MessageTooLarge, match="exceeds the 4096-byte limit"):
            await client.call_tool("echo", {"text": "y" * 10_000})
        assert (await client.call_tool("echo", {"text": "ok"}))["content"][0]["text"] == "ok"
    finally:
        await client.aclose()
        await asyncio.wait_for(serving, 5)
