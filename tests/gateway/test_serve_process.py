"""`bastion serve` as a real process: HTTP and stdio listeners, the drain on SIGTERM, the
embedded default configuration, and the start-up refusals (bad config, unsafe listener, bad
options), each with its own state directory.

The upstream children are found in the process tree (/proc), so the test can tell that the
shutdown ladder ran: one of them ignores EOF on stdin and would outlive a gateway that died
without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bastion.client import connect_http, connect_stdio
from tests.live_server import free_port

from .test_faults import MODES, RAW_TOOLS, TOOL_SERVER, eventually, text_of

CLI = [sys.executable, "-m", "bastion.cli"]
READY_LINE = "Bastion serves MCP at"
#: `server.drain_timeout` in the files below, and what the shutdown ladder of one stubborn
#: child adds to it (2 s after closing stdin, then SIGTERM), with a margin for a busy machine.
DRAIN = 5.0
LADDER = 6.0


class UncleanExit(AssertionError):
    """`bastion serve` did not exit 0 after SIGTERM."""


def cli_env(tmp_path: Path) -> dict[str, str]:
    # A wide console: Rich must not fold the one-line errors the tests read.
    return {**os.environ, "BASTION_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "250"}


def write_config(tmp_path: Path, config: dict[str, Any] | str) -> Path:
    """The file to serve: a dict is written as JSON (YAML reads it), a str as it is."""
    path = tmp_path / "bastion.yaml"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def upstream(argv: list[str]) -> dict[str, Any]:
    return {"command": argv[0], "args": argv[1:]}


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


# -- the process tree ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rpartition(")")[2].split()[:2]
    return state, int(ppid)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has ended; only its exit status is left)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


# -- a served gateway ----------------------------------------------------------------------------


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    log: Path
    #: Upstream children seen while it ran: (pid, command line), cleaned up after the test.
    seen: list[tuple[int, str]] = field(default_factory=list)

    def children(self) -> list[int]:
        pids = children_of(self.process.pid)
        self.seen.extend((pid, cmdline(pid)) for pid in pids)
        return pids

    async def stop(self) -> None:
        """SIGTERM, then the exit must be 0 within the drain bound and the ladder."""
        self.process.send_signal(signal.SIGTERM)
        await self.exited()

    async def exited(self) -> None:
        try:
            code = await asyncio.wait_for(self.process.wait(), DRAIN + LADDER)
        except TimeoutError:
            pytest.fail(f"bastion serve still runs {DRAIN + LADDER} s after SIGTERM")
        if code != 0:
            raise UncleanExit(f"exit code {code} after SIGTERM; log:\n{self.log.read_text()}")


@pytest.fixture
async def serve_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """`await serve_process(*serve_args)`: `bastion serve --http 127.0.0.1:<free port> ...`,
    once it says it serves."""
    started: list[Served] = []

    async def start(*args: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *CLI, "serve", "--http", f"127.0.0.1:{port}", *args, env=cli_env(tmp_path),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        served = Served(process, f"http://127.0.0.1:{port}/mcp", log)
        started.append(served)
        await eventually(lambda: READY_LINE in log.read_text() or process.returncode is not None,
                         within=30, what="bastion serve started")
        assert process.returncode is None, log.read_text()
        return served

    yield start
    for served in started:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
        for pid, command in served.seen:  # orphans of a gateway that died without its ladder
            if alive(pid) and cmdline(pid) == command:
                os.kill(pid, signal.SIGKILL)


# -- serving over HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_sigterm_drains_the_call_in_flight_and_stops_the_upstreams(
        serve_process, tmp_path, mode) -> None:
    calls = tmp_path / "raw-calls.log"
    config = write_config(tmp_path, {
        "server": {"drain_timeout": DRAIN},
        "mcpServers": {
            "peer": upstream(TOOL_SERVER),
            "raw": upstream([*RAW_TOOLS, "--log", str(calls), "--ignore-eof"]),
        },
    })
    served = await serve_process("--config", str(config))
    children = served.children()
    assert len(children) == 2, [cmdline(pid) for pid in children]
    async with connect_http(served.url, mode=mode) as client:
        assert int(text_of(await client.call_tool("peer__pid", {}))) in children
        slow = asyncio.create_task(client.call_tool("raw__slow", {"delay": 1.5}))
        await eventually(lambda: "tools/call slow" in calls.read_text(),
                         what="the slow call reached the upstream")
        served.process.send_signal(signal.SIGTERM)
        assert text_of(await asyncio.wait_for(slow, DRAIN + 2)) == "slept"
    await served.exited()
    assert [pid for pid in children if alive(pid)] == []


async def test_serve_without_config_runs_the_embedded_defaults(serve_process) -> None:
    served = await serve_process()
    async with connect_http(served.url) as client:
        names = [tool["name"] for tool in await client.list_tools()]
        assert "time__get_current_time" in names, names
        assert "demo__test_simple_text" in names, names
        assert all(name.startswith(("demo__", "time__")) for name in names), names
        assert text_of(await client.call_tool("demo__test_simple_text", {}))
    await served.stop()


async def test_json_logs_and_the_observability_routes_of_a_served_gateway(
        serve_process, tmp_path) -> None:
    config = write_config(tmp_path, {"mcpServers": {"peer": upstream(TOOL_SERVER)}})
    served = await serve_process("--config", str(config), "--log-format", "json",
                                 "--log-level", "debug")
    origin = served.url.removesuffix("/mcp")
    async with connect_http(served.url) as client:
        assert text_of(await client.call_tool("peer__echo", {"text": "hi"})) == "hi"
    import httpx

    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{origin}/metrics")).text
        ready = await http.get(f"{origin}/readyz")
    assert 'bastion_requests_total{method="tools/call",status="ok",tool="peer__echo",' \
        'upstream="peer"} 1.0' in metrics
    assert ready.status_code == 200, ready.text
    await served.stop()
    lines = [json.loads(line) for line in served.log.read_text().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(READY_LINE in line["message"] for line in lines)


# -- serving over stdio -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_gateway_lists_and_calls(tmp_path, mode) -> None:
    config = write_config(tmp_path, {"mcpServers": {"peer": upstream(TOOL_SERVER)}})
    argv = [*CLI, "serve", "--stdio", "--config", str(config)]
    async with connect_stdio(argv, env={"BASTION_STATE_DIR": str(tmp_path / "state")},
                             mode=mode) as client:
        names = [tool["name"] for tool in await client.list_tools()]
        assert names == ["peer__echo", "peer__hang", "peer__pid", "peer__slow_pid"]
        assert text_of(await client.call_tool("peer__echo", {"text": "via stdio"})) \
            == "via stdio"


# -- refusing to start --------------------------------------------------------------------------


def test_config_error_exits_2_naming_the_file_and_the_field(tmp_path) -> None:
    path = write_config(tmp_path, "mcpServers:\n  peer:\n    command: x\n    timeout: -1\n")
    result = run_cli(tmp_path, "serve", "--config", str(path), "--http", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert f"{path}: mcpServers.peer.timeout: Input should be greater than 0 (got -1)" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = run_cli(tmp_path, "serve", "--config", str(missing), "--http", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert f"{missing}: no such file" in result.stderr


@pytest.mark.parametrize("where", ["0.0.0.0", "[::]", "config"])
def test_no_authentication_means_loopback_only(tmp_path, where) -> None:
    config: dict[str, Any] = {"mcpServers": {"peer": upstream(TOOL_SERVER)}}
    args = ["--http", f"{where}:{free_port()}"]
    if where == "config":
        config["server"] = {"host": "0.0.0.0"}
        args = []
    result = run_cli(tmp_path, "serve", "--config", str(write_config(tmp_path, config)), *args)
    assert result.returncode == 2, result.stderr
    assert "without authentication" in result.stderr and "127.0.0.1" in result.stderr
    assert "upstream 'peer' up" not in result.stderr  # refused before starting anything


@pytest.mark.parametrize(("args", "message"), [
    (["--http", "nonsense"], "--http must be HOST:PORT"),
    (["--http", "127.0.0.1:"], "--http must be HOST:PORT"),
    (["--http", ":8848"], "--http must be HOST:PORT"),
    (["--http", "127.0.0.1:http"], "--http must be HOST:PORT"),
    (["--http", "127.0.0.1:0", "--stdio"], "give --http or --stdio, not both"),
    (["--log-level", "loud"], "--log-level must be debug, info, warning or error"),
    (["--http", "127.0.0.1:70000"], "with a port from 0 to 65535"),
])
def test_bad_options_are_refused_with_a_clear_error(tmp_path, args, message) -> None:
    result = run_cli(tmp_path, "serve", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_clear_error(tmp_path) -> None:
    config = write_config(tmp_path, {"mcpServers": {"peer": upstream(TOOL_SERVER)}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tmp_path, "serve", "--config", str(config),
                         "--http", f"127.0.0.1:{port}")
    assert result.returncode != 0
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
