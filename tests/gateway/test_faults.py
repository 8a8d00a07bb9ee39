"""Faults seen THROUGH the gateway: upstreams that crash mid-call, hang, speak garbage or send
invalid results, tool names that collide, and routing headers that disagree with the body.

Every test runs a real gateway on a loopback port in front of real child processes, and talks
to it with Bastion's HTTP client in both eras. The rule under test: a broken upstream yields a
JSON-RPC error that NAMES it, and never takes the healthy upstreams down with it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bastion.client import Client, connect_http
from bastion.gateway.app import Gateway
from bastion.gateway.catalog import Collision
from bastion.protocol.errors import MCPError
from bastion.protocol.meta import CLIENT_CAPABILITIES, PROTOCOL_VERSION
from bastion.protocol.versions import LATEST_MODERN

from .conftest import PEERS, make_config, stdio_upstream

MODES = ["legacy", "modern"]
TOOL_SERVER = [sys.executable, str(PEERS / "tool_server.py")]
RAW_TOOLS = [sys.executable, str(PEERS / "raw_tools.py")]


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, within: float = 15.0,
                     what: str) -> None:
    """Poll `check` until it is true; fail naming `what` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        outcome = check()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


def text_of(result: dict[str, Any]) -> str:
    assert not result.get("isError"), result
    return result["content"][0]["text"]


def assert_names_upstream(error: MCPError, upstream: str, kind: str) -> None:
    """The error is the gateway's own about `upstream` (not a generic one), of `kind`."""
    assert repr(upstream) in error.message, error.message
    assert error.code == -32603, (error.code, error.message)
    assert isinstance(error.data, dict), error.data
    assert error.data.get("upstream") == upstream and error.data.get("kind") == kind, error.data


async def serves_again(gateway: Gateway, client: Client, name: str, old_pid: int) -> bool:
    """Whether upstream `name` is back with a new child that answers its `pid` tool."""
    upstream = gateway.pool.get(name)
    if upstream is None or upstream.state != "up" or upstream.pid in (None, old_pid):
        return False
    try:
        return text_of(await client.call_tool(f"{name}__pid", {})) == str(upstream.pid)
    except MCPError:  # the catalogue is being refilled after the reconnection
        return False


# -- an upstream killed while a call is in flight ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_killed_mid_call_is_named_and_restarted(gateway_http, mode) -> None:
    live = await gateway_http(make_config({"victim": stdio_upstream(TOOL_SERVER),
                                           "healthy": stdio_upstream(TOOL_SERVER)}))
    gateway = live.gateway
    victim = gateway.pool.get("victim")
    assert victim is not None and victim.state == "up" and victim.pid is not None
    old_pid = victim.pid
    async with connect_http(live.url, mode=mode) as client:
        in_flight = asyncio.create_task(client.call_tool("victim__slow_pid", {"delay": 30}))
        await eventually(lambda: victim.in_flight >= 1, what="the slow call reached the gateway")
        os.kill(old_pid, signal.SIGKILL)
        # The healthy upstream answers while the victim is dead or restarting.
        assert text_of(await client.call_tool("healthy__echo", {"text": "during"})) == "during"
        with pytest.raises(MCPError) as caught:
            await asyncio.wait_for(in_flight, 10)
        assert_names_upstream(caught.value, "victim", "failed")
        assert "tools/call" in caught.value.message
        await eventually(lambda: serves_again(gateway, client, "victim", old_pid),
                         what="the supervisor restarted 'victim' and it serves again")
        assert victim.restarts >= 1
        assert text_of(await client.call_tool("healthy__echo", {"text": "after"})) == "after"


# -- an upstream that hangs ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_hung_call_times_out_at_the_upstreams_timeout(gateway_http, mode) -> None:
    live = await gateway_http(make_config({"stuck": stdio_upstream(TOOL_SERVER, timeout=1),
                                           "healthy": stdio_upstream(TOOL_SERVER)}))
    loop = asyncio.get_running_loop()
    async with connect_http(live.url, mode=mode) as client:
        started = loop.time()
        hung = asyncio.create_task(client.call_tool("stuck__hang", {}))
        assert text_of(await client.call_tool("healthy__echo", {"text": "meanwhile"})) \
            == "meanwhile"
        with pytest.raises(MCPError) as caught:
            await asyncio.wait_for(hung, 10)
        elapsed = loop.time() - started
        assert 0.9 <= elapsed < 4, elapsed
        assert_names_upstream(caught.value, "stuck", "timeout")
        assert "within 1 s" in caught.value.message
        # The hang was cancelled upstream: the same child still answers quick calls.
        assert text_of(await client.call_tool("stuck__echo", {"text": "alive"})) == "alive"
        assert live.gateway.pool.get("stuck").restarts == 0


# -- upstreams that never speak MCP -------------------------------------------------------------


