"""Newline-delimited framing over asyncio streams (stdio, and the same over sockets).

Each message is one line of UTF-8 JSON with no embedded newline. A line longer than the
limit is discarded up to its newline and reported as `FrameTooLarge`, so one huge message
costs bounded memory and does not end the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE
from bastion.transport.base import EndOfStream, FrameTooLarge

_CHUNK = 64 * 1024
#: How much of an oversized frame is kept to identify it.
_HEAD = 1024


class LineChannel:
    """A `Channel` over a StreamReader/StreamWriter pair, one message per line."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        *,
        max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_size = max_size
        self._buffer = bytearray()
        self._eof = False
        self._closed = False
        self._write_lock = asyncio.Lock()
        #: Awaited once when the peer's end of stream is first reached, before EndOfStream
        #: is raised (a child process uses it to let its exit status arrive).
        self.on_eof: Callable[[], Awaitable[None]] | None = None

    async def read_frame(self) -> bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                if len(line) > self.max_size:
                    raise FrameTooLarge(len(line), self.max_size, line[:_HEAD])
                line = line.rstrip(b"\r")
                if line.strip():
                    return line
                continue
            if self._eof or self._closed:
                if self._buffer.strip():
                    # A last message without its newline: accept it, as most peers do.
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    if len(line) > self.max_size:
                        raise FrameTooLarge(len(line), self.max_size, line[:_HEAD])
                    return line
                if self._eof and self.on_eof is not None:
                    on_eof, self.on_eof = self.on_eof, None
                    await on_eof()
                raise EndOfStream()
            if len(self._buffer) > self.max_size:
                head = bytes(self._buffer[:_HEAD])
                await self._discard_line()
                raise FrameTooLarge(self.max_size + 1, self.max_size, head)
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                self._eof = True
            else:
                self._buffer += chunk

    async def _discard_line(self) -> None:
        """Drop bytes up to and including the next newline (or the end of the stream)."""
        self._buffer.clear()
        while True:
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                self._eof = True
                return
            newline = chunk.find(b"\n")
            if newline >= 0:
                self._buffer += chunk[newline + 1 :]
                return

    async def write_frame(self, data: bytes) -> None:
        if self._writer is None or self._closed:
            raise EndOfStream()
        if b"\n" in data:
            raise ValueError("a stdio frame must not contain a newline")
        async with self._write_lock:
            try:
                self._writer.write(data + b"\n")
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise EndOfStream() from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):  # the pipe is gone
                self._writer.close()
