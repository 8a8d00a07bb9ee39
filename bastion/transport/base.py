"""The interface every transport offers to a session: read a frame, write a frame, close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


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


class DirectChannel(Channel, Protocol):
    """A channel that can carry a request in the caller's task (HTTP: the POST is the exchange).

    The session sets `deliver_parsed` and sends its requests with `write_request`; the channel
    hands answers it has already parsed to `deliver_parsed` (no second parse, no hop through
    `read_frame`) whenever no earlier frame is still waiting to be read, so order is kept.
    """

    deliver_parsed: Callable[[Any, bytes], None] | None

    async def write_request(self, message: dict[str, Any], data: bytes) -> None:
        """Send a request (`data` is `message` serialized); may return after its answer."""
        ...
