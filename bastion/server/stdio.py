"""Serve a `Server` on this process's stdin and stdout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from bastion.server.app import Server
from bastion.session.server_side import serve_channel
from bastion.transport.stdio import stdio_channel


async def serve_stdio(server: Server, *, max_message_size: int | None = None) -> None:
    """Serve one client on stdin/stdout until stdin closes."""
    options = {} if max_message_size is None else {"max_message_size": max_message_size}
    channel = await stdio_channel(**options)
    try:
        await serve_channel(server, channel, name="stdio-client", **options)
    finally:
        server.subscribers.close_listeners()


def run_stdio(server: Server, *, log_level: str = "WARNING") -> None:
    """Run a server over stdio (logs go to stderr; stdout carries only MCP messages)."""
    logging.basicConfig(stream=sys.stderr, level=log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_stdio(server))
