"""Bastion's client (`connect_stdio`) against real SDK-built servers over stdio.

Peers: PyPI `mcp-server-time`, and an SDK `MCPServer` script (conftest `SDK_PEER_SOURCE`).
Both are dual-era, so `legacy` must negotiate 2025-11-25 and `modern`/`auto` 2026-07-28.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from bastion.client import Client, ClientHandlers, connect_stdio
from bastion.protocol.errors import (
    InvalidParams,
    MCPError,
    MissingRequiredClientCapability,
)
from bastion.protocol.jsonrpc import Notification
from bastion.session.errors import MessageTooLarge
from tests.interop.conftest import (
    BASTION_ERA_MODES,
    BASTION_MODES,
    LEGACY_VERSION,
    MODERN_VERSION,
    SDK_PEER_TOOLS,
    Recorder,
    texts,
    time_server_argv,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)


# -- era negotiation ---------------------------------------------------------------------------


async def check_negotiated(client: Client, mode: str, server_name: str) -> None:
    """The era facts every dual-era peer must produce for `mode`."""
    expected = BASTION_MODES[mode]
    assert client.protocol_version == expected
    assert client.era.value == ("legacy" if expected == LEGACY_VERSION else "modern")
    assert client.server.version == expected
    assert expected in client.server.supported_versions
    assert client.server.server_info is not None
    assert client.server.server_info["name"] == server_name
    assert "tools" in client.server.capabilities
    if expected == LEGACY_VERSION:
        await client.ping()  # the legacy era keeps ping
    else:
        with pytest.raises(MCPError, match="does not exist in the modern protocol"):
            await client.ping()


@pytest.mark.parametrize("mode", list(BASTION_MODES))
async def test_sdk_peer_negotiates_expected_era(mode: str, sdk_peer_argv: list[str]):
    async with connect_stdio(sdk_peer_argv, mode=mode) as client:
        await check_negotiated(client, mode, "sdk-peer")
        assert client.server.instructions == "interop peer"
        # A request after negotiation works in that era.
        assert {tool["name"] for tool in await client.list_tools()} == SDK_PEER_TOOLS


# -- mcp-server-time ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(BASTION_MODES))
async def test_time_server_tools(mode: str):
    async with connect_stdio(time_server_argv(), mode=mode) as client:
        await check_negotiated(client, mode, "mcp-time")
        tools = {tool["name"]: tool for tool in await client.list_tools()}
        assert set(tools) == {"get_current_time", "convert_time"}
        assert tools["get_current_time"]["inputSchema"]["required"] == ["timezone"]
        assert set(tools["convert_time"]["inputSchema"]["required"]) == {
            "source_timezone", "time", "target_timezone",
        }

        now = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert now["isError"] is False
        assert now["structuredContent"]["timezone"] == "UTC"
        assert now["structuredContent"]["datetime"].endswith("+00:00")
        # The text block mirrors the structured content.
        assert json.loads(texts(now)[0]) == now["structuredContent"]

        converted = await client.call_tool(
            "convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )
        assert converted["isError"] is False
        structured = converted["structuredContent"]
        assert structured["source"]["timezone"] == "UTC"
        assert "T12:00:00+00:00" in structured["source"]["datetime"]
        assert structured["target"]["timezone"] == "Asia/Tokyo"
        assert "T21:00:00+09:00" in structured["target"]["datetime"]
        assert structured["time_difference"] == "+9.0h"

        # mcp-server-time reports a bad timezone as a tool error (isError), not a JSON-RPC error.
        bad = await client.call_tool("get_current_time", {"timezone": "Mars/Olympus"})
        assert bad["isError"] is True
        assert "structuredContent" not in bad
        [message] = texts(bad)
        assert message.startswith("Error executing tool get_current_time: Invalid timezone:")
        assert "Mars/Olympus" in message


# -- an SDK MCPServer ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BASTION_ERA_MODES)
async def test_sdk_peer_tools_and_progress(mode: str, sdk_peer_argv: list[str]):
    async with connect_stdio(sdk_peer_argv, mode=mode) as client:
        tools = {tool["name"]: tool for tool in await client.list_tools()}
        assert set(tools) == SDK_PEER_TOOLS
        for tool in tools.values():
            assert tool["inputSchema"]["type"] == "object"
        echo_schema = tools["echo"]["inputSchema"]
        assert echo_schema["properties"]["text"]["type"] == "string"
        assert echo_schema["properties"]["times"]["type"] == "integer"
        assert echo_schema["required"] == ["text"]

        # str and int arguments
        echoed = await client.call_tool("echo", {"text": "hi", "times": 3})
        assert echoed["isError"] is False
        assert texts(echoed) == ["hi hi hi"]
        summed = await client.call_tool("add", {"a": 2, "b": 3})
        assert texts(summed) == ["5"]
        assert summed["structuredContent"] == {"result": 5}

        # structured output, with its outputSchema in the listing
        weather_schema = tools["weather"]["outputSchema"]
        assert set(weather_schema["required"]) == {"city", "celsius", "conditions"}
        weather = await client.call_tool("weather", {"city": "Oslo"})
        assert weather["isError"] is False
        assert weather["structuredContent"] == {
            "city": "Oslo", "celsius": 21.5, "conditions": "sunny",
        }
        assert json.loads(texts(weather)[0]) == weather["structuredContent"]

        # a tool error is a result, not an exception
        failed = await client.call_tool("fail", {"reason": "boom"})
        assert failed["isError"] is True
        assert texts(failed) == ["Error executing tool fail: failure: boom"]

        # the SDK answers an unknown tool with isError (not a JSON-RPC error), in both eras
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown["isError"] is True
        assert texts(unknown) == ["Unknown tool: no_such_tool"]

        # arguments the tool's schema rejects: also a tool error
        invalid = await client.call_tool("add", {"a": "x", "b": 1})
        assert invalid["isError"] is True
        assert texts(invalid)[0].startswith("Error executing tool add:")

        if mode == "modern":
            assert weather["resultType"] == "complete"

        # progress notifications reach the callback of the call that asked for them
        updates: list[tuple[float, float | None, str | None]] = []

        def on_progress(progress: float, total: float | None, message: str | None) -> None:
            updates.append((progress, total, message))

        counted = await client.call_tool("slow_count", {"steps": 3}, on_progress=on_progress)
        assert texts(counted) == ["counted 3"]
        assert updates == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
        updates.clear()
        await client.call_tool("slow_count", {"steps": 2})
        assert updates == []

        # concurrent calls: each result and each progress stream stays with its own call
        streams: dict[int, list[float]] = {n: [] for n in range(2, 7)}

        async def count(n: int) -> list[str]:
            def on_step(progress: float, total: float | None, message: str | None) -> None:
                streams[n].append(progress)

            return texts(await client.call_tool("slow_count", {"steps": n}, on_progress=on_step))

        results = await asyncio.gather(*(count(n) for n in streams))
        assert results == [[f"counted {n}"] for n in streams]
        assert streams == {n: list(range(1, n + 1)) for n in streams}


@pytest.mark.parametrize("mode", BASTION_ERA_MODES)
async def test_sdk_peer_elicitation_and_sampling(
    mode: str, sdk_peer_argv: list[str], recorder: Recorder
):
    """Legacy: the server sends elicitation/create and sampling/createMessage mid-call.
    Modern: the server answers input_required and bastion's client retries (MRTR)."""
    actions = iter(["accept", "decline"])

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("elicitation", params))
        action = next(actions, "accept")
        if action == "accept":
            return {"action": "accept",
                    "content": {"username": "ann", "email": "ann@example.com"}}
        return {"action": action}

    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("sampling", params))
        return {
            "role": "assistant",
            "content": {"type": "text", "text": "Paris"},
            "model": "test-model",
            "stopReason": "endTurn",
        }

    handlers = ClientHandlers(sampling=sampling, elicitation=elicitation)
    async with connect_stdio(sdk_peer_argv, mode=mode, handlers=handlers) as client:
        accepted = await client.call_tool("whoami", {})
        assert accepted["isError"] is False
        assert texts(accepted) == ["accept:ann:ann@example.com"]

        declined = await client.call_tool("whoami", {})
        assert texts(declined) == ["decline"]

        [first, second] = recorder.of("elicitation")
        assert first == second
        assert first["message"] == "Who are you?"
        assert first.get("mode", "form") == "form"
        schema = first["requestedSchema"]
        assert schema["type"] == "object"
        assert set(schema["properties"]) == {"username", "email"}
        assert sorted(schema["required"]) == ["email", "username"]

        answered = await client.call_tool("ask", {"question": "Capital of France?"})
        assert answered["isError"] is False
        assert texts(answered) == ["LLM said: Paris"]
        [request] = recorder.of("sampling")
        assert request["maxTokens"] == 100
        assert request["messages"] == [
            {"role": "user", "content": {"type": "text", "text": "Capital of France?"}}
        ]

        # How the input travelled: a raw tools/call (no MRTR driver) shows the era's mechanism.
        raw = await client.request("tools/call", {"name": "whoami", "arguments": {}})
        if mode == "modern":
            assert raw["resultType"] == "input_required"
            [input_request] = raw["inputRequests"].values()
            assert input_request["method"] == "elicitation/create"
            assert input_request["params"]["message"] == "Who are you?"
            assert len(recorder.of("elicitation")) == 2  # the handler was not asked again
        else:
            # legacy: the server asked mid-call and the handler answered the request itself
            assert texts(raw) == ["accept:ann:ann@example.com"]
            assert len(recorder.of("elicitation")) == 3


