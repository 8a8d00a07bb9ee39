"""The interface every transport offers to a session: read a frame, write a frame, close."""

from __future__ import annotations

from typing import Protocol


class EndOfStream(Exception):
    """The peer closed its side; no more frames will come."""


class FrameTooLarge(Exception):
    """A frame exceeded the size limit; it was discarded and reading can go on."""

    def __init__(self, size: int, limit: int, head: bytes = b"") -> None:
        super().__init__(f"message of at least {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit
        #: The first bytes of the frame, so the session can still tell whose it was.
        self.head = head


class Channel(Protocol):
    """A bidirectional stream of framed messages (one JSON-RPC message per frame)."""

    async def read_frame(self) -> bytes:
        """The next frame; raises EndOfStream at the end and FrameTooLarge for an oversize."""
        ...

    async def write_frame(self, data: bytes) -> None:
        """Send one frame (one serialized message without its delimiter)."""
        ...

    async def aclose(self) -> None:
        """Close the channel; reads then end with EndOfStream."""
        ...
