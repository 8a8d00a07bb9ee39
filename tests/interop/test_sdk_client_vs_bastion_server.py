"""The official SDK `Client` (mcp 2.3.0) against bastion's conformance fixture server.

`python -m bastion.testing.everything` is started over stdio for each test. Every test runs
with the SDK in `legacy` (initialize handshake, 2025-11-25), pinned `2026-07-28` (modern, no
probe) and `auto` (server/discover probe, which a dual-era server answers: 2026-07-28).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters

from tests.interop.conftest import (
    MODERN_VERSION,
    SDK_MODES,
    Recorder,
    requires_everything,
)

pytestmark = [
    requires_everything,
    pytest.mark.timeout(30),
    # ping and logging/setLevel are deprecated (legacy-only) in the SDK; we use them on purpose.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture(params=list(SDK_MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """The SDK Client's `mode=`: every test taking it runs in all three."""
    return request.param


SERVER_NAME = "bastion-everything"

#: The tools of the fixture contract (conformance.md §7.1), by exact name.
CONTRACT_TOOLS = {
    "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
    "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress",
    "test_error_handling", "test_sampling", "test_elicitation",
    "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums",
    "test_logging_tool", "test_missing_capability", "test_streaming_elicitation",
    "test_trigger_tool_change", "test_trigger_prompt_change",
    "test_input_required_result_elicitation", "test_input_required_result_sampling",
    "test_input_required_result_list_roots", "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs", "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state", "test_input_required_result_capabilities",
    "test_reconnection", "json_schema_2020_12_tool", "test_tool_with_task",
}
CONTRACT_PROMPTS = {
    "test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource",
    "test_prompt_with_image", "test_input_required_result_prompt",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MISSING_URI = "test://nonexistent-resource-for-conformance-testing"


def server_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "bastion.testing.everything"])


def is_modern(mode: str) -> bool:
    return SDK_MODES[mode] == MODERN_VERSION


def text_of(result: types.CallToolResult | types.GetPromptResult) -> list[str]:
    blocks = result.content if isinstance(result, types.CallToolResult) else [
        message.content for message in result.messages
    ]
    return [block.text for block in blocks if isinstance(block, types.TextContent)]


# -- SDK-side callbacks -----------------------------------------------------------------------


