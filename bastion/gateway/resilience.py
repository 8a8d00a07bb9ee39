"""Resilience primitives for upstream connections: reconnection backoff and a circuit breaker.

Both are pure state machines with no I/O: `Backoff` takes its randomness and `CircuitBreaker`
its clock from the caller, so tests drive them deterministically. The upstream supervisor
(`bastion.gateway.upstream`) sleeps for the backoff's delays and asks the breaker before
every call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, base*factor**n)].

    Full jitter spreads the reconnections of many gateways (or many upstreams that failed
    together) instead of having them retry in lockstep.
    """

    def __init__(
        self,
        base: float = 0.5,
        factor: float = 2.0,
        cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0:
            raise ValueError(f"backoff base must be positive, got {base!r}")
        if factor < 1:
            raise ValueError(f"backoff factor must be at least 1, got {factor!r}")
        if cap < base:
            raise ValueError(f"backoff cap ({cap!r}) must be at least its base ({base!r})")
        self.base = base
        self.factor = factor
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()
        self._attempts = 0
        self._ceiling = base

    @property
    def attempts(self) -> int:
        """Delays handed out since the last `reset()`."""
        return self._attempts

    @property
    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return self._ceiling

    def next_delay(self) -> float:
        """The next delay in seconds; each call raises the ceiling until it reaches `cap`."""
        delay = self._rng.uniform(0.0, self._ceiling)
        self._attempts += 1
        # Grown by multiplication and clamped, so factor**n never overflows however long
        # an upstream stays down.
        self._ceiling = min(self.cap, self._ceiling * self.factor)
        return delay

    def reset(self) -> None:
        """Start again from `base` (after a successful connection)."""
        self._attempts = 0
        self._ceiling = self.base


class CircuitBreaker:
    """Stops calling an upstream that keeps failing, and lets one trial call test its recovery.

    closed: calls pass; `failure_threshold` failures in a row open the breaker.
    open: calls are refused until `cooldown` seconds have passed.
    half_open: exactly one trial call at a time passes; its success closes the breaker, its
    failure opens it again for another cooldown.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold!r}")
        if cooldown < 0:
            raise ValueError(f"cooldown must not be negative, got {cooldown!r}")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The state now: an open breaker whose cooldown has passed reads as half_open."""
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown:
            self._state = "half_open"
            self._trial_in_flight = False
        return self._state

    @property
    def failures(self) -> int:
        """Failures in a row (reset by a success)."""
        return self._failures

    @property
    def retry_after(self) -> float:
        """Seconds until a call may pass: 0.0 when one may pass now, or when a half-open
        trial is under way (its outcome, not the clock, decides)."""
        if self.state == "open":
            return max(0.0, self._opened_at + self.cooldown - self._clock())
        return 0.0

    def allow(self) -> bool:
        """Whether a call may go ahead now; in half_open, the caller that gets True is the trial
        and must report its outcome (`record_success`, `record_failure` or `release`)."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record_success(self) -> None:
        if self._state == "open":
            return  # a call admitted before the breaker opened: the trial decides, not it
        self._state = "closed"
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        if self._state == "open":
            return  # already open: a straggler must not extend the cooldown
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """A call ended with no verdict (the caller cancelled it): free the trial slot."""
        self._trial_in_flight = False

    def end_cooldown(self) -> None:
        """Evidence of recovery (a fresh connection): an open breaker allows its trial now."""
        if self._state == "open":
            self._state = "half_open"
            self._trial_in_flight = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._trial_in_flight = False


__all__ = ["Backoff", "BreakerState", "CircuitBreaker"]
