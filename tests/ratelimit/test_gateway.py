"""The `ratelimit` stage in a running gateway (`auth: {mode: dev}`, real HTTP, the everything
server as a stdio upstream, Bastion's own client): the limit holds under concurrent load,
budgets are per principal, agent and tool, and refusals carry -32008 and the retry hint."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.client import connect_http
from bastion.guard.identity.dev_issuer import load_or_create_dev_key, mint_dev_token
from bastion.guard.ratelimit import RATE_LIMITED
from bastion.protocol.errors import MCPError
from tests.gateway.conftest import EVERYTHING, make_config, stdio_upstream

pytestmark = pytest.mark.timeout(60)

RESOURCE = "https://gw.example.com/mcp"
TEXT = "up__test_simple_text"
IMAGE = "up__test_image_content"


def config(tmp_path, rules: list[dict[str, Any]], quotas: list[dict[str, Any]] | None = None):
    return make_config(
        {"up": stdio_upstream(EVERYTHING)},
        auth={"mode": "dev", "resource": RESOURCE},
        policy={"rules": [{"name": "everyone", "effect": "allow"}]},
        guard={"stages": ["header_body", "policy", "ratelimit", "pin", "approval", "scan",
                          "redact"]},
        rate_limits={"rules": rules, "quotas": quotas or []},
        state_dir=str(tmp_path))


def token(tmp_path, subject: str, agent: str = "agent-1") -> str:
    return mint_dev_token(load_or_create_dev_key(tmp_path), audience=RESOURCE, subject=subject,
                          client_id=agent)


async def burst(url: str, bearer: str, name: str, count: int) -> list[dict[str, Any] | MCPError]:
    """`count` concurrent calls of `name`, as one client would fire them."""
    async with connect_http(url, bearer_token=bearer) as client:
        return await asyncio.gather(*(client.call_tool(name, {}) for _ in range(count)),
                                    return_exceptions=True)


def tally(answers: list[Any]) -> tuple[int, list[MCPError]]:
    ok = [a for a in answers if isinstance(a, dict)]
    assert all(a["content"] and not a.get("isError") for a in ok)
    refused = [a for a in answers if not isinstance(a, dict)]
    assert all(isinstance(a, MCPError) for a in refused), refused
    return len(ok), refused


async def test_SPEC_TOOL_05_the_limit_holds_under_concurrent_load(tmp_path, gateway_http):
    live = await gateway_http(config(tmp_path, [
        {"name": "per-user", "per": ["principal"], "rate": "1/hour", "burst": 10}]))
    alice, bob = token(tmp_path, "alice"), token(tmp_path, "bob")
    answers = await asyncio.gather(burst(live.url, alice, TEXT, 50),
                                   burst(live.url, bob, TEXT, 50))
    for answered in answers:
        ok, refused = tally(answered)
        assert (ok, len(refused)) == (10, 40)  # exactly the burst, per principal
        for error in refused:
            assert error.code == RATE_LIMITED
            assert error.data["rule"] == "per-user" and error.data["scope"] == ["principal"]
            assert error.data["limit"] == "1/hour"
            assert 0 < error.data["retryAfterMs"] <= 3600 * 1000
            assert "alice" not in error.message and "bob" not in error.message
    stage = live.gateway.pipeline.stage("ratelimit")
    assert stage is not None and stage.limited == {"per-user": 80}
    # Bob's refusals did not touch Alice's budget, which is spent: one more is refused.
    (again,) = await burst(live.url, alice, TEXT, 1)
    assert isinstance(again, MCPError) and again.code == RATE_LIMITED


async def test_per_agent_and_per_tool_keys_are_separate_budgets(tmp_path, gateway_http):
    live = await gateway_http(config(tmp_path, [
        {"name": "per-agent-tool", "per": ["principal", "agent", "tool"], "rate": "1/hour",
         "burst": 3}]))
    alice_1, alice_2 = token(tmp_path, "alice", "agent-1"), token(tmp_path, "alice", "agent-2")
    first = await asyncio.gather(burst(live.url, alice_1, TEXT, 8),
                                 burst(live.url, alice_1, IMAGE, 8),
                                 burst(live.url, alice_2, TEXT, 8))
    for answered in first:
        ok, refused = tally(answered)
        assert (ok, len(refused)) == (3, 5)
        assert {e.data["scope"] == ["principal", "agent", "tool"] for e in refused} == {True}


async def test_quota_and_match_in_the_gateway(tmp_path, gateway_http):
    live = await gateway_http(config(
        tmp_path, [{"name": "images-only", "rate": "1/hour", "burst": 1,
                    "match": {"tools": ["*image*"]}}],
        [{"name": "daily", "per": ["principal"], "limit": 4, "window": "1d"}]))
    alice = token(tmp_path, "alice")
    ok, refused = tally(await burst(live.url, alice, IMAGE, 3))
    assert ok == 1 and {e.data["rule"] for e in refused} == {"images-only"}
    ok, refused = tally(await burst(live.url, alice, TEXT, 6))
    # The image rule does not select text calls; the quota had 3 of its 4 calls left.
    assert ok == 3 and {e.data["rule"] for e in refused} == {"daily"}
    assert all(e.data["limit"] == "4/1d" for e in refused)
