"""Errors the gateway raises about its upstreams, as JSON-RPC errors a downstream client reads.

Each is an `MCPError`, so the gateway's session turns it into a JSON-RPC error response. All
use code -32603 (Internal error): MCP assigns its own codes inside the -32000..-32099 server
range (-32002, -32020..-32022, -32042), and a code of ours there could collide with a future
one. What happened is in `data`: `upstream` (the upstream's name), `kind`
(`unavailable` | `timeout` | `failed`) and the facts of the kind.

An error the upstream itself returned (a JSON-RPC error response) is never wrapped in these:
it reaches the downstream client unchanged.
"""

from __future__ import annotations

from typing import Any

from bastion.protocol.errors import INTERNAL_ERROR, MCPError


class UpstreamError(MCPError):
    """Base class: something went wrong between the gateway and upstream `upstream`."""

    code = INTERNAL_ERROR
    kind = "error"

    def __init__(self, upstream: str, message: str, **facts: Any) -> None:
        super().__init__(message, data={"upstream": upstream, "kind": self.kind, **facts})
        self.upstream = upstream


class UpstreamUnavailable(UpstreamError):
    """The upstream cannot take calls now: not connected, restarting, or its breaker is open.

    `retry_after` (seconds), when known, is when trying again makes sense.
    """

    kind = "unavailable"

    def __init__(self, name: str, reason: str, retry_after: float | None = None) -> None:
        message = f"upstream {name!r} is unavailable: {reason}"
        facts: dict[str, Any] = {"reason": reason}
        if retry_after is not None:
            retry_after = round(max(0.0, retry_after), 3)
            message += f"; try again in {retry_after:.1f} s"
            facts["retryAfter"] = retry_after
        super().__init__(name, message, **facts)
        self.reason = reason
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer `method` within `seconds`; the request was cancelled there."""

    kind = "timeout"

    def __init__(self, name: str, method: str, seconds: float) -> None:
        super().__init__(
            name,
            f"upstream {name!r} did not answer {method} within {seconds:g} s; the request was "
            "cancelled (raise the upstream's `timeout` if its calls are legitimately slow)",
            method=method, seconds=seconds,
        )
        self.method = method
        self.seconds = seconds


class UpstreamFailed(UpstreamError):
    """`method` failed on the way: the upstream crashed, the connection broke, or the reply was
    unusable. `connection_lost` says whether the connection itself is gone (the request may
    then be retried on the next connection, if it is safe to repeat)."""

    kind = "failed"

    def __init__(self, name: str, method: str, reason: str, *,
                 connection_lost: bool = False) -> None:
        super().__init__(name, f"upstream {name!r} failed during {method}: {reason}",
                         method=method, reason=reason)
        self.method = method
        self.reason = reason
        self.connection_lost = connection_lost


__all__ = ["UpstreamError", "UpstreamFailed", "UpstreamTimeout", "UpstreamUnavailable"]
