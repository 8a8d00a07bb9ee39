"""`MemoryState`: the state store of one process (the default), in bounded dictionaries.

Token buckets and quota windows each keep at most `max_keys` keys; the least recently used
key goes first. Forgetting a bucket refills it, so the bound must stay well above the number
of keys in use (the default, 100,000, is about 20 MB); the keys the rate limit builds are
per authenticated principal, agent, upstream and tool, so a caller cannot mint them at will.

Atomic without locks: nothing awaits between reading a key and writing it back, so in one
event loop no other task can interleave. A take costs about a microsecond.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from bastion.state.interface import Grant

DEFAULT_MAX_KEYS = 100_000
#: Float refills that land a hair under a whole token still count as the token.
_EPSILON = 1e-9


class MemoryState:
    """Token buckets and fixed-window counters in this process (see the module doc)."""

    __slots__ = ("_buckets", "_clock", "_counters", "_wall", "max_keys")

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.max_keys = max_keys
        #: Buckets refill on the monotonic clock (immune to wall-clock steps); quota windows
        #: follow the wall clock, so they line up with other replicas and with the calendar.
        self._clock = clock
        self._wall = wall_clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, stamp]
        self._counters: OrderedDict[str, list[int]] = OrderedDict()  # [window, count]

    def __len__(self) -> int:
        return len(self._buckets) + len(self._counters)

    async def take(self, key: str, capacity: float, refill_per_second: float,
                   cost: float = 1.0) -> Grant:
        _check("a bucket", "capacity and refill", capacity, refill_per_second, cost)
        now = self._clock()
        bucket, new = self._entry(self._buckets, key, [float(capacity), now])
        if not new:
            # max(): a clock that went backwards refills nothing rather than draining.
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(float(capacity), bucket[0] + elapsed * refill_per_second)
            bucket[1] = now
        if bucket[0] + _EPSILON >= cost:
            bucket[0] = max(0.0, bucket[0] - cost)
            return Grant(True, bucket[0], 0.0)
        if cost > capacity:  # no amount of waiting fills the bucket past its capacity
            return Grant(False, bucket[0], math.inf)
        return Grant(False, bucket[0], (cost - bucket[0]) / refill_per_second)

    async def count(self, key: str, limit: int, window_seconds: float,
                    cost: int = 1) -> Grant:
        _check("a quota", "limit and window", limit, window_seconds, cost)
        now = self._wall()
        window = math.floor(now / window_seconds)
        counter, _ = self._entry(self._counters, key, [window, 0])
        if counter[0] != window:
            counter[0], counter[1] = window, 0
        if counter[1] + cost <= limit:
            counter[1] += cost
            return Grant(True, float(limit - counter[1]), 0.0)
        retry = math.inf if cost > limit else (window + 1) * window_seconds - now
        return Grant(False, float(limit - counter[1]), retry)

    async def aclose(self) -> None:
        self._buckets.clear()
        self._counters.clear()

    def _entry(self, table: OrderedDict[str, list], key: str, fresh: list) -> tuple[list, bool]:
        """The entry of `key`, now the most recently used; `fresh` (and True) when new."""
        entry = table.get(key)
        if entry is not None:
            table.move_to_end(key)
            return entry, False
        table[key] = fresh
        while len(table) > self.max_keys:
            table.popitem(last=False)
        return fresh, True


def _check(what: str, names: str, amount: float, period: float, cost: float) -> None:
    # Chained comparisons are False for NaN, so NaN is refused too.
    if not (0 < amount < math.inf and 0 < period < math.inf and cost >= 0):
        raise ValueError(f"{what} needs a positive finite {names} and a cost of at least 0, "
                         f"not {amount}, {period}, {cost}")
