"""stdio: MCP servers as child processes, and serving MCP on this process's stdin/stdout.

`StdioProcess` starts a server with a controlled environment and working directory, in its
own process group, logs its stderr, and stops it with the shutdown ladder of the spec: close
stdin, wait, SIGTERM to the group, wait, SIGKILL to the group. `stdio_channel` gives a
server its own stdin/stdout as a `Channel`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE
from bastion.transport.framing import LineChannel

logger = logging.getLogger("bastion.transport.stdio")

#: Variables a child inherits by default; everything else must be passed on purpose, so
#: secrets in the parent's environment do not leak into every server it starts.
DEFAULT_INHERITED_ENV = (
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV", "PYTHONPATH",
)


class ProcessStartError(Exception):
    """The server program could not be started."""


def child_environment(
    env: Mapping[str, str] | None = None,
    *,
    inherit: Sequence[str] = DEFAULT_INHERITED_ENV,
) -> dict[str, str]:
    """The environment of a child: the inherited allow-list, then the explicit variables."""
    result = {name: os.environ[name] for name in inherit if name in os.environ}
    if env:
        result.update(env)
    return result


class StdioProcess:
    """A running MCP server child process and the line channel to it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        channel: LineChannel,
        name: str,
        stderr_lines: int,
    ) -> None:
        self.process = process
        self.channel = channel
        self.name = name
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._stderr_task = asyncio.create_task(self._pump_stderr(), name=f"stderr:{name}")
        channel.on_eof = self._settle

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
        cwd: str | Path | None = None,
        name: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        stderr_lines: int = 50,
    ) -> StdioProcess:
        if not argv:
            raise ProcessStartError("no command given to start the server")
        name = name or Path(argv[0]).name
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(env, inherit=inherit_env),
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,  # its own process group, for the shutdown ladder
                limit=_CHUNK_LIMIT,
            )
        except (OSError, ValueError) as exc:
            raise ProcessStartError(f"cannot start {argv[0]!r}: {exc}") from exc
        assert process.stdout is not None and process.stdin is not None
        channel = LineChannel(process.stdout, process.stdin, max_size=max_message_size)
        logger.debug("started %s (pid %s)", name, process.pid)
        return cls(process, channel, name, stderr_lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def describe_exit(self) -> str:
        """A sentence on why the process is gone, with the end of its stderr."""
        code = self.process.returncode
        if code is None:
            what = f"server {self.name!r} closed its stdout"
        elif code < 0:
            what = f"server {self.name!r} was killed by signal {-code}"
        else:
            what = f"server {self.name!r} exited with code {code}"
        if self.stderr_tail:
            what += "; last stderr: " + " | ".join(list(self.stderr_tail)[-3:])
        return what

    async def _pump_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        child_logger = logging.getLogger(f"bastion.stdio.{self.name}")
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: skip it
                continue
            except (ConnectionError, asyncio.CancelledError):
                return
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text[:500])
                child_logger.info("%s", text[:2000])

    async def _settle(self) -> None:
        """Stdout ended: let the exit status and the last stderr lines arrive (briefly), so
        that `describe_exit` can name them; the pipe closes a moment before the exit is seen."""
        if await self.wait(_SETTLE_TIMEOUT) is not None:
            await asyncio.wait({self._stderr_task}, timeout=_SETTLE_TIMEOUT)

    async def wait(self, timeout: float | None = None) -> int | None:
        """The exit status, after waiting up to `timeout` seconds (None: no limit).

        Not `Process.wait()`: that also waits for every pipe to close, which a grandchild
        holding stderr open delays indefinitely, while the exit status is already known.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.process.returncode is None:
            if deadline is not None and loop.time() >= deadline:
                break
            await asyncio.sleep(_POLL_INTERVAL)
        return self.process.returncode

    async def stop(self, *, grace: float = 2.0, term_grace: float = 2.0) -> int | None:
        """The shutdown ladder: close stdin, wait, SIGTERM the group, wait, SIGKILL it."""
        await self.channel.aclose()
        if await self.wait(grace) is None:
            self._signal_group(signal.SIGTERM)
            if await self.wait(term_grace) is None:
                self._signal_group(signal.SIGKILL)
                await self.wait(5.0)
        # However the leader ended, children it left in the group (some may ignore SIGTERM)
        # get the ladder's last rung.
        self._signal_group(signal.SIGKILL)
        # Keep the last stderr lines for describe_exit; a held-open pipe must not block us.
        await asyncio.wait({self._stderr_task}, timeout=_SETTLE_TIMEOUT)
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._stderr_task
        logger.debug("stopped %s: %s", self.name, self.describe_exit())
        return self.process.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


_CHUNK_LIMIT = 1024 * 1024
#: How long to wait for a child's exit status and last stderr once its stdout has ended.
_SETTLE_TIMEOUT = 0.5
_POLL_INTERVAL = 0.01


async def stdio_channel(max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> LineChannel:
    """This process's stdin and stdout as a channel (for a server run over stdio).

    Pipes, sockets and terminals are read and written without blocking the loop; a regular
    file (`server < requests.jsonl > out`) falls back to a reader thread and plain writes.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK_LIMIT)
    try:
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer
        )
    except ValueError:
        threading.Thread(target=_feed_from_file, args=(loop, reader, sys.stdin.buffer),
                         name="stdin-reader", daemon=True).start()
    writer: Any
    try:
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, sys.stdout.buffer
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
    except ValueError:
        writer = _FileWriter(sys.stdout.buffer)
    return LineChannel(reader, writer, max_size=max_message_size)


def _feed_from_file(
    loop: asyncio.AbstractEventLoop, reader: asyncio.StreamReader, stream: BinaryIO
) -> None:
    while chunk := stream.read1(_CHUNK_LIMIT):
        loop.call_soon_threadsafe(reader.feed_data, chunk)
    loop.call_soon_threadsafe(reader.feed_eof)


class _FileWriter:
    """The StreamWriter surface LineChannel uses, over a regular file (writes are local)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    async def drain(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