@pytest.fixture
async def with_broken_upstreams(gateway_http):
    return await gateway_http(make_config({
        "garbage": stdio_upstream([sys.executable, str(PEERS / "garbage.py")],
                                  connect_timeout=1),
        "crashy": stdio_upstream([sys.executable, str(PEERS / "crashy.py")],
                                 connect_timeout=1),
        "healthy": stdio_upstream(TOOL_SERVER),
    }))


@pytest.mark.parametrize("mode", MODES)
async def test_broken_upstreams_do_not_stop_the_gateway(with_broken_upstreams, mode) -> None:
    live = with_broken_upstreams
    assert [u.state for u in live.gateway.pool] == ["down", "down", "up"]
    async with connect_http(live.url, mode=mode) as client:
        names = [tool["name"] for tool in await client.list_tools()]
        assert names and all(name.startswith("healthy__") for name in names), names
        assert text_of(await client.call_tool("healthy__echo", {"text": "ok"})) == "ok"
        with pytest.raises(MCPError) as caught:
            await client.call_tool("garbage__anything", {})
        assert_names_upstream(caught.value, "garbage", "unavailable")
        assert "not JSON-RPC" in caught.value.message  # what the operator must fix
        with pytest.raises(MCPError) as caught:
            await client.call_tool("crashy__anything", {})
        assert_names_upstream(caught.value, "crashy", "unavailable")
        # A name under no upstream's prefix is still the spec's plain error.
        with pytest.raises(MCPError) as caught:
            await client.call_tool("nobody__anything", {})
        assert caught.value.code == -32602


# -- an upstream that answers with an invalid result --------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool", ["no_content", "not_object"])
async def test_invalid_tool_result_is_an_error_naming_the_upstream(gateway_http, mode,
                                                                   tool) -> None:
    live = await gateway_http(make_config({"raw": stdio_upstream(RAW_TOOLS, timeout=3)}))
    loop = asyncio.get_running_loop()
    async with connect_http(live.url, mode=mode) as client:
        assert text_of(await client.call_tool("raw__echo", {"text": "fine"})) == "fine"
        started = loop.time()
        with pytest.raises(MCPError) as caught:
            await client.call_tool(f"raw__{tool}", {})
        assert_names_upstream(caught.value, "raw", "failed")
        assert loop.time() - started < 2, "the invalid answer was noticed only at the timeout"
        # One bad answer is not a dead upstream: the next call goes through.
        assert text_of(await client.call_tool("raw__echo", {"text": "again"})) == "again"


# -- two upstreams offering the same tool name ---------------------------------------------------


async def test_colliding_tool_names_first_in_config_order_wins(gateway_http) -> None:
    # "zeta" before "alpha": the winner is the first configured, not the first by name.
    live = await gateway_http(make_config({"zeta": stdio_upstream(TOOL_SERVER, prefix=""),
                                           "alpha": stdio_upstream(TOOL_SERVER, prefix="")}))
    gateway = live.gateway
    expected = ["echo", "hang", "pid", "slow_pid"]
    assert gateway.catalog.collisions() == [
        Collision("tool", name, ("zeta", "alpha"), "zeta") for name in expected]
    listings = []
    for mode in MODES * 2:
        async with connect_http(live.url, mode=mode) as client:
            listings.append([tool["name"] for tool in await client.list_tools()])
            winner = text_of(await client.call_tool("pid", {}))
            assert winner == str(gateway.pool.get("zeta").pid)
            assert winner != str(gateway.pool.get("alpha").pid)
    assert listings == [expected] * 4


# -- routing headers that disagree with the body ------------------------------------------------


async def test_header_body_mismatch_is_refused_before_the_upstream(gateway_http,
                                                                   tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    live = await gateway_http(make_config({"rec": stdio_upstream([*RAW_TOOLS, "--log",
                                                                  str(log)])}))

    def calls_received() -> list[str]:
        return [line for line in log.read_text().splitlines() if line.startswith("tools/call")]

    def post(method_header: str, request_id: int) -> Any:
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": "rec__echo", "arguments": {"text": "smuggled"},
                           "_meta": {PROTOCOL_VERSION: LATEST_MODERN, CLIENT_CAPABILITIES: {}}}}
        headers = {"Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": LATEST_MODERN, "Mcp-Method": method_header,
                   "Mcp-Name": "rec__echo"}
        return http.post(live.url, data=orjson.dumps(body), headers=headers)

    assert calls_received() == []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with post("tools/list", 7) as response:
            assert response.status == 400
            reply = orjson.loads(await response.read())
        assert reply["id"] == 7 and reply["error"]["code"] == -32020, reply
        assert "Mcp-Method" in reply["error"]["message"]
        assert calls_received() == []
        # The same request with honest headers does reach the upstream (the log works).
        async with post("tools/call", 8) as response:
            assert response.status == 200
            reply = orjson.loads(await response.read())
        assert reply["result"]["content"][0]["text"] == "smuggled", reply
    assert calls_received() == ["tools/call echo"]
