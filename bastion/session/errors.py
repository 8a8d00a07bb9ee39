"""Exceptions a session raises locally (not JSON-RPC errors from the peer)."""

from __future__ import annotations


class SessionError(Exception):
    """Base class for local session failures."""


class PeerClosed(SessionError):
    """The peer went away (EOF, process exit, connection closed) before answering."""


class RequestTimeout(SessionError, TimeoutError):
    """A request got no response within its timeout; it was cancelled at the peer."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"{method} got no response within {seconds:g} s (request cancelled)")
        self.method = method
        self.seconds = seconds


class EraDetectionError(SessionError):
    """Neither era could be established with the peer."""


class MessageTooLarge(SessionError):
    """A message was over the size limit: ours was not sent, or the peer's was dropped."""


class InvalidResponse(SessionError):
    """The peer answered a request with a malformed response (say, a non-object result)."""
