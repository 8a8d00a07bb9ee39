"""Backoff and circuit breaker: pure state machines, driven with a fake clock and fixed dice."""

from __future__ import annotations

import random

import pytest

from bastion.gateway.resilience import Backoff, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HighestRoll(random.Random):
    """Always the top of the range, so the jitter's upper bound is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


# -- Backoff -----------------------------------------------------------------------------


def test_backoff_ceiling_grows_exponentially_up_to_the_cap():
    backoff = Backoff(base=0.5, factor=2.0, cap=3.0, rng=HighestRoll())
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.attempts == 6


def test_backoff_full_jitter_stays_within_zero_and_the_ceiling():
    backoff = Backoff(base=1.0, factor=3.0, cap=50.0, rng=random.Random(7))
    ceilings = [1.0, 3.0, 9.0, 27.0, 50.0, 50.0]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    # Full jitter, not "ceiling plus a little": the delays are spread below the ceiling.
    assert any(d < c / 2 for d, c in zip(delays, ceilings, strict=True))


def test_backoff_reset_starts_again_from_base():
    backoff = Backoff(base=0.25, cap=10.0, rng=HighestRoll())
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.ceiling == 0.25
    assert backoff.next_delay() == 0.25


def test_backoff_survives_a_very_long_outage():
    backoff = Backoff(base=0.5, factor=10.0, cap=30.0, rng=HighestRoll())
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 30.0


@pytest.mark.parametrize("kwargs, message", [
    ({"base": 0}, "base must be positive"),
    ({"base": -1}, "base must be positive"),
    ({"factor": 0.5}, "factor must be at least 1"),
    ({"base": 2.0, "cap": 1.0}, "cap"),
])
def test_backoff_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


# -- CircuitBreaker ----------------------------------------------------------------------


def tripped(cooldown: float, clock: FakeClock) -> CircuitBreaker:
    """A breaker opened by a single failure."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown=cooldown, clock=clock)
    breaker.record_failure()
    return breaker


def test_breaker_opens_after_the_threshold_of_failures_in_a_row():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.retry_after == 0.0
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.advance(4.0)
    assert breaker.retry_after == pytest.approx(6.0)
    assert not breaker.allow()


def test_breaker_success_resets_the_count():
    breaker = CircuitBreaker(failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.failures == 1


def test_breaker_half_open_lets_exactly_one_trial_through():
    clock = FakeClock()
    breaker = tripped(5.0, clock)
    clock.advance(5.0)
    assert breaker.state == "half_open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_breaker_failed_trial_opens_for_a_full_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=4, cooldown=5.0, clock=clock)
    for _ in range(4):
        breaker.record_failure()
    clock.advance(6.0)
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half_open
    assert breaker.state == "open"
    assert breaker.retry_after == pytest.approx(5.0)
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()


def test_breaker_release_frees_the_trial_slot_without_a_verdict():
    clock = FakeClock()
    breaker = tripped(1.0, clock)
    clock.advance(1.0)
    assert breaker.allow()
    breaker.release()  # the trial was cancelled by its caller
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_breaker_ignores_stragglers_while_open():
    clock = FakeClock()
    breaker = tripped(10.0, clock)
    clock.advance(8.0)
    breaker.record_success()  # admitted before it opened: not the trial
    assert breaker.state == "open"
    breaker.record_failure()  # must not restart the cooldown
    assert breaker.retry_after == pytest.approx(2.0)


def test_breaker_end_cooldown_allows_a_trial_now():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60.0, clock=clock)
    breaker.end_cooldown()  # nothing to do while closed
    assert breaker.state == "closed"
    breaker.record_failure()
    breaker.end_cooldown()
    assert breaker.state == "half_open"
    assert breaker.retry_after == 0.0
    assert breaker.allow()
    assert not breaker.allow()


@pytest.mark.parametrize("kwargs, message", [
    ({"failure_threshold": 0}, "failure_threshold must be at least 1"),
    ({"cooldown": -1.0}, "cooldown must not be negative"),
])
def test_breaker_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs)