def make_callbacks(recorder: Recorder) -> dict[str, Any]:
    async def sampling(
        context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        recorder.calls.append(("sampling", params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="Paris"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        recorder.calls.append(("elicitation", params))
        properties = set(params.requested_schema["properties"])
        if properties == {"username", "email"}:
            content: dict[str, Any] = {"username": "ann", "email": "ann@example.com"}
        elif properties == {"name"}:
            content = {"name": "Ann"}
        else:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=content)

    async def roots(context: Any) -> types.ListRootsResult:
        recorder.calls.append(("roots", None))
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/interop", name="tmp")])

    return {
        "sampling_callback": sampling,
        "elicitation_callback": elicitation,
        "list_roots_callback": roots,
    }


# -- era negotiation ---------------------------------------------------------------------------


async def test_negotiated_version(mode: str):
    async with Client(server_params(), mode=mode) as client:
        assert client.protocol_version == SDK_MODES[mode]
        if mode == MODERN_VERSION:
            # A pinned version skips server/discover: the SDK synthesizes the discovery.
            assert client.server_info is None
        else:
            assert client.server_info is not None
            assert client.server_info.name == SERVER_NAME
            caps = client.server_capabilities
            assert caps.tools is not None
            assert caps.resources is not None
            assert caps.prompts is not None
            assert caps.completions is not None
        if mode == "legacy":
            await client.send_ping()
        # The first request in the negotiated era succeeds.
        result = await client.call_tool("test_simple_text")
        assert text_of(result) == ["This is a simple text response for testing."]
        assert (result.meta or {}).get("io.modelcontextprotocol/serverInfo", {}).get("name") == (
            SERVER_NAME if is_modern(mode) else None
        )


# -- tools ---------------------------------------------------------------------------------------


async def test_tools_list_and_content(mode: str):
    async with Client(server_params(), mode=mode) as client:
        listing = await client.list_tools()
        names = [tool.name for tool in listing.tools]
        assert set(names) >= CONTRACT_TOOLS, CONTRACT_TOOLS - set(names)
        assert len(names) == len(set(names))
        for tool in listing.tools:
            assert re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", tool.name)
            assert tool.description
            assert tool.input_schema["type"] == "object"

        simple = await client.call_tool("test_simple_text")
        assert simple.is_error is False
        assert text_of(simple) == ["This is a simple text response for testing."]

        image = await client.call_tool("test_image_content")
        [block] = image.content
        assert isinstance(block, types.ImageContent)
        assert block.mime_type == "image/png"
        assert base64.b64decode(block.data).startswith(PNG_SIGNATURE)

        audio = await client.call_tool("test_audio_content")
        [block] = audio.content
        assert isinstance(block, types.AudioContent)
        assert block.mime_type == "audio/wav"
        assert base64.b64decode(block.data)[:4] == b"RIFF"

        embedded = await client.call_tool("test_embedded_resource")
        [block] = embedded.content
        assert isinstance(block, types.EmbeddedResource)
        assert str(block.resource.uri) == "test://embedded-resource"
        assert block.resource.mime_type == "text/plain"
        assert block.resource.text == "This is an embedded resource content."

        mixed = await client.call_tool("test_multiple_content_types")
        assert [b.type for b in mixed.content] == ["text", "image", "resource"]
        assert mixed.content[0].text == "Multiple content types test:"
        assert str(mixed.content[2].resource.uri) == "test://mixed-content-resource"
        assert mixed.content[2].resource.mime_type == "application/json"

        failed = await client.call_tool("test_error_handling")
        assert failed.is_error is True
        assert text_of(failed)  # one text block explains the failure

        # An unknown tool is a protocol error (-32602), not a tool result.
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool")
        assert unknown.value.code == types.INVALID_PARAMS


async def test_tool_progress(mode: str):
    """Progress 0/50/100 of 100 reaches each call's own callback, also with calls in flight
    concurrently (each request has its own progress token)."""
    updates: dict[int, list[tuple[float, float | None]]] = {i: [] for i in range(5)}

    async with Client(server_params(), mode=mode) as client:

        async def call(index: int) -> None:
            async def on_progress(progress: float, total: float | None, message: str | None):
                updates[index].append((progress, total))

            result = await client.call_tool(
                "test_tool_with_progress", progress_callback=on_progress
            )
            assert result.is_error is False

        await call(0)
        assert updates[0] == [(0, 100), (50, 100), (100, 100)]
        async with anyio.create_task_group() as group:
            for index in range(1, 5):
                group.start_soon(call, index)
        for index in range(1, 5):
            assert updates[index] == [(0, 100), (50, 100), (100, 100)]


async def test_tool_logging(mode: str):
    """Legacy: logging/setLevel turns logs on. Modern: the per-request logLevel opt-in."""
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    log_level = "info" if is_modern(mode) else None
    async with Client(
        server_params(), mode=mode, logging_callback=on_log, log_level=log_level
    ) as client:
        if not is_modern(mode):
            await client.set_logging_level("info")
        result = await client.call_tool("test_tool_with_logging")
        assert result.is_error is False
        # Three info messages: started, processing, completed.
        assert [log.level for log in logs] == ["info", "info", "info"]
        assert "start" in str(logs[0].data).lower()
        assert "complet" in str(logs[2].data).lower()
    if is_modern(mode):
        # Without the opt-in a modern server sends no log messages at all.
        logs.clear()
        async with Client(server_params(), mode=mode, logging_callback=on_log) as client:
            await client.call_tool("test_tool_with_logging")
        assert logs == []


# -- sampling and elicitation (legacy: server requests; modern: input_required) ---------------


async def test_sampling_and_elicitation(mode: str, recorder: Recorder):
    async with Client(server_params(), mode=mode, **make_callbacks(recorder)) as client:
        sampled = await client.call_tool("test_sampling", {"prompt": "Capital of France?"})
        assert sampled.is_error is False
        assert text_of(sampled) == ["LLM response: Paris"]
        [request] = recorder.of("sampling")
        assert request.max_tokens == 100
        assert [m.content.text for m in request.messages] == ["Capital of France?"]

        elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
        assert elicited.is_error is False
        # The contract: the text reports the action and the content the client returned.
        [answer] = text_of(elicited)
        assert "accept" in answer
        assert "ann@example.com" in answer
        [question] = recorder.of("elicitation")
        assert question.message == "Who are you?"
        assert question.mode == "form"
        assert sorted(question.requested_schema["required"]) == ["email", "username"]

        # The MRTR-shaped fixture works in both eras through the same callback.
        greeted = await client.call_tool("test_input_required_result_elicitation")
        assert text_of(greeted) == ["Hello, Ann!"]

        everything = await client.call_tool("test_input_required_result_multiple_inputs")
        assert everything.is_error is False
        [combined] = text_of(everything)
        for answer in ("Paris", "Ann", "file:///tmp/interop"):  # sampling, elicitation, roots
            assert answer in combined


async def test_input_requests_travel_in_the_negotiated_era(mode: str, recorder: Recorder):
    """Check *how* the SDK got its answers: legacy, the server asks mid-call (the callback runs
    inside the first tools/call); modern, the first tools/call returns input_required."""
    async with Client(server_params(), mode=mode, **make_callbacks(recorder)) as client:
        first = await client.session.call_tool(
            "test_elicitation", {"message": "Who are you?"}, allow_input_required=True
        )
        if is_modern(mode):
            assert isinstance(first, types.InputRequiredResult)
            assert first.result_type == "input_required"
            [request] = first.input_requests.values()
            assert request.method == "elicitation/create"
            assert request.params.message == "Who are you?"
            assert recorder.calls == []  # nothing was asked outside the MRTR result
        else:
            assert isinstance(first, types.CallToolResult)
            assert "ann@example.com" in text_of(first)[0]
            assert len(recorder.of("elicitation")) == 1


async def test_request_state_is_integrity_protected(mode: str):
    """Modern: a requestState altered by the client is rejected with -32602 (tampered-state);
    the untouched state completes. Legacy has no requestState: the call just completes."""
    confirm = types.ElicitResult(action="accept", content={"ok": True})
    tool = "test_input_required_result_tampered_state"

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return confirm

    async with Client(server_params(), mode=mode, elicitation_callback=elicitation) as client:
        first = await client.session.call_tool(tool, allow_input_required=True)
        if not is_modern(mode):
            assert isinstance(first, types.CallToolResult)
            assert first.is_error is False
            return
        assert isinstance(first, types.InputRequiredResult)
        assert set(first.input_requests) == {"confirm"}
        state = first.request_state
        assert state
        tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
        with pytest.raises(MCPError) as rejected:
            await client.session.call_tool(
                tool, allow_input_required=True,
                input_responses={"confirm": confirm}, request_state=tampered,
            )
        assert rejected.value.code == types.INVALID_PARAMS
        done = await client.session.call_tool(
            tool, allow_input_required=True,
            input_responses={"confirm": confirm}, request_state=state,
        )
        assert isinstance(done, types.CallToolResult)
        assert done.is_error is False


async def test_change_notifications(mode: str):
    """Legacy: notifications/tools/list_changed on the session, and resources/subscribe.
    Modern: a subscriptions/listen stream gets ToolsListChanged."""
    if is_modern(mode):
        async with (
            Client(server_params(), mode=mode) as client,
            client.listen(tools_list_changed=True) as subscription,
        ):
            assert subscription.honored.tools_list_changed is True
            await client.call_tool("test_trigger_tool_change")
            with anyio.fail_after(5):
                event = await anext(aiter(subscription))
            assert type(event).__name__ == "ToolsListChanged"
        return

    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with Client(server_params(), mode=mode, message_handler=on_message) as client:
        assert client.server_capabilities.resources.subscribe is True
        await client.subscribe_resource("test://watched-resource")
        await client.unsubscribe_resource("test://watched-resource")
        result = await client.call_tool("test_trigger_tool_change")
        assert result.is_error is False
        with anyio.fail_after(5):
            await changed.wait()


async def test_missing_client_capabilities(mode: str):
    """Without callbacks the SDK declares neither sampling nor elicitation."""
    async with Client(server_params(), mode=mode) as client:
        if is_modern(mode):
            with pytest.raises(MCPError) as error:
                await client.call_tool("test_sampling", {"prompt": "hi"})
            assert error.value.code == -32021
            assert error.value.data == {"requiredCapabilities": {"sampling": {}}}
            with pytest.raises(MCPError) as error:
                await client.call_tool("test_elicitation", {"message": "hi"})
            assert error.value.code == -32021
            assert error.value.data == {"requiredCapabilities": {"elicitation": {"form": {}}}}
        else:
            # Legacy: the fixture reports the missing capability as a tool error.
            sampled = await client.call_tool("test_sampling", {"prompt": "hi"})
            assert sampled.is_error is True
            assert "sampling" in text_of(sampled)[0].lower()
            elicited = await client.call_tool("test_elicitation", {"message": "hi"})
            assert elicited.is_error is True
            assert "elicitation" in text_of(elicited)[0].lower()


# -- resources, prompts, completion -----------------------------------------------------------


async def test_resources(mode: str):
    async with Client(server_params(), mode=mode) as client:
        listing = await client.list_resources()
        uris = {str(resource.uri) for resource in listing.resources}
        assert {"test://static-text", "test://static-binary", "test://watched-resource"} <= uris
        assert not any("{" in uri for uri in uris)  # templates are not direct resources
        for resource in listing.resources:
            assert resource.name
            assert resource.description

        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == [
            "test://template/{id}/data"
        ]

        text = await client.read_resource("test://static-text")
        [content] = text.contents
        assert isinstance(content, types.TextResourceContents)
        assert content.mime_type == "text/plain"
        assert content.text == "This is the content of the static text resource."

        binary = await client.read_resource("test://static-binary")
        [content] = binary.contents
        assert isinstance(content, types.BlobResourceContents)
        assert content.mime_type == "image/png"
        assert base64.b64decode(content.blob).startswith(PNG_SIGNATURE)

        templated = await client.read_resource("test://template/123/data")
        [content] = templated.contents
        assert str(content.uri) == "test://template/123/data"
        assert content.mime_type == "application/json"
        assert json.loads(content.text) == {
            "id": "123", "templateTest": True, "data": "Data for ID: 123",
        }

        # Unknown resource: -32602 with data.uri in modern, -32002 in legacy.
        with pytest.raises(MCPError) as missing:
            await client.read_resource(MISSING_URI)
        assert missing.value.code == (-32602 if is_modern(mode) else -32002)
        assert missing.value.data == {"uri": MISSING_URI}


async def test_prompts_and_completion(mode: str, recorder: Recorder):
    async with Client(server_params(), mode=mode, **make_callbacks(recorder)) as client:
        listing = await client.list_prompts()
        prompts = {prompt.name: prompt for prompt in listing.prompts}
        assert set(prompts) >= CONTRACT_PROMPTS
        assert [(a.name, a.required) for a in prompts["test_prompt_with_arguments"].arguments] == [
            ("arg1", True), ("arg2", True),
        ]

        simple = await client.get_prompt("test_simple_prompt")
        [message] = simple.messages
        assert message.role == "user"
        assert isinstance(message.content, types.TextContent)

        with_args = await client.get_prompt(
            "test_prompt_with_arguments", {"arg1": "alpha", "arg2": "beta"}
        )
        assert text_of(with_args) == ["Prompt with arguments: arg1='alpha', arg2='beta'"]

        embedded = await client.get_prompt(
            "test_prompt_with_embedded_resource", {"resourceUri": "test://example-resource"}
        )
        first, second = embedded.messages
        assert isinstance(first.content, types.EmbeddedResource)
        assert str(first.content.resource.uri) == "test://example-resource"
        assert first.content.resource.mime_type == "text/plain"
        assert isinstance(second.content, types.TextContent)

        with_image = await client.get_prompt("test_prompt_with_image")
        first, second = with_image.messages
        assert isinstance(first.content, types.ImageContent)
        assert first.content.mime_type == "image/png"
        assert isinstance(second.content, types.TextContent)

        # prompts/get that needs input: legacy elicits mid-request, modern via input_required.
        asked = await client.get_prompt("test_input_required_result_prompt")
        assert len(asked.messages) == 1
        assert len(recorder.of("elicitation")) == 1

        completion = await client.complete(
            types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
            {"name": "arg1", "value": "pa"},
        )
        assert completion.completion.values
        assert all(value.startswith("pa") for value in completion.completion.values)
        assert "paris" in completion.completion.values


# -- known bastion bugs ---------------------------------------------------------------------------


async def test_server_exits_promptly_with_a_listen_stream_open():
    async with Client(server_params(), mode=MODERN_VERSION) as client:
        async with client.listen(tools_list_changed=True) as subscription:
            assert subscription.honored.tools_list_changed is True
        # The SDK leaves the listen request open on the wire (it sends no cancellation).
        closing = time.monotonic()
    # The SDK closes the server's stdin, then waits 2 s before SIGTERM.
    seconds_to_close = time.monotonic() - closing
    assert seconds_to_close < 1.5
