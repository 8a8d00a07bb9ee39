"""Helpers for the interop tests: real peers started over stdio.

Two directions are covered:

* the official SDK (`mcp` 2.3.0) `Client` against bastion's conformance fixture server,
  `python -m bastion.testing.everything` (contract: conformance.md §7);
* bastion's client (`connect_stdio`) against PyPI `mcp-server-time` and against a small
  SDK `MCPServer` script written here (`SDK_PEER_SOURCE`).

Both peers are dual-era: `legacy` negotiates 2025-11-25, `modern` and `auto` 2026-07-28.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

LEGACY_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"

#: bastion's client modes and the version each must negotiate with a dual-era peer.
BASTION_MODES = {"legacy": LEGACY_VERSION, "modern": MODERN_VERSION, "auto": MODERN_VERSION}
#: the SDK Client's modes and the version each must negotiate with a dual-era peer.
SDK_MODES = {"legacy": LEGACY_VERSION, MODERN_VERSION: MODERN_VERSION, "auto": MODERN_VERSION}

#: One mode per era, for functional tests (auto is covered by the negotiation tests).
BASTION_ERA_MODES = ["legacy", "modern"]

EVERYTHING_MODULE = "bastion.testing.everything"


# -- bastion's fixture server ----------------------------------------------------------------


def everything_available() -> bool:
    try:
        return importlib.util.find_spec(EVERYTHING_MODULE) is not None
    except ModuleNotFoundError:
        return False


def everything_argv() -> list[str]:
    return [sys.executable, "-m", EVERYTHING_MODULE]


requires_everything = pytest.mark.skipif(
    not everything_available(),
    reason=f"{EVERYTHING_MODULE} (conformance fixture server) is not there yet",
)


# -- mcp-server-time (PyPI) ---------------------------------------------------------------------


def time_server_argv() -> list[str]:
    exe = shutil.which("mcp-server-time")
    base = [exe] if exe else [sys.executable, "-m", "mcp_server_time"]
    return [*base, "--local-timezone", "UTC"]


# -- an SDK MCPServer peer --------------------------------------------------------------------
#
# Sampling, elicitation and roots use the SDK's dual-era dependency markers
# (`Resolve(...)` returning `Elicit`/`Sample`/`ListRoots`): the SDK sends them as
# server-to-client requests in a legacy session and as `input_required` (MRTR) results in
# the modern era. `ctx.elicit()` itself is legacy-only in mcp 2.3.0: on a modern stdio
# request it fails with -32600 ("this transport context has no back-channel").

SDK_PEER_SOURCE = r'''
"""An SDK (mcp 2.3.0) MCPServer used as an interop peer; stdio is the default transport."""

import json
from typing import Annotated, Any

from mcp.server.mcpserver import (
    Context,
    Elicit,
    ElicitationResult,
    ListRoots,
    MCPServer,
    Resolve,
    Sample,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import (
    Completion,
    CreateMessageResult,
    ListRootsResult,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel

srv = MCPServer("sdk-peer", instructions="interop peer")


@srv.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat a text (str and int arguments)."""
    return " ".join([text] * times)


@srv.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Weather(BaseModel):
    city: str
    celsius: float
    conditions: str


@srv.tool()
def weather(city: str) -> Weather:
    """A structured result with an outputSchema."""
    return Weather(city=city, celsius=21.5, conditions="sunny")


@srv.tool()
async def slow_count(steps: int, ctx: Context) -> str:
    """Reports progress once per step."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
    return f"counted {steps}"


@srv.tool()
def fail(reason: str) -> str:
    """Always fails with a tool error."""
    raise ToolError(f"failure: {reason}")


class Contact(BaseModel):
    username: str
    email: str


def ask_contact() -> Elicit[Contact]:
    return Elicit("Who are you?", Contact)


@srv.tool()
def whoami(contact: Annotated[ElicitationResult[Contact], Resolve(ask_contact)]) -> str:
    """Elicits a contact: a legacy elicitation/create request, or modern input_required."""
    if contact.action == "accept":
        return f"accept:{contact.data.username}:{contact.data.email}"
    return contact.action


def ask_llm(question: str) -> Sample:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=question))
    return Sample([message], max_tokens=100)


@srv.tool()
def ask(question: str, answer: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    """Samples the client's LLM: sampling/createMessage in either era."""
    return f"LLM said: {answer.content.text}"


def get_roots() -> ListRoots:
    return ListRoots()


@srv.tool()
def client_roots(roots: Annotated[ListRootsResult, Resolve(get_roots)]) -> str:
    """Asks the client for its roots (roots/list in either era)."""
    return ",".join(str(root.uri) for root in roots.roots)


@srv.tool()
async def chatty(ctx: Context) -> str:
    """Logs one info and one warning message."""
    await ctx.info("hello from chatty")
    await ctx.warning("careful")
    return "chatted"


@srv.resource("peer://readme", mime_type="text/plain", description="A static text")
def readme() -> str:
    return "peer readme"


@srv.resource("peer://items/{item_id}", mime_type="application/json", description="Per item")
def item(item_id: str) -> str:
    return json.dumps({"id": item_id})


@srv.prompt()
def greet(name: str) -> str:
    """Greets someone."""
    return f"Hello, {name}!"


@srv.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
    if argument.name == "name":
        names = ["alice", "alfred", "bob"]
        return Completion(values=[n for n in names if n.startswith(argument.value)])
    return None


if __name__ == "__main__":
    srv.run()
'''

SDK_PEER_TOOLS = {
    "echo", "add", "weather", "slow_count", "fail", "whoami", "ask", "client_roots", "chatty",
}


@pytest.fixture(scope="session")
def sdk_peer_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SDK MCPServer peer, written once per test session."""
    path = tmp_path_factory.mktemp("sdk_peer") / "sdk_peer.py"
    path.write_text(SDK_PEER_SOURCE, encoding="utf-8")
    return path


@pytest.fixture
def sdk_peer_argv(sdk_peer_script: Path) -> list[str]:
    return [sys.executable, str(sdk_peer_script)]


# -- small helpers ----------------------------------------------------------------------------


def texts(result: dict[str, Any]) -> list[str]:
    """The text blocks of a (wire-shaped) tool or prompt result."""
    return [block["text"] for block in result.get("content", []) if block.get("type") == "text"]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds (callbacks may run in their own tasks)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Recorder:
    """Records the calls made to client-side handlers and progress callbacks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def of(self, kind: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == kind]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
