"""The gateway end to end with real upstreams: lists, calls and errors, in both eras."""

from __future__ import annotations

import pytest

from bastion.client import ClientHandlers, connect_http
from bastion.protocol.errors import MCPError

from .conftest import EVERYTHING, TIME_SERVER, make_config, stdio_upstream

MODES = ["legacy", "modern"]


async def _elicit(params: dict) -> dict:
    return {"action": "accept", "content": {"name": "Ada", "username": "ada",
                                            "email": "ada@example.com"}}


async def _sample(params: dict) -> dict:
    return {"role": "assistant", "model": "test", "content": {"type": "text", "text": "Paris"}}


@pytest.fixture
async def two_upstreams(gateway_http):
    config = make_config({
        "demo": stdio_upstream(EVERYTHING),
        "time": stdio_upstream(TIME_SERVER),
    })
    return await gateway_http(config)


@pytest.mark.parametrize("mode", MODES)
async def test_lists_are_merged_with_prefixes(two_upstreams, mode) -> None:
    async with connect_http(two_upstreams.url, mode=mode) as client:
        names = [t["name"] for t in await client.list_tools()]
    assert "time__get_current_time" in names
    assert "demo__test_simple_text" in names
    assert names == sorted(names)


@pytest.mark.parametrize("mode", MODES)
async def test_calls_reach_their_upstream(two_upstreams, mode) -> None:
    async with connect_http(two_upstreams.url, mode=mode) as client:
        result = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not result.get("isError"), result
        assert "UTC" in result["content"][0]["text"]
        result = await client.call_tool("demo__test_simple_text", {})
        assert result["content"][0]["type"] == "text"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream_protocol", ["legacy", "modern"])
async def test_elicitation_and_sampling_cross_the_bridge(gateway_http, mode,
                                                         upstream_protocol) -> None:
    live = await gateway_http(make_config({
        "demo": stdio_upstream(EVERYTHING, protocol=upstream_protocol)}))
    handlers = ClientHandlers(elicitation=_elicit, sampling=_sample)
    async with connect_http(live.url, mode=mode, handlers=handlers) as client:
        result = await client.call_tool("demo__test_elicitation", {"message": "Who?"})
        assert "accept" in str(result["content"]), result
        result = await client.call_tool("demo__test_sampling", {"prompt": "Capital?"})
        assert "Paris" in str(result["content"]), result


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_tool_is_the_spec_error(two_upstreams, mode) -> None:
    async with connect_http(two_upstreams.url, mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("nope__nothing", {})
    assert caught.value.code == -32602
    assert "nope__nothing" in caught.value.message
