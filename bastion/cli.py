"""The `bastion` command line (Typer and Rich).

Errors are one readable line (the cause, and what to do); `--debug` shows the traceback.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bastion import __version__
from bastion.client import Client, ClientHandlers, connect_stdio
from bastion.protocol.errors import MCPError, ProtocolError
from bastion.session.errors import SessionError
from bastion.transport.stdio import ProcessStartError

app = typer.Typer(
    name="bastion",
    help="Bastion: a secure gateway for the Model Context Protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}

EXPECTED_ERRORS = (MCPError, ProtocolError, SessionError, ProcessStartError, ValueError, OSError)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def _run(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine; expected failures become one red line and exit code 1."""
    try:
        return asyncio.run(coro_factory())
    except EXPECTED_ERRORS as exc:
        if _state["debug"]:
            raise
        errors.print(f"[red]error:[/red] {_describe(exc)}")
        raise typer.Exit(1) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return f"the server answered {exc.code}: {exc.message}"
    return str(exc) or type(exc).__name__


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if not argv:
        raise typer.BadParameter("give the server command, e.g. --stdio 'mcp-server-time'")
    return argv


@app.command()
def version() -> None:
    """Print Bastion's version and the MCP versions it speaks."""
    from bastion.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS

    console.print(f"bastion {__version__}")
    console.print(f"MCP legacy: {', '.join(LEGACY_VERSIONS)}; modern: {', '.join(MODERN_VERSIONS)}")


@app.command()
def tools(
    stdio: str = typer.Option(..., "--stdio", help="Command that starts the server."),
    era: str = typer.Option("auto", help="auto, legacy or modern."),
) -> None:
    """List the tools of an MCP server started over stdio."""

    async def run() -> None:
        async with connect_stdio(_argv(stdio), mode=_mode(era)) as client:
            _print_tools(client, await client.list_tools())

    _run(run)


@app.command()
def call(
    tool: str = typer.Argument(..., help="Tool name."),
    stdio: str = typer.Option(..., "--stdio", help="Command that starts the server."),
    args: str = typer.Option("{}", "--args", help="Arguments as a JSON object."),
    era: str = typer.Option("auto", help="auto, legacy or modern."),
) -> None:
    """Call one tool of an MCP server started over stdio and print the result as JSON."""
    try:
        arguments = orjson.loads(args)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise typer.BadParameter("--args must be a JSON object, e.g. '{\"timezone\": \"UTC\"}'")

    async def run() -> dict[str, Any]:
        async with connect_stdio(_argv(stdio), mode=_mode(era)) as client:
            return await client.call_tool(tool, arguments)

    result = _run(run)
    console.print_json(orjson.dumps(result).decode())
    if result.get("isError"):
        raise typer.Exit(2)


@app.command()
def demo() -> None:
    """Start the built-in fixture server and talk to it in both protocol eras."""

    async def answer_elicitation(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"name": "Ada", "username": "ada",
                                                "email": "ada@example.com"}}

    async def answer_sampling(params: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "model": "bastion-demo",
                "content": {"type": "text", "text": "Paris"}}

    async def run() -> None:
        handlers = ClientHandlers(sampling=answer_sampling, elicitation=answer_elicitation,
                                  roots=_demo_roots)
        argv = [sys.executable, "-m", "bastion.testing.everything"]
        for mode in ("legacy", "modern"):
            async with connect_stdio(argv, mode=mode, handlers=handlers) as client:
                console.rule(f"{client.era.value} era, protocol {client.protocol_version}")
                _print_tools(client, await client.list_tools())
                for name, arguments in (("test_simple_text", {}),
                                        ("test_elicitation", {"message": "Who are you?"}),
                                        ("test_sampling", {"prompt": "Capital of France?"})):
                    result = await client.call_tool(name, arguments)
                    texts = [c.get("text", f"<{c.get('type')}>") for c in result["content"]]
                    console.print(f"[bold]{name}[/bold] -> {' '.join(texts)}")

    _run(run)


async def _demo_roots() -> list[dict[str, Any]]:
    return [{"uri": "file:///tmp", "name": "tmp"}]


def _mode(era: str) -> Any:
    if era not in ("auto", "legacy", "modern"):
        raise typer.BadParameter(f"--era must be auto, legacy or modern, not {era!r}")
    return era


def _print_tools(client: Client, listed: list[dict[str, Any]]) -> None:
    info = client.server.server_info or {}
    table = Table(title=f"{info.get('name', 'server')} {info.get('version', '')} — "
                        f"{len(listed)} tools ({client.era.value}, {client.protocol_version})")
    table.add_column("tool", style="bold")
    table.add_column("description")
    for tool in listed:
        description = (tool.get("description") or "").strip().splitlines()
        table.add_row(tool.get("name", "?"), description[0][:80] if description else "")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
