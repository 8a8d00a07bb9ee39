"""`MemoryState` with a fake clock: token-bucket arithmetic (burst, refill, exact retry
hints), fixed quota windows, the LRU bound, and refused bad input."""

from __future__ import annotations

import math

import pytest

from bastion.state import Grant, MemoryState, RateState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def state(max_keys: int = 100, now: float = 1000.0) -> tuple[MemoryState, Clock]:
    clock = Clock(now)
    return MemoryState(max_keys=max_keys, clock=clock, wall_clock=clock), clock


def test_memory_state_is_a_rate_state():
    assert isinstance(MemoryState(), RateState)


async def test_SPEC_TOOL_05_burst_then_refusal_with_the_exact_wait():
    store, clock = state()
    grants = [await store.take("k", 5, 0.5) for _ in range(6)]
    assert [g.allowed for g in grants] == [True] * 5 + [False]
    assert [g.remaining for g in grants[:5]] == [4, 3, 2, 1, 0]
    assert grants[5] == Grant(False, 0.0, 2.0)  # one token at 0.5/s: 2 s
    clock.now += 1.0
    half = await store.take("k", 5, 0.5)
    assert not half.allowed and half.retry_after == pytest.approx(1.0)
    assert half.remaining == pytest.approx(0.5)
    clock.now += 1.0
    assert (await store.take("k", 5, 0.5)).allowed
    assert not (await store.take("k", 5, 0.5)).allowed


async def test_refill_stops_at_the_capacity_and_costs_count():
    store, clock = state()
    for _ in range(3):
        await store.take("k", 3, 1.0)
    clock.now += 3600  # an hour idle refills to the capacity, not past it
    assert (await store.take("k", 3, 1.0, cost=3)).allowed
    refused = await store.take("k", 3, 1.0, cost=2)
    assert refused == Grant(False, 0.0, 2.0)
    never = await store.take("k", 3, 1.0, cost=4)  # larger than the bucket: never
    assert not never.allowed and math.isinf(never.retry_after)


async def test_float_refill_a_hair_short_of_a_token_counts_as_the_token():
    store, clock = state()
    await store.take("k", 1, 0.1)
    for _ in range(9):  # ten refills of 0.1 sum to 0.9999999999999999 tokens
        clock.now += 1.0
        assert not (await store.take("k", 1, 0.1)).allowed
    clock.now += 1.0
    assert (await store.take("k", 1, 0.1)).allowed


async def test_a_clock_going_backwards_refills_nothing():
    store, clock = state()
    await store.take("k", 1, 1.0)
    clock.now -= 50
    assert not (await store.take("k", 1, 1.0)).allowed
    clock.now += 1.0
    assert (await store.take("k", 1, 1.0)).allowed


async def test_keys_are_separate_budgets():
    store, _ = state()
    assert (await store.take("a", 1, 0.001)).allowed
    assert not (await store.take("a", 1, 0.001)).allowed
    assert (await store.take("b", 1, 0.001)).allowed


async def test_quota_windows_are_fixed_and_aligned_to_the_epoch():
    store, clock = state(now=86400 * 10 + 3600)  # 01:00 UTC on day 10
    grants = [await store.count("q", 3, 86400) for _ in range(4)]
    assert [g.allowed for g in grants] == [True, True, True, False]
    assert [g.remaining for g in grants] == [2, 1, 0, 0]
    assert grants[3].retry_after == pytest.approx(23 * 3600)  # to midnight
    clock.now = 86400 * 11 - 0.5
    assert not (await store.count("q", 3, 86400)).allowed
    clock.now = 86400 * 11  # the next window
    assert (await store.count("q", 3, 86400)) == Grant(True, 2.0, 0.0)
    assert not (await store.count("q", 3, 86400, cost=3)).allowed  # 1 + 3 > 3: not counted
    assert (await store.count("q", 3, 86400, cost=2)).allowed


async def test_the_key_bound_forgets_the_least_recently_used():
    store, _ = state(max_keys=3)
    for key in ("a", "b", "c"):
        await store.take(key, 1, 0.001)
    await store.take("a", 1, 0.001)  # "a" is used again: "b" is now the oldest
    await store.take("d", 1, 0.001)
    assert len(store) == 3
    assert not (await store.take("a", 1, 0.001)).allowed  # remembered (still empty)
    assert (await store.take("b", 1, 0.001)).allowed  # forgotten: a full bucket again
    for key in ("w", "x", "y", "z"):
        await store.count(key, 1, 60)
    assert len(store) == 6  # buckets and counters are bounded separately
    await store.aclose()
    assert len(store) == 0


@pytest.mark.parametrize(("capacity", "refill", "cost"), [
    (0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, math.inf, 1), (math.nan, 1, 1), (1, 1, -1)])
async def test_bad_bucket_arguments_are_refused(capacity, refill, cost):
    store, _ = state()
    with pytest.raises(ValueError, match="positive finite"):
        await store.take("k", capacity, refill, cost)
    assert len(store) == 0


@pytest.mark.parametrize(("limit", "window", "cost"), [(0, 60, 1), (1, 0, 1), (1, math.nan, 1),
                                                       (1, 60, -1)])
async def test_bad_quota_arguments_are_refused(limit, window, cost):
    store, _ = state()
    with pytest.raises(ValueError, match="positive finite"):
        await store.count("k", limit, window, cost)


def test_a_store_needs_room_for_one_key():
    with pytest.raises(ValueError, match="at least 1"):
        MemoryState(max_keys=0)
