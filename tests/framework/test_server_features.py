"""Server framework features in both eras, over a real socket pair, every frame schema-checked."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest

from bastion.client import ClientHandlers
from bastion.protocol.errors import MCPError
from bastion.server import Context, PromptArgument, Server, ToolError
from bastion.server.schemas import SchemaInferenceError, infer_input_schema
from tests.framework.conftest import connect


def build() -> Server:
    server = Server("features", "1.2.3", instructions="Test server.", page_size=2)

    @server.tool(annotations={"readOnlyHint": True})
    async def add(a: int, b: int = 2) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool(output_schema={"type": "object", "properties": {"n": {"type": "integer"}},
                                "required": ["n"]})
    async def count(text: str) -> dict[str, int]:
        """Count characters."""
        return {"n": len(text)}

    @server.tool()
    async def fail_softly() -> str:
        """Fail as a tool."""
        raise ToolError("the disk is full")

    @server.tool()
    async def crash() -> str:
        """Fail with a bug."""
        raise RuntimeError("boom")

    @server.tool()
    async def slow(ctx: Context, steps: int = 3) -> str:
        """Report progress."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await asyncio.sleep(0.01)
        return "done"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Log at two levels."""
        await ctx.log("info", "an info line")
        await ctx.log("error", "an error line")
        return "logged"

    @server.tool()
    async def wizard(ctx: Context) -> str:
        """Two questions, one after the other, plus state."""
        first = await ctx.elicit("Name?", {"type": "object",
                                           "properties": {"name": {"type": "string"}}},
                                 key="name")
        ctx.state["asked"] = ctx.state.get("asked", 0) + 1
        second = await ctx.elicit("Colour?", {"type": "object",
                                              "properties": {"colour": {"type": "string"}}},
                                  key="colour")
        return f"{first['content']['name']} likes {second['content']['colour']}"

    @server.tool()
    async def needs_sampling(ctx: Context) -> str:
        """Needs the sampling capability."""
        reply = await ctx.sample([{"role": "user", "content": {"type": "text", "text": "hi"}}],
                                 max_tokens=10)
        return reply["content"]["text"]

    @server.tool()
    async def both_at_once(ctx: Context) -> str:
        """Ask for roots and sampling in one round."""
        answers = await ctx.gather({
            "roots": {"method": "roots/list"},
            "llm": {"method": "sampling/createMessage", "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}],
                "maxTokens": 5}},
        })
        said = answers["llm"]["content"]["text"]
        return f"{len(answers['roots']['roots'])} roots, model said {said}"

    @server.resource("mem://greeting", mime_type="text/plain")
    async def greeting() -> str:
        """A greeting."""
        return "hello"

    @server.resource("mem://bytes", mime_type="application/octet-stream")
    async def raw() -> bytes:
        """Some bytes."""
        return b"\x00\x01"

    @server.resource_template("mem://users/{user}/profile", mime_type="application/json")
    async def profile(user: str) -> str:
        """A user profile."""
        return f'{{"user": "{user}"}}'

    @server.prompt(arguments=[PromptArgument("topic", required=True)])
    async def essay(topic: str) -> str:
        """Write an essay."""
        return f"Write about {topic}"

    @server.completion
    async def complete(ref: dict[str, Any], argument: dict[str, Any],
                       context: dict[str, Any]) -> list[str]:
        return [v for v in ("apples", "apricots", "bananas") if v.startswith(argument["value"])]

    return server


async def elicit(params: dict[str, Any]) -> dict[str, Any]:
    field = next(iter(params["requestedSchema"]["properties"]))
    return {"action": "accept", "content": {field: {"name": "Ada", "colour": "green"}[field]}}


async def sample(params: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "model": "m", "content": {"type": "text", "text": "ok"}}


async def roots() -> list[dict[str, Any]]:
    return [{"uri": "file:///data", "name": "data"}]


HANDLERS = ClientHandlers(elicitation=elicit, sampling=sample, roots=roots)


async def test_era_and_server_description(era):
    async with connect(build(), mode=era) as client:
        assert client.era.value == era
        assert client.server.server_info["name"] == "features"
        assert client.server.instructions == "Test server."
        assert "tools" in client.server.capabilities
        assert client.protocol_version == ("2025-11-25" if era == "legacy" else "2026-07-28")


async def test_lists_follow_every_page(era):
    async with connect(build(), mode=era) as client:
        tools = await client.list_tools()
        assert [t["name"] for t in tools][:3] == ["add", "count", "fail_softly"]
        assert len(tools) == 9  # page_size is 2, so five pages
        add = tools[0]
        assert add["inputSchema"]["required"] == ["a"]
        assert add["inputSchema"]["properties"]["b"] == {"type": "integer", "default": 2}
        assert add["annotations"] == {"readOnlyHint": True}
        assert [r["uri"] for r in await client.list_resources()] == ["mem://greeting",
                                                                    "mem://bytes"]
        templates = await client.list_resource_templates()
        assert templates[0]["uriTemplate"] == "mem://users/{user}/profile"
        assert [p["name"] for p in await client.list_prompts()] == ["essay"]


async def test_caching_hints_only_in_the_modern_era(era):
    async with connect(build(), mode=era) as client:
        result = await client.request("tools/list")
        if era == "modern":
            assert result["ttlMs"] == 0 and result["cacheScope"] == "public"
            assert result["resultType"] == "complete"
            assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "features"
        else:
            assert "ttlMs" not in result and "resultType" not in result


async def test_bad_cursor_is_invalid_params(era):
    async with connect(build(), mode=era) as client:
        with pytest.raises(MCPError) as caught:
            await client.request("tools/list", {"cursor": "not-a-cursor"})
        assert caught.value.code == -32602


async def test_tool_results_and_tool_errors(era):
    async with connect(build(), mode=era) as client:
        assert (await client.call_tool("add", {"a": 40}))["content"][0]["text"] == "42"
        counted = await client.call_tool("count", {"text": "four"})
        assert counted["structuredContent"] == {"n": 4}
        assert counted["content"][0]["text"] == '{"n":4}'
        soft = await client.call_tool("fail_softly")
        assert soft["isError"] is True and soft["content"][0]["text"] == "the disk is full"
        crashed = await client.call_tool("crash")
        assert crashed["isError"] is True and "boom" in crashed["content"][0]["text"]


async def test_invalid_arguments_are_a_tool_error_naming_each_path(era):
    async with connect(build(), mode=era) as client:
        result = await client.call_tool("add", {"a": "forty", "extra": 1})
        assert result["isError"] is True
        assert "/a" in result["content"][0]["text"]


async def test_unknown_tool_and_bad_params_are_protocol_errors(era):
    async with connect(build(), mode=era) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("no_such_tool")
        assert caught.value.code == -32602
        client.wire.expect_invalid()
        with pytest.raises(MCPError) as caught:
            await client.request("tools/call", {"name": "add", "arguments": [1, 2]})
        assert caught.value.code == -32602
        with pytest.raises(MCPError) as caught:
            await client.request("no/such/method")
        assert caught.value.code == -32601


async def test_progress_reaches_the_caller_in_order(era):
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(build(), mode=era) as client:
        result = await client.call_tool("slow", {"steps": 3}, on_progress=on_progress)
        assert result["content"][0]["text"] == "done"
        await asyncio.sleep(0.05)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][1:] == (3, "step 1")


async def test_resources_text_blob_template_and_not_found(era):
    async with connect(build(), mode=era) as client:
        text = await client.read_resource("mem://greeting")
        assert text["contents"] == [{"uri": "mem://greeting", "mimeType": "text/plain",
                                     "text": "hello"}]
        blob = await client.read_resource("mem://bytes")
        assert blob["contents"][0]["blob"] == "AAE="
        profile = await client.read_resource("mem://users/ada/profile")
        assert profile["contents"][0]["text"] == '{"user": "ada"}'
        with pytest.raises(MCPError) as caught:
            await client.read_resource("mem://users/ada/missing")
        expected = -32002 if era == "legacy" else -32602
        assert caught.value.code == expected
        assert caught.value.data == {"uri": "mem://users/ada/missing"}


async def test_prompts_and_completion(era):
    async with connect(build(), mode=era) as client:
        prompt = await client.get_prompt("essay", {"topic": "owls"})
        assert prompt["messages"][0]["content"]["text"] == "Write about owls"
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("essay", {})
        assert caught.value.code == -32602 and "topic" in caught.value.message
        completion = await client.complete({"type": "ref/prompt", "name": "essay"},
                                           {"name": "topic", "value": "ap"})
        assert completion["values"] == ["apples", "apricots"]


async def test_elicitation_over_two_rounds(era):
    async with connect(build(), mode=era, handlers=HANDLERS) as client:
        result = await client.call_tool("wizard")
        assert result["content"][0]["text"] == "Ada likes green"


async def test_gather_asks_for_several_inputs_at_once(era):
    async with connect(build(), mode=era, handlers=HANDLERS) as client:
        result = await client.call_tool("both_at_once")
        assert result["content"][0]["text"] == "1 roots, model said ok"


async def test_modern_rounds_carry_distinct_sealed_states():
    async with connect(build(), mode="modern", handlers=HANDLERS) as client:
        first = await client.request("tools/call", {"name": "wizard"})
        assert first["resultType"] == "input_required"
        assert list(first["inputRequests"]) == ["name"]
        answer = {"name": {"action": "accept", "content": {"name": "Ada"}}}
        second = await client.request("tools/call", {
            "name": "wizard", "inputResponses": answer, "requestState": first["requestState"]})
        assert list(second["inputRequests"]) == ["colour"]
        assert second["requestState"] != first["requestState"]
        # The second round's state carries the first answer: only the new one is needed now.
        final = await client.request("tools/call", {
            "name": "wizard", "requestState": second["requestState"],
            "inputResponses": {"colour": {"action": "accept", "content": {"colour": "red"}}}})
        assert final["content"][0]["text"] == "Ada likes red"


async def test_modern_state_is_bound_and_tamper_evident():
    async with connect(build(), mode="modern", handlers=HANDLERS) as client:
        first = await client.request("tools/call", {"name": "wizard"})
        state = first["requestState"]
        tampered = state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB")
        for params in (
            {"name": "wizard", "requestState": tampered},
            {"name": "add", "arguments": {"a": 1}, "requestState": state},  # another request
            {"name": "wizard", "requestState": 12},
        ):
            if params["requestState"] == 12:
                client.wire.expect_invalid()
            with pytest.raises(MCPError) as caught:
                await client.request("tools/call", params)
            assert caught.value.code == -32602


async def test_missing_or_invalid_answers_are_asked_again():
    async with connect(build(), mode="modern", handlers=HANDLERS) as client:
        first = await client.request("tools/call", {"name": "wizard"})
        client.wire.expect_invalid()
        again = await client.request("tools/call", {
            "name": "wizard", "requestState": first["requestState"],
            "inputResponses": {"name": {"action": "maybe"}, "unrelated": {"x": 1}}})
        assert again["resultType"] == "input_required"
        assert list(again["inputRequests"]) == ["name"]


async def test_undeclared_capability(era):
    async with connect(build(), mode=era) as client:  # no handlers: no sampling capability
        if era == "modern":
            with pytest.raises(MCPError) as caught:
                await client.call_tool("needs_sampling")
            assert caught.value.code == -32021
            assert caught.value.data == {"requiredCapabilities": {"sampling": {}}}
        else:
            result = await client.call_tool("needs_sampling")
            assert result["isError"] is True and "sampling" in result["content"][0]["text"]


async def test_modern_logging_only_when_asked():
    for level, expected in ((None, []), ("info", ["an info line", "an error line"]),
                            ("error", ["an error line"])):
        received: list[str] = []

        async def on_notification(notification: Any, received: list[str] = received) -> None:
            if notification.method == "notifications/message":
                received.append(notification.params["data"])

        handlers = ClientHandlers(on_notification=on_notification)
        async with connect(build(), mode="modern", handlers=handlers, log_level=level) as client:
            await client.call_tool("chatty")
            await asyncio.sleep(0.05)
        assert received == expected, level


async def test_legacy_logging_follows_set_level():
    received: list[str] = []

    async def on_notification(notification: Any) -> None:
        if notification.method == "notifications/message":
            received.append(notification.params["data"])

    handlers = ClientHandlers(on_notification=on_notification)
    async with connect(build(), mode="legacy", handlers=handlers) as client:
        await client.call_tool("chatty")
        await asyncio.sleep(0.05)
        assert received == ["an info line", "an error line"]
        await client.set_logging_level("error")
        await client.call_tool("chatty")
        await asyncio.sleep(0.05)
    assert received[2:] == ["an error line"]


async def test_legacy_list_changed_and_resource_updates():
    server = build()
    received: list[Any] = []

    async def on_notification(notification: Any) -> None:
        received.append((notification.method, notification.params))

    async with connect(server, mode="legacy",
                       handlers=ClientHandlers(on_notification=on_notification)) as client:
        await client.subscribe_resource("mem://greeting")
        await server.notify_list_changed("tools")
        await server.notify_resource_updated("mem://greeting")
        await server.notify_resource_updated("mem://other")
        await client.unsubscribe_resource("mem://greeting")
        await server.notify_resource_updated("mem://greeting")
        await asyncio.sleep(0.05)
    assert received == [("notifications/tools/list_changed", None),
                        ("notifications/resources/updated", {"uri": "mem://greeting"})]


async def test_modern_listen_stream():
    server = build()
    received: list[Any] = []

    async def on_notification(notification: Any) -> None:
        received.append((notification.method, notification.params))

    async with connect(server, mode="modern",
                       handlers=ClientHandlers(on_notification=on_notification)) as client:
        listen = asyncio.create_task(client.request("subscriptions/listen", {"notifications": {
            "toolsListChanged": True, "resourceSubscriptions": ["mem://greeting"]}}))
        await asyncio.sleep(0.05)
        await server.notify_list_changed("prompts")  # not requested: not sent
        await server.notify_list_changed("tools")
        await server.notify_resource_updated("mem://greeting")
        await asyncio.sleep(0.05)
        server.subscribers.close_listeners()
        ended = await asyncio.wait_for(listen, 2)
    sub_id = ended["_meta"]["io.modelcontextprotocol/subscriptionId"]
    methods = [m for m, _ in received]
    assert methods == ["notifications/subscriptions/acknowledged",
                       "notifications/tools/list_changed", "notifications/resources/updated"]
    assert received[0][1]["notifications"] == {"toolsListChanged": True,
                                               "resourceSubscriptions": ["mem://greeting"]}
    assert all(p["_meta"]["io.modelcontextprotocol/subscriptionId"] == sub_id
               for _, p in received)


def test_schema_inference():
    async def handler(name: str, tags: list[str], mode: Literal["a", "b"] = "a",
                      limit: int | None = None, ctx: Context | None = None) -> str:
        return ""

    schema = infer_input_schema(handler, {"ctx"})
    assert schema == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["a", "b"], "default": "a"},
            "limit": {"type": "integer"},
        },
        "required": ["name", "tags"],
    }

    async def bad(value: object) -> str:
        return ""

    with pytest.raises(SchemaInferenceError):
        infer_input_schema(bad, set())


def test_registration_errors():
    server = Server("x")

    @server.tool()
    async def once() -> str:
        return ""

    with pytest.raises(ValueError, match="already registered"):
        server.tool(name="once")(once)
    with pytest.raises(TypeError, match="async"):
        server.tool()(lambda: None)  # type: ignore[arg-type]
