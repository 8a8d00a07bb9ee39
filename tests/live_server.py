"""Start a uvicorn server inside a test's event loop and wait until it listens."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_uvicorn(server: Any, **serve_options: Any) -> tuple[asyncio.Task[None], int]:
    """Run `server` (a `uvicorn.Server`) in a task; (the task, the port it listens on)."""
    task = asyncio.create_task(server.serve(**serve_options))
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return task, server.servers[0].sockets[0].getsockname()[1]


async def stop_uvicorn(server: Any, task: asyncio.Task[None], timeout: float = 10) -> None:
    """Ask `server` to exit and wait for it."""
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
        await asyncio.wait_for(task, timeout)