@pytest.mark.parametrize("mode", BASTION_ERA_MODES)
async def test_sdk_peer_roots_and_logging(mode: str, sdk_peer_argv: list[str]):
    """Roots through ClientHandlers.roots; log messages through on_notification.

    Legacy: the SDK server logs at every level by default (it has no logging/setLevel).
    Modern: only with the per-request logLevel opt-in, and only at or above that level."""
    logs: list[dict[str, Any]] = []

    async def roots() -> list[dict[str, Any]]:
        return [{"uri": "file:///srv/one", "name": "one"}, {"uri": "file:///srv/two"}]

    async def on_notification(notification: Notification) -> None:
        if notification.method == "notifications/message":
            logs.append(notification.params or {})

    handlers = ClientHandlers(roots=roots, on_notification=on_notification)
    log_level = "warning" if mode == "modern" else None
    async with connect_stdio(
        sdk_peer_argv, mode=mode, handlers=handlers, log_level=log_level
    ) as client:
        listed = await client.call_tool("client_roots", {})
        assert texts(listed) == ["file:///srv/one,file:///srv/two"]

        chatted = await client.call_tool("chatty", {})
        assert texts(chatted) == ["chatted"]
        expected = [{"level": "info", "data": "hello from chatty"}] if mode == "legacy" else []
        expected.append({"level": "warning", "data": "careful"})
        await wait_for(lambda: len(logs) >= len(expected))
        # The server sends its logs before the result, so nothing more may follow.
        await client.call_tool("echo", {"text": "flush"})
        assert logs == expected


