"""`connect_stdio(argv)`: start an MCP server as a child process and connect to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.client.client import Client
from bastion.session.client_side import ClientConnection, ClientHandlers, ClientMode
from bastion.transport.stdio import DEFAULT_INHERITED_ENV, StdioProcess


@contextlib.asynccontextmanager
async def connect_stdio(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
    cwd: str | Path | None = None,
    mode: ClientMode = "auto",
    handlers: ClientHandlers | None = None,
    client_info: dict[str, Any] | None = None,
    log_level: str | None = None,
    probe_timeout: float = 5.0,
    request_timeout: float = 60.0,
) -> AsyncIterator[Client]:
    """Start `argv`, establish the era, and yield a connected `Client`.

    The server is stopped with the shutdown ladder when the block ends.
    """
    process = await StdioProcess.start(argv, env=env, inherit_env=inherit_env, cwd=cwd)
    connection = ClientConnection(
        process.channel,
        handlers=handlers,
        client_info=client_info,
        mode=mode,
        probe_timeout=probe_timeout,
        name=process.name,
        log_level=log_level,
        describe_close=process.describe_exit,
        default_timeout=request_timeout,
    )
    try:
        await connection.connect()
        yield Client(connection)
    finally:
        await connection.aclose()
        await process.stop()
