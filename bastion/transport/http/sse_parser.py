"""Server-Sent Events on the wire: the names both sides share, and the client's parser.

The server writes events (`sse.py`); the client reads them with `SSEDecoder`, an incremental
`text/event-stream` parser with bounded memory. A line or an event that outgrows its bound
raises a named `SSEError`, so the failure the caller reports says what went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE

#: The media type of an event stream (Content-Type of a stream, Accept of a client).
SSE_MEDIA_TYPE = "text/event-stream"
#: The type of an event without an `event` field; MCP messages travel as this type.
MESSAGE_EVENT = "message"
#: A server's `retry` is obeyed up to this bound, so garbage cannot park a request forever.
MAX_RETRY_MS = 300_000
#: How much longer than the largest event data one line may be (its field name, at least).
LINE_ALLOWANCE = 1024


class SSEError(ValueError):
    """A Server-Sent Events stream broke the format or its size bounds."""


class SSELineTooLong(SSEError):
    """One SSE line grew past the bound without a line ending."""


class SSEEventTooLarge(SSEError):
    """The data of one SSE event grew past the bound."""


_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event; `data` stays bytes because it goes straight to a JSON parser."""

    event: str
    data: bytes
    id: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class SSEDecoder:
    """An incremental `text/event-stream` parser with bounded memory (WHATWG rules).

    Lines end in CRLF, LF or CR (also across chunk boundaries); `:` lines are comments
    (keep-alives); `id` and `retry` are remembered for reconnection. A line longer than
    `max_line` or an event whose data passes `max_event` raises a named `SSEError`.
    """

    def __init__(self, *, max_line: int = DEFAULT_MAX_MESSAGE_SIZE + LINE_ALLOWANCE,
                 max_event: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._buffer = bytearray()
        self._scanned = 0
        self._after_cr = False
        self._started = False
        self._event = ""
        self._data: list[bytes] = []
        self._data_size = 0

    @classmethod
    def for_messages(cls, max_message_size: int,
                     last_event_id: str | None = None) -> SSEDecoder:
        """A decoder for events of one message each, resuming after `last_event_id`."""
        decoder = cls(max_line=max_message_size + LINE_ALLOWANCE, max_event=max_message_size)
        decoder.last_event_id = last_event_id
        return decoder

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume bytes; return the events they complete."""
        if not chunk:
            return []
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split across two chunks
        self._after_cr = False
        buffer = self._buffer
        buffer += chunk
        if not self._started and len(buffer) >= 3:
            self._started = True
            if buffer[:3] == b"\xef\xbb\xbf":
                del buffer[:3]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer, self._scanned):
            line = bytes(buffer[start:match.start()])
            start = match.end()
            if len(line) > self.max_line:
                raise SSELineTooLong(f"an SSE line of {len(line)} bytes exceeds the "
                                     f"{self.max_line}-byte limit")
            event = self._line(line)
            if event is not None:
                events.append(event)
        if start:
            if buffer[start - 1:start] == b"\r" and start == len(buffer):
                self._after_cr = True
            del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self.max_line:
            raise SSELineTooLong(f"an SSE line grew past the {self.max_line}-byte limit "
                                 "without a line ending")
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[:1] == b":":
            return None  # a comment: keep-alive
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise SSEEventTooLarge(f"an SSE event's data exceeds the {self.max_event}-byte "
                                       "limit")
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry_ms = min(int(value), MAX_RETRY_MS)
        return None  # unknown fields are ignored, as the SSE spec says

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._data_size = [], "", 0
        if not data:
            return None
        return SSEEvent(event or MESSAGE_EVENT, b"\n".join(data), self.last_event_id)


__all__ = [
    "LINE_ALLOWANCE",
    "MAX_RETRY_MS",
    "MESSAGE_EVENT",
    "SSE_MEDIA_TYPE",
    "SSEDecoder",
    "SSEError",
    "SSEEvent",
    "SSEEventTooLarge",
    "SSELineTooLong",
]
