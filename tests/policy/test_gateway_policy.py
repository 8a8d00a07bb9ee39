"""The policy stage in a live gateway (real HTTP, a real upstream process), in both eras:
clients list only what they may use, a hidden tool or resource is indistinguishable from a
missing one, and a visible call the rules refuse is -32003 naming the rule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bastion.client import connect_http
from bastion.guard.pipeline import Pipeline
from bastion.guard.policy import policy_stage
from bastion.protocol.errors import MCPError
from tests.gateway.conftest import (  # noqa: F401  (gateway_http is a fixture)
    EVERYTHING,
    gateway_http,
    make_config,
    stdio_upstream,
)

from .support import policy

RULES = [
    {"name": "simple", "effect": "allow", "tools": ["demo__test_simple_text"]},
    {"name": "eu-only", "effect": "allow", "tools": ["demo__test_header_tool"],
     "args": {"region": {"enum": ["eu"]}}},
    {"name": "static", "effect": "allow", "resources": ["test://static-text"]},
]


async def error_of(awaitable) -> dict:
    with pytest.raises(MCPError) as caught:
        await awaitable
    return {"code": caught.value.code, "message": caught.value.message,
            "data": caught.value.data}


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_gateway_enforces_the_policy_on_lists_and_calls(gateway_http, mode) -> None:  # noqa: F811
    live = await gateway_http(make_config({"demo": stdio_upstream(EVERYTHING)}))
    gateway = live.gateway
    stand_in = SimpleNamespace(
        config=SimpleNamespace(policy=policy(RULES), auth=SimpleNamespace(mode="jwt")),
        catalog=gateway.catalog, unknown=gateway.unknown)
    gateway.pipeline = Pipeline([*gateway.pipeline.stages, policy_stage(stand_in)])
    async with connect_http(live.url, mode=mode) as client:
        names = sorted(t["name"] for t in await client.list_tools())
        assert names == ["demo__test_header_tool", "demo__test_simple_text"]
        assert [r["uri"] for r in await client.list_resources()] == ["test://static-text"]
        assert await client.list_prompts() == []

        result = await client.call_tool("demo__test_simple_text", {})
        assert not result.get("isError"), result
        result = await client.call_tool("demo__test_header_tool", {"region": "eu"})
        assert "region=eu" in str(result["content"])

        # Hidden and missing read the same, but for the name.
        hidden = await error_of(client.call_tool("demo__test_image_content", {}))
        missing = await error_of(client.call_tool("demo__no_such_tool", {}))
        assert hidden == {"code": missing["code"],
                          "message": missing["message"].replace("demo__no_such_tool",
                                                                "demo__test_image_content"),
                          "data": {"name": "demo__test_image_content"}}
        hidden = await error_of(client.read_resource("test://static-binary"))
        missing = await error_of(client.read_resource("test://no-such-resource"))
        assert hidden["code"] == missing["code"]
        assert hidden["message"] == missing["message"].replace("test://no-such-resource",
                                                               "test://static-binary")

        denied = await error_of(client.call_tool("demo__test_header_tool", {"region": "us"}))
        assert denied["code"] == -32003
        assert "denied by rule 'eu-only'" in denied["message"]
        assert denied["data"]["rule"] == "eu-only"
