"""What the gateway needs from a state store, as one protocol: token buckets (rate limits)
and fixed-window counters (quotas).

Every operation is atomic per key: two replicas (or two tasks) taking from the same bucket
can never both spend its last token. The in-memory store gets that from asyncio (no await
between reading and writing a key); a shared store must do the same in one round trip (a Lua
script in Redis, one `INSERT ... ON CONFLICT ... RETURNING` in PostgreSQL).

Keys are opaque strings the caller builds; a store may hash them but must never merge two.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable


class StateError(RuntimeError):
    """The state store failed (unreachable, timed out, refused): callers fail closed."""


class Grant(NamedTuple):
    """The answer of a take or a count (a tuple: built on every call, so built cheaply)."""

    allowed: bool
    #: What is left after this request: tokens in the bucket, or calls left in the window.
    remaining: float
    #: Seconds until the same request could be allowed (0.0 when it was).
    retry_after: float


@runtime_checkable
class RateState(Protocol):
    """The rate-limit half of a state store."""

    async def take(self, key: str, capacity: float, refill_per_second: float,
                   cost: float = 1.0) -> Grant:
        """Take `cost` tokens from the bucket `key` (`capacity` tokens when new, refilled
        at `refill_per_second` up to `capacity`), or take nothing and say when they will be
        there."""
        ...

    async def count(self, key: str, limit: int, window_seconds: float,
                    cost: int = 1) -> Grant:
        """Count `cost` calls in the current fixed window of `window_seconds` (windows are
        aligned to the Unix epoch, so replicas agree on when one starts), or count nothing
        when that would pass `limit`; `retry_after` is then the time to the next window."""
        ...

    async def aclose(self) -> None:
        """Release connections (nothing for the in-memory store)."""
        ...
