"""A Bastion `Server` with task-capable tools, served on stdio (a real child process).

Tools (taskSupport in brackets):
- slow(delay, text) [optional]: sleeps `delay` seconds, returns `text`
- must_task(text) [required]: returns `text`
- plain(text) [forbidden]: returns `text`
- boom() [optional]: raises a JSON-RPC error (-32602, data {"why": "boom"})
- oops() [optional]: a tool error (isError: true)
- ask_name() [optional]: elicits a name (form mode), returns "Hello, <name>!"
- forever() [optional]: never finishes (for cancellation)

Tasks poll every 20 ms so the tests stay fast.
"""

import asyncio

from bastion.protocol.errors import InvalidParams
from bastion.server import Context, Server, TaskStore, ToolError, run_stdio

server = Server("tasks-peer", "1.0.0", page_size=2,
                task_store=TaskStore(poll_interval_ms=20))


@server.tool(task_support="optional")
async def slow(delay: float = 0.05, text: str = "done") -> str:
    """Sleeps, then answers."""
    await asyncio.sleep(delay)
    return text


@server.tool(task_support="required")
async def must_task(text: str = "required done") -> str:
    """Runs only as a task."""
    return text


@server.tool()
async def plain(text: str = "plain done") -> str:
    """Never runs as a task."""
    return text


@server.tool(task_support="optional")
async def boom() -> str:
    """Fails with a protocol error."""
    raise InvalidParams("boom", data={"why": "boom"})


@server.tool(task_support="optional")
async def oops() -> str:
    """Fails with a tool error."""
    raise ToolError("oops")


@server.tool(task_support="optional")
async def ask_name(ctx: Context) -> str:
    """Asks the user for a name."""
    answer = await ctx.elicit(
        "Please enter your name.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        key="name",
    )
    if answer.get("action") != "accept":
        return "Hello, stranger!"
    return f"Hello, {answer['content']['name']}!"


@server.tool(task_support="optional")
async def forever() -> str:
    """Never finishes."""
    await asyncio.Event().wait()
    return "unreachable"


if __name__ == "__main__":
    run_stdio(server)
