"""Real peers for the gateway interop tests, each its own child process.

* `start_logged_server(argv, log, pattern)`: start a server (`bastion serve --http HOST:0`, an
  SDK `MCPServer` on uvicorn with port 0) and learn its URL from the line it logs once it
  listens: no free-port guessing, and a server that dies says why (its log comes with the
  error).
* `sdk_http_peer_argv(folder)`: the interop SDK peer (`SDK_PEER_SOURCE`, shared with
  tests/interop) served over Streamable HTTP instead of stdio.
* `make_git_repo(path)`: a repository with one commit and one untracked file, for
  `mcp-server-git`.
* `NODE_EVERYTHING`: how to start npm `@modelcontextprotocol/server-everything` with the
  pinned Node of tools/mcp-node, or None when that toolchain is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.interop.conftest import SDK_PEER_SOURCE

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "tools" / "mcp-node" / "node_modules"
#: The entry point server-everything's package.json declares as its `bin`.
EVERYTHING_JS = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"

#: What `bastion serve` logs once its listener is up (bastion/gateway/serve.py).
GATEWAY_READY = re.compile(r"Bastion serves MCP at (http://\S+)")
#: What uvicorn logs once it listens; with port 0 it names the port it got.
UVICORN_READY = re.compile(r"Uvicorn running on (http://[\w.:]+)")

#: Log bytes quoted in an error: enough for a traceback, never a whole log.
_LOG_TAIL = 4000
_LOG_LIMIT = 1_000_000


def _node_everything() -> list[str] | None:
    node = shutil.which("node", path=str(NODE_MODULES / ".bin"))
    if node is None or not EVERYTHING_JS.is_file():
        return None
    return [node, str(EVERYTHING_JS), "stdio"]


#: argv of the npm everything server over stdio, or None without tools/mcp-node/node_modules.
NODE_EVERYTHING = _node_everything()
NO_NODE_REASON = ("npm @modelcontextprotocol/server-everything is not installed: run "
                  "(cd tools/mcp-node && npm ci)")


class PeerDidNotStart(RuntimeError):
    """A server process exited, or did not log that it listens within `timeout` seconds."""

    def __init__(self, argv: list[str], reason: str, log_tail: str) -> None:
        self.argv = argv
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"{' '.join(argv[:4])} ... {reason}; the end of its log:\n{log_tail}")


@dataclass
class LoggedServer:
    """A started server process, the URL it announced, and its log file."""

    argv: list[str]
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return _read_log(self.log)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


def _read_log(log: Path) -> str:
    with log.open("rb") as handle:
        return handle.read(_LOG_LIMIT).decode("utf-8", "replace")


def start_logged_server(argv: list[str], log: Path, ready: re.Pattern[str], *,
                        timeout: float = 30.0) -> LoggedServer:
    """Start `argv` with stdout and stderr in `log`; return once the log matches `ready`,
    whose first group is the URL. Raise `PeerDidNotStart` if the process exits first or the
    line does not come within `timeout` seconds (the process is then stopped)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + timeout
    while True:
        found = ready.search(_read_log(log))
        if found is not None:
            return LoggedServer(argv, process, found.group(1), log)
        if process.poll() is not None:
            reason = f"exited with code {process.returncode} before it listened"
            break
        if time.monotonic() > deadline:
            reason = f"did not log {ready.pattern!r} within {timeout:g} s"
            LoggedServer(argv, process, "", log).stop()
            break
        time.sleep(0.05)
    raise PeerDidNotStart(argv, reason, _read_log(log)[-_LOG_TAIL:])


def sdk_http_peer_argv(folder: Path) -> list[str]:
    """The tests/interop SDK peer on Streamable HTTP at 127.0.0.1, on a port uvicorn picks."""
    (folder / "sdk_peer.py").write_text(SDK_PEER_SOURCE, encoding="utf-8")
    runner = folder / "sdk_http_peer.py"
    # Run as a script, its folder is on sys.path: `sdk_peer` imports without running stdio.
    runner.write_text(
        "from sdk_peer import srv\n\n"
        'srv.run(transport="streamable-http", host="127.0.0.1", port=0)\n',
        encoding="utf-8",
    )
    return [sys.executable, str(runner)]


def make_git_repo(path: Path, *, message: str, untracked: str) -> Path:
    """`git init` at `path`, one commit with `message`, and an untracked file `untracked`."""
    path.mkdir(parents=True, exist_ok=True)
    identity = ["-c", "user.name=Interop Test", "-c", "user.email=interop@example.com",
                "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]

    def git(*args: str) -> None:
        subprocess.run(["git", *identity, *args], cwd=path, check=True, capture_output=True,
                       timeout=30)

    git("init", "-q")
    (path / "README.md").write_text("interop repository\n", encoding="utf-8")
    git("add", "README.md")
    git("commit", "-q", "-m", message)
    (path / untracked).write_text("not yet added\n", encoding="utf-8")
    return path
