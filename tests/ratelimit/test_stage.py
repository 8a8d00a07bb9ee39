"""The `ratelimit` stage in a real `Pipeline` over a real `Catalog`, on a `MemoryState` with a
fake clock: selection by `match` and `methods`, key parts, order and first refusal, the
refusal's shape, the audit note, the metrics counter, and the factory."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bastion.config.ratelimit import RateLimitConfig
from bastion.gateway.catalog import Catalog
from bastion.guard.pipeline import Call, Pipeline
from bastion.guard.ratelimit import (
    RATE_LIMITED,
    RateLimited,
    RateLimitOff,
    RateLimitStage,
    build_limits,
    ratelimit_stage,
)
from bastion.protocol.errors import InternalError
from bastion.protocol.principal import Principal
from bastion.protocol.versions import LATEST_MODERN, Era
from bastion.session.server_side import ServerRequest
from bastion.state import Grant, MemoryState, StateError

ALICE = Principal("alice", "https://idp.example", "jwt", client_id="agent-1",
                  roles=frozenset({"analyst"}))
ALICE_OTHER_AGENT = Principal("alice", "https://idp.example", "jwt", client_id="agent-2",
                              roles=frozenset({"analyst"}))
BOB = Principal("bob", "https://idp.example", "jwt", client_id="agent-1",
                roles=frozenset({"responder"}))


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def catalog() -> Catalog:
    found = Catalog(["siem", "edr", "files"])
    found.update("siem", "siem__", tools=[{"name": "search", "inputSchema": {"type": "object"}}],
                 prompts=[{"name": "triage"}])
    found.update("edr", "edr__", tools=[
        {"name": "isolate_host", "inputSchema": {"type": "object"}},
        {"name": "list_hosts", "inputSchema": {"type": "object"}}])
    found.update("files", "files__", templates=[{"uriTemplate": "file:///logs/{day}",
                                                 "name": "logs"}])
    return found


CATALOG = catalog()


def stage(section: dict[str, Any]) -> tuple[RateLimitStage, Clock]:
    clock = Clock()
    config = RateLimitConfig.model_validate(section)
    return RateLimitStage(build_limits(config), MemoryState(clock=clock, wall_clock=clock)), clock


def call(method: str, params: dict[str, Any], principal: Principal | None) -> Call:
    request = ServerRequest(Era.MODERN, LATEST_MODERN, method, params, {}, None, None,
                            None)  # type: ignore[arg-type]
    target = None
    if method == "tools/call":
        target = CATALOG.tool(params["name"])
    elif method == "prompts/get":
        target = CATALOG.prompt(params["name"])
    elif method == "resources/read":
        target = CATALOG.resource(params["uri"])
    return Call(request, principal=principal, target=target)


async def allowed(limiter: RateLimitStage, method: str, params: dict[str, Any],
                  principal: Principal | None = ALICE) -> bool:
    try:
        await Pipeline([limiter]).check_request(call(method, params, principal))
    except RateLimited:
        return False
    return True


def tool(name: str) -> tuple[str, dict[str, Any]]:
    return "tools/call", {"name": name}


async def test_SPEC_TOOL_05_refusal_names_the_rule_and_the_wait_never_the_subject():
    limiter, clock = stage({"rules": [{"name": "per-user", "rate": "60/minute", "burst": 2}]})
    for _ in range(2):
        checked = call(*tool("siem__search"), ALICE)
        await limiter.check_request(checked)
    assert checked.notes["rate_limit"] == {"rule": "per-user", "remaining": 0.0}
    refused = call(*tool("siem__search"), ALICE)
    with pytest.raises(RateLimited) as error:
        await limiter.check_request(refused)
    assert error.value.code == RATE_LIMITED == -32008
    assert error.value.message == ("rate limit 'per-user' exceeded for this principal: "
                                   "retry in 1.0 s")
    assert error.value.data == {"rule": "per-user", "retryAfterMs": 1000, "limit": "60/minute",
                                "scope": ["principal"]}
    assert error.value.to_error()["code"] == -32008
    assert "alice" not in str(error.value.to_error())
    assert refused.notes["rate_limit"] == {"rule": "per-user", "remaining": 0, "limited": True}
    assert limiter.limited == {"per-user": 1}
    clock.now += 1.0
    assert await allowed(limiter, *tool("siem__search"))


async def test_principal_agent_upstream_and_tool_keys_are_separate_budgets():
    limiter, _ = stage({"rules": [{"name": "r", "rate": "1/hour",
                                   "per": ["principal", "agent", "tool"]}]})
    assert await allowed(limiter, *tool("siem__search"))
    assert not await allowed(limiter, *tool("siem__search"))
    assert await allowed(limiter, *tool("edr__list_hosts"))  # another tool
    assert await allowed(limiter, *tool("siem__search"), ALICE_OTHER_AGENT)  # another agent
    assert await allowed(limiter, *tool("siem__search"), BOB)  # another principal
    per_upstream, _ = stage({"rules": [{"name": "u", "rate": "1/hour", "per": ["upstream"]}]})
    assert await allowed(per_upstream, *tool("edr__list_hosts"))
    assert not await allowed(per_upstream, *tool("edr__isolate_host"), BOB)  # same upstream
    assert await allowed(per_upstream, *tool("siem__search"), BOB)


async def test_principal_means_the_human_across_agents_and_the_empty_scope_everyone():
    limiter, _ = stage({"rules": [{"name": "r", "rate": "1/hour"}]})
    assert await allowed(limiter, *tool("siem__search"))
    assert not await allowed(limiter, *tool("siem__search"), ALICE_OTHER_AGENT)
    everyone, _ = stage({"rules": [{"name": "all", "rate": "1/hour", "per": []}]})
    assert await allowed(everyone, *tool("siem__search"))
    with pytest.raises(RateLimited, match="exceeded for this gateway"):
        await everyone.check_request(call(*tool("siem__search"), BOB))
    anonymous, _ = stage({"rules": [{"name": "r", "rate": "1/hour"}]})
    assert await allowed(anonymous, *tool("siem__search"), None)
    assert not await allowed(anonymous, *tool("siem__search"), None)


async def test_match_and_methods_select_the_calls_a_limit_counts():
    limiter, _ = stage({"rules": [
        {"name": "edr-analysts", "rate": "1/hour", "methods": ["tools/call"],
         "match": {"roles": ["analyst"], "upstreams": ["edr"], "tools": ["edr__isolate*"]}}]})
    assert await allowed(limiter, *tool("edr__isolate_host"))
    assert not await allowed(limiter, *tool("edr__isolate_host"))
    assert await allowed(limiter, *tool("edr__list_hosts"))  # another tool glob
    assert await allowed(limiter, *tool("edr__isolate_host"), BOB)  # not an analyst
    assert await allowed(limiter, "prompts/get", {"name": "siem__triage"})  # another method
    assert limiter.limited == {"edr-analysts": 1}


async def test_template_reads_count_against_the_template_not_the_uri():
    limiter, _ = stage({"rules": [{"name": "logs", "rate": "1/hour", "per": ["tool"],
                                   "match": {"resources": ["file:///logs/2026-*"]}}]})
    read = "resources/read"
    assert await allowed(limiter, read, {"uri": "file:///logs/2026-01-01"})
    assert not await allowed(limiter, read, {"uri": "file:///logs/2026-01-02"})
    assert await allowed(limiter, read, {"uri": "file:///logs/2025-12-31"})  # not matched


async def test_limits_run_in_order_and_the_first_refusal_answers():
    limiter, clock = stage({
        "rules": [{"name": "burst", "rate": "1/second", "burst": 3}],
        "quotas": [{"name": "daily", "limit": 2, "window": "1d"}]})
    checked = call(*tool("siem__search"), ALICE)
    await limiter.check_request(checked)
    # The tightest budget is noted: the quota has 1 call left, the bucket 2 tokens.
    assert checked.notes["rate_limit"] == {"rule": "daily", "remaining": 1.0}
    assert await allowed(limiter, *tool("siem__search"))
    with pytest.raises(RateLimited) as error:
        await limiter.check_request(call(*tool("siem__search"), ALICE))
    assert error.value.data["rule"] == "daily"
    assert error.value.data["limit"] == "2/1d"
    # Until midnight UTC (the fake clock is 01:23:20 on day 0).
    assert error.value.data["retryAfterMs"] == (86400 - 5000) * 1000
    assert error.value.message.startswith("quota 'daily' exceeded for this principal")
    clock.now += 3  # the bucket refilled; the refused call still spent a token from it
    assert not await allowed(limiter, *tool("siem__search"))


class BrokenStore:
    """A shared store that is down."""

    async def take(self, key: str, capacity: float, refill_per_second: float,
                   cost: float = 1.0) -> Grant:
        raise StateError("connection refused")

    async def count(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> Grant:
        raise StateError("connection refused")

    async def aclose(self) -> None:
        pass


async def test_a_failing_store_fails_closed():
    config = RateLimitConfig.model_validate({"rules": [{"name": "r", "rate": "1/s"}]})
    limiter = RateLimitStage(build_limits(config), BrokenStore())
    with pytest.raises(InternalError, match="rate-limit store failed"):
        await limiter.check_request(call(*tool("siem__search"), ALICE))


async def test_the_factory_builds_nothing_for_nothing_and_uses_a_shared_store_when_given():
    empty = ratelimit_stage(SimpleNamespace(config=SimpleNamespace(rate_limits=None)))
    assert isinstance(empty, RateLimitOff)
    assert "check_request" not in vars(RateLimitOff)  # the pipeline never calls it
    section = RateLimitConfig.model_validate({"rules": [{"name": "r", "rate": "1/s"}],
                                              "max_keys": 7})
    built = ratelimit_stage(SimpleNamespace(config=SimpleNamespace(rate_limits=section)))
    assert isinstance(built, RateLimitStage) and built.state.max_keys == 7
    shared = MemoryState()
    given = ratelimit_stage(SimpleNamespace(config=SimpleNamespace(rate_limits=section),
                                            rate_state=shared))
    assert given.state is shared
    await shared.take("k", 1, 1.0)
    await given.aclose()  # a shared store is the gateway's to close, not the stage's
    assert len(shared) == 1
    await built.aclose()


async def test_methods_without_limits_and_lists_pass_untouched():
    limiter, _ = stage({"rules": [{"name": "r", "rate": "1/hour", "methods": ["tools/call"]}]})
    for _ in range(3):
        checked = call("tools/list", {}, ALICE)
        await limiter.check_request(checked)
        assert "rate_limit" not in checked.notes
