"""A small Bastion `Server` on stdio for the upstream tests (a real child process).

Tools:
- echo(text): returns `text`
- pid(): returns this process's id
- slow_pid(delay): sleeps `delay` seconds, then returns this process's id
- hang(): never finishes (until cancelled)
"""

import asyncio
import os

from bastion.server import Server, run_stdio

server = Server("tool-peer", "1.0.0")


@server.tool()
async def echo(text: str) -> str:
    """Returns the text."""
    return text


@server.tool()
async def pid() -> str:
    """Returns the process id."""
    return str(os.getpid())


@server.tool()
async def slow_pid(delay: float = 0.5) -> str:
    """Sleeps, then returns the process id."""
    await asyncio.sleep(delay)
    return str(os.getpid())


@server.tool()
async def hang() -> str:
    """Never finishes."""
    await asyncio.Event().wait()
    return "unreachable"


if __name__ == "__main__":
    run_stdio(server)