@pytest.mark.parametrize("mode", BASTION_ERA_MODES)
async def test_sdk_peer_requires_declared_capabilities(mode: str, sdk_peer_argv: list[str]):
    """Without handlers the client declares no sampling/elicitation: the SDK refuses with
    -32021 and names the missing capability, which bastion maps to its own error class."""
    async with connect_stdio(sdk_peer_argv, mode=mode) as client:
        with pytest.raises(MissingRequiredClientCapability) as sampling_error:
            await client.call_tool("ask", {"question": "q"})
        assert sampling_error.value.code == -32021
        assert sampling_error.value.data == {"requiredCapabilities": {"sampling": {}}}

        with pytest.raises(MissingRequiredClientCapability) as elicitation_error:
            await client.call_tool("whoami", {})
        assert elicitation_error.value.data == {
            "requiredCapabilities": {"elicitation": {"form": {}}}
        }
        # The connection is still usable after the errors.
        assert texts(await client.call_tool("echo", {"text": "ok"})) == ["ok"]


@pytest.mark.parametrize("mode", BASTION_ERA_MODES)
async def test_sdk_peer_resources_prompts_completion(mode: str, sdk_peer_argv: list[str]):
    async with connect_stdio(sdk_peer_argv, mode=mode) as client:
        resources = await client.list_resources()
        assert resources == [{
            "uri": "peer://readme", "name": "readme", "description": "A static text",
            "mimeType": "text/plain",
        }]
        templates = await client.list_resource_templates()
        assert [t["uriTemplate"] for t in templates] == ["peer://items/{item_id}"]
        assert templates[0]["mimeType"] == "application/json"

        readme = await client.read_resource("peer://readme")
        assert readme["contents"] == [
            {"uri": "peer://readme", "mimeType": "text/plain", "text": "peer readme"}
        ]
        item = await client.read_resource("peer://items/7")
        [content] = item["contents"]
        assert content["uri"] == "peer://items/7"
        assert content["mimeType"] == "application/json"
        assert json.loads(content["text"]) == {"id": "7"}

        with pytest.raises(InvalidParams) as missing:
            await client.read_resource("peer://nope")
        assert missing.value.code == -32602
        assert missing.value.data == {"uri": "peer://nope"}

        prompts = await client.list_prompts()
        assert [p["name"] for p in prompts] == ["greet"]
        assert prompts[0]["arguments"] == [{"name": "name", "required": True}]
        prompt = await client.get_prompt("greet", {"name": "Zoe"})
        assert prompt["messages"] == [
            {"role": "user", "content": {"type": "text", "text": "Hello, Zoe!"}}
        ]
        # The SDK's error code for an unknown prompt differs by era (0 legacy, -32603 modern);
        # either way it is a JSON-RPC error.
        with pytest.raises(MCPError):
            await client.get_prompt("no_such_prompt")

        completion = await client.complete(
            {"type": "ref/prompt", "name": "greet"}, {"name": "name", "value": "al"}
        )
        assert completion["values"] == ["alice", "alfred"]

        if mode == "modern":
            assert item["resultType"] == "complete"
            assert isinstance(item["ttlMs"], int)
            assert client.protocol_version == MODERN_VERSION
        else:
            assert "resultType" not in item
            assert client.protocol_version == LEGACY_VERSION


# -- size limits -------------------------------------------------------------------------


async def test_oversized_response_fails_the_call_promptly(sdk_peer_argv: list[str]):
    # ~2.2 MB of text comes back twice (content text + structuredContent): a ~4.4 MB frame.
    # The request itself (~2.2 MB) is under the limit, so only the response is oversized.
    text = "x" * 2_200_000
    async with connect_stdio(sdk_peer_argv, mode="legacy", request_timeout=30.0) as client:
        started = time.monotonic()
        with pytest.raises(MessageTooLarge, match=r"response to tools/call was dropped"):
            await client.call_tool("echo", {"text": text})
        assert time.monotonic() - started < 10  # failed at once, not at the timeout
        # ...and the connection stays usable.
        assert texts(await client.call_tool("echo", {"text": "ok"})) == ["ok"]
