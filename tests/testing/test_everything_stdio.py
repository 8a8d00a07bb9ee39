"""The conformance fixture as a real child process, driven with raw JSON-RPC lines.

`python -m bastion.testing.everything` runs in a subprocess; the tests write requests to its
stdin and read its stdout line by line, in both eras:

- legacy: `initialize` (2025-11-25) and `notifications/initialized`, then requests; the server
  sends `sampling/createMessage`, `elicitation/create` and `roots/list` to us and we answer;
- modern: every request carries `_meta` with the protocol version and client capabilities;
  input needs come back as `input_required` results that we answer round by round.

Every message the server sends is validated against the official schema of the era.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import os
import struct
import sys
import time
import wave
import zlib
from pathlib import Path
from typing import Any

import pytest

from bastion.testing.everything import JSON_SCHEMA_2020_12
from tests.schema_check import validate_def, validate_message

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
REPO = Path(__file__).resolve().parents[2]
READ_TIMEOUT = 10.0

FULL_CAPS: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}}, "roots": {}}
LEGACY_CAPS: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}},
                               "roots": {"listChanged": True}}
CLIENT_INFO = {"name": "raw-test-client", "version": "0.0.1"}

CONTRACT_TOOLS = {
    "test_simple_text", "test_image_content", "test_audio_content", "test_embedded_resource",
    "test_multiple_content_types", "test_tool_with_logging", "test_tool_with_progress",
    "test_error_handling", "test_sampling", "test_elicitation",
    "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums", "test_logging_tool",
    "test_missing_capability", "test_streaming_elicitation", "test_trigger_tool_change",
    "test_trigger_prompt_change", "test_input_required_result_elicitation",
    "test_input_required_result_sampling", "test_input_required_result_list_roots",
    "test_input_required_result_request_state", "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round", "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities", "test_reconnection", "json_schema_2020_12_tool",
    "test_header_tool", "test_tool_with_task",
}
CONTRACT_PROMPTS = {
    "test_simple_prompt", "test_prompt_with_arguments", "test_prompt_with_embedded_resource",
    "test_prompt_with_image", "test_input_required_result_prompt",
}


def elicit_answer(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


def sampling_answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": text},
            "model": "test-model", "stopReason": "endTurn"}


ROOTS_ANSWER = {"roots": [{"uri": "file:///test/root", "name": "Test Root"}]}


class RawPeer:
    """The client end of a raw JSON-RPC line conversation with the fixture process."""

    def __init__(self, process: asyncio.subprocess.Process, version: str) -> None:
        self.process = process
        self.version = version
        self.ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.server_requests: list[dict[str, Any]] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        #: Answers to server-to-client requests (legacy), by method.
        self.answers: dict[str, Any] = {}

    @classmethod
    async def start(cls, version: str, stderr_path: Path) -> RawPeer:
        stderr = stderr_path.open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bastion.testing.everything",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, limit=2**22,
            )
        finally:
            stderr.close()
        return cls(process, version)

    # -- writing ---------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)

    async def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = next(self.ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return request_id

    # -- reading ---------------------------------------------------------------------

    async def read(self, timeout: float = READ_TIMEOUT) -> dict[str, Any]:
        """The next message from the server, schema-checked and sorted into its place."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert line, "the server closed its stdout"
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        message = json.loads(line)
        validate_message(message, self.version)
        if "method" in message and "id" in message:
            assert self.version == LEGACY, f"a modern server sent a request: {message}"
            self.server_requests.append(message)
            await self.answer(message)
        elif "method" in message:
            self.notifications.append(message)
            self.arrivals.append(time.monotonic())
        else:
            self.responses[message["id"]] = message
        return message

    async def answer(self, request: dict[str, Any]) -> None:
        """Answer a server-to-client request (legacy) from `self.answers`."""
        method = request["method"]
        validate_def(request, self.version, {
            "sampling/createMessage": "CreateMessageRequest",
            "elicitation/create": "ElicitRequest",
            "roots/list": "ListRootsRequest",
        }.get(method, "JSONRPCRequest"))
        if method == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"], "result": {}}
        elif method in self.answers:
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": self.answers[method]}
        else:
            reply = {"jsonrpc": "2.0", "id": request["id"],
                     "error": {"code": -32601, "message": f"no answer for {method}"}}
        await self.send(reply)

    async def wait_response(self, request_id: int) -> dict[str, Any]:
        while request_id not in self.responses:
            await self.read()
        return self.responses.pop(request_id)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and return its whole response message (result or error)."""
        return await self.wait_response(await self.send_request(method, params))

    async def result(self, method: str, params: dict[str, Any] | None = None,
                     def_name: str | None = None) -> dict[str, Any]:
        response = await self.request(method, params)
        assert "result" in response, f"{method} failed: {response}"
        if def_name is not None:
            validate_def(response["result"], self.version, def_name)
        return response["result"]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.request(method, params)
        assert "error" in response, f"{method} should have failed: {response}"
        return response["error"]

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything the server sends within `seconds` (expected: nothing)."""
        seen = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(await self.read(timeout=left))
            except TimeoutError:
                break
        return seen

    def take_notifications(self, method: str | None = None) -> list[dict[str, Any]]:
        taken = [n for n in self.notifications if method is None or n["method"] == method]
        self.notifications = [n for n in self.notifications if n not in taken]
        return taken

    async def close(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def legacy(tmp_path: Path):
    peer = await RawPeer.start(LEGACY, tmp_path / "stderr.log")
    try:
        result = await peer.result("initialize", {
            "protocolVersion": LEGACY, "capabilities": LEGACY_CAPS, "clientInfo": CLIENT_INFO,
        }, "InitializeResult")
        assert result["protocolVersion"] == LEGACY
        await peer.notify("notifications/initialized")
        yield peer
    finally:
        await peer.close()


@pytest.fixture
async def modern(tmp_path: Path):
    peer = await RawPeer.start(MODERN, tmp_path / "stderr.log")
    try:
        yield peer
    finally:
        await peer.close()


def meta(capabilities: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities":
            FULL_CAPS if capabilities is None else capabilities,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        **extra,
    }


def call(name: str, arguments: dict[str, Any] | None = None, *,
         capabilities: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Modern tools/call params."""
    return {"_meta": meta(capabilities), "name": name, "arguments": arguments or {}, **extra}


def only_text(result: dict[str, Any]) -> str:
    texts = [block["text"] for block in result["content"] if block["type"] == "text"]
    assert len(texts) == 1, result
    return texts[0]


def assert_png(data_b64: str) -> None:
    raw = base64.b64decode(data_b64, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    chunks = []
    while offset < len(raw):
        (length,) = struct.unpack(">I", raw[offset:offset + 4])
        kind, body = raw[offset + 4:offset + 8], raw[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", raw[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        offset += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">II", chunks[0][1][:8]) == (1, 1)
    zlib.decompress(chunks[1][1])


def assert_wav(data_b64: str) -> None:
    with wave.open(io.BytesIO(base64.b64decode(data_b64, validate=True))) as audio:
        assert audio.getnframes() > 0
        assert audio.readframes(audio.getnframes())


# -- legacy era ---------------------------------------------------------------------------


async def test_legacy_lists_and_simple_calls(legacy: RawPeer):
    tools = (await legacy.result("tools/list", {}, "ListToolsResult"))["tools"]
    by_name = {tool["name"]: tool for tool in tools}
    assert set(by_name) >= CONTRACT_TOOLS
    for tool in tools:
        assert tool["description"] and tool["inputSchema"]["type"] == "object"
    assert by_name["json_schema_2020_12_tool"]["inputSchema"] == JSON_SCHEMA_2020_12
    header = by_name["test_header_tool"]["inputSchema"]["properties"]["region"]
    assert header["x-mcp-header"] == "Region"
    assert by_name["test_tool_with_task"]["execution"] == {"taskSupport": "optional"}

    result = await legacy.result("tools/call", {"name": "test_simple_text", "arguments": {}},
                                 "CallToolResult")
    assert result["content"] == [
        {"type": "text", "text": "This is a simple text response for testing."}]

    result = await legacy.result("tools/call", {"name": "test_image_content"}, "CallToolResult")
    assert result["content"][0]["mimeType"] == "image/png"
    assert_png(result["content"][0]["data"])
    result = await legacy.result("tools/call", {"name": "test_audio_content"}, "CallToolResult")
    assert result["content"][0]["mimeType"] == "audio/wav"
    assert_wav(result["content"][0]["data"])
    result = await legacy.result("tools/call", {"name": "test_multiple_content_types"},
                                 "CallToolResult")
    assert [block["type"] for block in result["content"]] == ["text", "image", "resource"]
    assert result["content"][2]["resource"]["uri"] == "test://mixed-content-resource"
    result = await legacy.result("tools/call", {"name": "test_error_handling"},
                                 "CallToolResult")
    assert result["isError"] is True and only_text(result)

    resources = (await legacy.result("resources/list", {}, "ListResourcesResult"))["resources"]
    uris = {resource["uri"] for resource in resources}
    assert {"test://static-text", "test://static-binary", "test://watched-resource"} <= uris
    assert all(r["name"] and r["description"] for r in resources)
    assert not any("{" in uri for uri in uris)
    templates = (await legacy.result("resources/templates/list", {},
                                     "ListResourceTemplatesResult"))["resourceTemplates"]
    assert [t["uriTemplate"] for t in templates] == ["test://template/{id}/data"]

    result = await legacy.result("resources/read", {"uri": "test://template/123/data"},
                                 "ReadResourceResult")
    (content,) = result["contents"]
    assert content["uri"] == "test://template/123/data"
    assert content["mimeType"] == "application/json"
    assert json.loads(content["text"]) == {
        "id": "123", "templateTest": True, "data": "Data for ID: 123"}
    result = await legacy.result("resources/read", {"uri": "test://static-binary"},
                                 "ReadResourceResult")
    assert result["contents"][0]["mimeType"] == "image/png"
    assert_png(result["contents"][0]["blob"])
    error = await legacy.error("resources/read",
                               {"uri": "test://nonexistent-resource-for-conformance-testing"})
    assert error["data"]["uri"] == "test://nonexistent-resource-for-conformance-testing"
    assert await legacy.result("resources/subscribe", {"uri": "test://watched-resource"}) == {}
    assert await legacy.result("resources/unsubscribe", {"uri": "test://watched-resource"}) == {}

    prompts = (await legacy.result("prompts/list", {}, "ListPromptsResult"))["prompts"]
    assert {prompt["name"] for prompt in prompts} >= CONTRACT_PROMPTS
    result = await legacy.result("prompts/get", {
        "name": "test_prompt_with_arguments", "arguments": {"arg1": "one", "arg2": "two"},
    }, "GetPromptResult")
    assert result["messages"] == [{"role": "user", "content": {
        "type": "text", "text": "Prompt with arguments: arg1='one', arg2='two'"}}]
    result = await legacy.result("prompts/get", {
        "name": "test_prompt_with_embedded_resource",
        "arguments": {"resourceUri": "test://example-resource"},
    }, "GetPromptResult")
    assert result["messages"][0]["content"]["resource"]["uri"] == "test://example-resource"
    assert result["messages"][1]["content"]["type"] == "text"
    error = await legacy.error("prompts/get", {"name": "test_prompt_with_arguments",
                                               "arguments": {"arg1": "one"}})
    assert error["code"] == -32602

    result = await legacy.result("completion/complete", {
        "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
        "argument": {"name": "arg1", "value": "pa"},
    }, "CompleteResult")
    assert result["completion"]["values"] and all(
        value.startswith("pa") for value in result["completion"]["values"])
    assert not legacy.server_requests


async def test_legacy_progress_and_logging(legacy: RawPeer):
    result = await legacy.result("tools/call", {
        "name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p-1"},
    }, "CallToolResult")
    progress = legacy.take_notifications("notifications/progress")
    for notification in progress:
        validate_def(notification, LEGACY, "ProgressNotification")
    assert [(n["params"]["progressToken"], n["params"]["progress"], n["params"]["total"])
            for n in progress] == [("p-1", 0, 100), ("p-1", 50, 100), ("p-1", 100, 100)]
    assert "p-1" in only_text(result)

    assert await legacy.result("logging/setLevel", {"level": "info"}, "EmptyResult") == {}
    started = time.monotonic()
    await legacy.result("tools/call", {"name": "test_tool_with_logging"}, "CallToolResult")
    assert time.monotonic() - started >= 0.09
    logs = legacy.take_notifications("notifications/message")
    for notification in logs:
        validate_def(notification, LEGACY, "LoggingMessageNotification")
    assert [(n["params"]["level"], n["params"]["data"]) for n in logs] == [
        ("info", "Tool execution started"), ("info", "Tool processing data"),
        ("info", "Tool execution completed")]

    await legacy.result("logging/setLevel", {"level": "error"})
    await legacy.result("tools/call", {"name": "test_tool_with_logging"}, "CallToolResult")
    assert legacy.take_notifications("notifications/message") == []


async def test_legacy_sampling_elicitation_and_roots_are_server_requests(legacy: RawPeer):
    legacy.answers = {
        "sampling/createMessage": sampling_answer("Paris"),
        "elicitation/create": elicit_answer(username="alice", email="alice@example.com",
                                            name="Alice"),
        "roots/list": ROOTS_ANSWER,
    }
    result = await legacy.result("tools/call", {"name": "test_sampling",
                                                "arguments": {"prompt": "Capital?"}},
                                 "CallToolResult")
    assert only_text(result) == "LLM response: Paris"
    (request,) = legacy.server_requests
    assert request["params"]["maxTokens"] == 100
    assert request["params"]["messages"][0]["content"]["text"] == "Capital?"

    legacy.server_requests.clear()
    result = await legacy.result("tools/call", {"name": "test_elicitation",
                                                "arguments": {"message": "Who are you?"}},
                                 "CallToolResult")
    assert "action=accept" in only_text(result) and "alice@example.com" in only_text(result)
    (request,) = legacy.server_requests
    schema = request["params"]["requestedSchema"]
    assert set(schema["required"]) == {"username", "email"}

    for tool in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        legacy.server_requests.clear()
        result = await legacy.result("tools/call", {"name": tool}, "CallToolResult")
        assert "action=accept" in only_text(result)
    properties = legacy.server_requests[0]["params"]["requestedSchema"]["properties"]
    assert set(properties) == {"untitledSingle", "titledSingle", "legacyEnum", "untitledMulti",
                               "titledMulti"}

    legacy.server_requests.clear()
    result = await legacy.result("tools/call", {
        "name": "test_input_required_result_multiple_inputs"}, "CallToolResult")
    assert sorted(r["method"] for r in legacy.server_requests) == [
        "elicitation/create", "roots/list", "sampling/createMessage"]
    assert "Alice" in only_text(result) and "file:///test/root" in only_text(result)

    await legacy.result("tools/call", {"name": "test_trigger_tool_change"}, "CallToolResult")
    while not legacy.notifications:
        await legacy.read()
    (changed,) = legacy.take_notifications()
    validate_def(changed, LEGACY, "ToolListChangedNotification")


async def test_legacy_client_without_capabilities_gets_tool_errors(tmp_path: Path):
    peer = await RawPeer.start(LEGACY, tmp_path / "stderr.log")
    try:
        await peer.result("initialize", {"protocolVersion": LEGACY, "capabilities": {},
                                         "clientInfo": CLIENT_INFO}, "InitializeResult")
        await peer.notify("notifications/initialized")
        for name, arguments in (("test_sampling", {"prompt": "hi"}),
                                ("test_elicitation", {"message": "hi"}),
                                ("test_missing_capability", {})):
            result = await peer.result("tools/call", {"name": name, "arguments": arguments},
                                       "CallToolResult")
            assert result["isError"] is True, result
        assert not peer.server_requests
    finally:
        await peer.close()


# -- modern era ---------------------------------------------------------------------------


async def test_modern_discover_lists_and_caching(modern: RawPeer):
    result = await modern.result("server/discover", {"_meta": meta()}, "DiscoverResult")
    assert MODERN in result["supportedVersions"]
    assert {"tools", "resources", "prompts", "completions"} <= set(result["capabilities"])
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "bastion-everything"

    for method, def_name in (("tools/list", "ListToolsResult"),
                             ("prompts/list", "ListPromptsResult"),
                             ("resources/list", "ListResourcesResult"),
                             ("resources/templates/list", "ListResourceTemplatesResult")):
        result = await modern.result(method, {"_meta": meta()}, def_name)
        assert result["resultType"] == "complete"
        assert isinstance(result["ttlMs"], int) and result["ttlMs"] >= 0
        assert result["cacheScope"] in ("public", "private")

    first = await modern.result("tools/list", {"_meta": meta()})
    second = await modern.result("tools/list", {"_meta": meta()})
    assert [t["name"] for t in first["tools"]] == [t["name"] for t in second["tools"]]
    assert {tool["name"] for tool in first["tools"]} >= CONTRACT_TOOLS
    by_name = {tool["name"]: tool for tool in first["tools"]}
    assert by_name["json_schema_2020_12_tool"]["inputSchema"] == JSON_SCHEMA_2020_12

    result = await modern.result("resources/read", {
        "_meta": meta(), "uri": "test://template/7/data"}, "ReadResourceResult")
    assert json.loads(result["contents"][0]["text"])["data"] == "Data for ID: 7"
    assert result["ttlMs"] >= 0 and result["cacheScope"]
    result = await modern.result("resources/read", {"_meta": meta(), "uri": "test://static-text"},
                                 "ReadResourceResult")
    assert result["contents"][0]["text"] == "This is the content of the static text resource."

    result = await modern.result("tools/call", call("test_simple_text"), "CallToolResult")
    assert result["resultType"] == "complete"
    assert only_text(result) == "This is a simple text response for testing."
    result = await modern.result("prompts/get", {"_meta": meta(), "name": "test_simple_prompt"},
                                 "GetPromptResult")
    assert result["messages"][0]["role"] == "user"
    result = await modern.result("completion/complete", {
        "_meta": meta(), "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
        "argument": {"name": "arg1", "value": ""},
    }, "CompleteResult")
    assert result["completion"]["values"]


async def test_modern_errors(modern: RawPeer):
    uri = "test://nonexistent-resource-for-conformance-testing"
    response = await modern.request("resources/read", {"_meta": meta(), "uri": uri})
    validate_def(response["error"], MODERN, "InvalidParamsError")
    assert response["error"]["code"] == -32602 and response["error"]["data"]["uri"] == uri

    for method in ("initialize", "ping", "logging/setLevel", "resources/subscribe",
                   "resources/unsubscribe"):
        params: dict[str, Any] = {"_meta": meta()}
        if method == "initialize":
            params |= {"protocolVersion": MODERN, "capabilities": {}, "clientInfo": CLIENT_INFO}
        response = await modern.request(method, params)
        validate_def(response["error"], MODERN, "MethodNotFoundError")
        assert response["error"]["code"] == -32601, (method, response)

    response = await modern.request("tools/call", call("test_missing_capability",
                                                       capabilities={}))
    validate_def(response, MODERN, "MissingRequiredClientCapabilityError")
    assert response["error"]["code"] == -32021
    assert response["error"]["data"]["requiredCapabilities"] == {"sampling": {}}

    response = await modern.request("tools/call", {"name": "test_simple_text", "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN}})
    assert response["error"]["code"] == -32602
    response = await modern.request("tools/call", {"name": "test_simple_text", "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}}})
    validate_def(response, MODERN, "UnsupportedProtocolVersionError")
    assert not modern.notifications


async def test_modern_progress_and_logging_only_on_request(modern: RawPeer):
    params = call("test_tool_with_progress")
    params["_meta"]["progressToken"] = 42
    await modern.result("tools/call", params, "CallToolResult")
    progress = modern.take_notifications("notifications/progress")
    assert [(n["params"]["progressToken"], n["params"]["progress"]) for n in progress] == [
        (42, 0), (42, 50), (42, 100)]

    await modern.result("tools/call", call("test_logging_tool"), "CallToolResult")
    await modern.result("tools/call", call("test_tool_with_logging"), "CallToolResult")
    assert modern.take_notifications() == []

    params = call("test_tool_with_logging")
    params["_meta"]["io.modelcontextprotocol/logLevel"] = "info"
    await modern.result("tools/call", params, "CallToolResult")
    logs = modern.take_notifications("notifications/message")
    assert [n["params"]["data"] for n in logs] == [
        "Tool execution started", "Tool processing data", "Tool execution completed"]
    assert modern.arrivals[-1] - modern.arrivals[-3] >= 0.05


async def test_modern_mrtr_single_inputs(modern: RawPeer):
    # Elicitation: round 1 asks for user_name, round 2 greets.
    first = await modern.result("tools/call", call("test_input_required_result_elicitation"),
                                "InputRequiredResult")
    assert first["resultType"] == "input_required"
    request = first["inputRequests"]["user_name"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["requestedSchema"]["required"] == ["name"]
    assert isinstance(first["requestState"], str)
    done = await modern.result("tools/call", call(
        "test_input_required_result_elicitation",
        inputResponses={"user_name": elicit_answer(name="Alice")},
        requestState=first["requestState"]), "CallToolResult")
    assert done["resultType"] == "complete" and only_text(done) == "Hello, Alice!"

    # Missing/wrong keys re-ask; extra keys are ignored; malformed answers are not accepted.
    again = await modern.result("tools/call", call(
        "test_input_required_result_elicitation",
        inputResponses={"wrong_key": elicit_answer(data="wrong")}), "InputRequiredResult")
    assert set(again["inputRequests"]) == {"user_name"}
    extra = await modern.result("tools/call", call(
        "test_input_required_result_elicitation",
        inputResponses={"user_name": elicit_answer(name="Bob"),
                        "unknown_extra_key": elicit_answer(foo="bar")}), "CallToolResult")
    assert only_text(extra) == "Hello, Bob!"
    for bad in ({"user_name": 12345}, None, {"user_name": elicit_answer()}):
        response = await modern.request("tools/call", call(
            "test_input_required_result_elicitation", inputResponses=bad))
        assert "error" in response or response["result"]["resultType"] == "input_required"

    # Sampling and roots.
    first = await modern.result("tools/call", call("test_input_required_result_sampling"),
                                "InputRequiredResult")
    request = first["inputRequests"]["capital_question"]
    assert request["method"] == "sampling/createMessage"
    assert request["params"]["maxTokens"] == 100
    done = await modern.result("tools/call", call(
        "test_input_required_result_sampling",
        inputResponses={"capital_question": sampling_answer("Paris")},
        requestState=first["requestState"]), "CallToolResult")
    assert "Paris" in only_text(done)

    first = await modern.result("tools/call", call("test_input_required_result_list_roots"),
                                "InputRequiredResult")
    assert first["inputRequests"]["client_roots"] == {"method": "roots/list", "params": {}}
    done = await modern.result("tools/call", call(
        "test_input_required_result_list_roots", inputResponses={"client_roots": ROOTS_ANSWER},
        requestState=first["requestState"]), "CallToolResult")
    assert "file:///test/root" in only_text(done)

    # MRTR on prompts/get.
    first = await modern.result("prompts/get", {
        "_meta": meta(), "name": "test_input_required_result_prompt"}, "InputRequiredResult")
    assert first["inputRequests"]["user_context"]["method"] == "elicitation/create"
    done = await modern.result("prompts/get", {
        "_meta": meta(), "name": "test_input_required_result_prompt",
        "inputResponses": {"user_context": elicit_answer(context="test context")},
        "requestState": first["requestState"]}, "GetPromptResult")
    assert "test context" in done["messages"][0]["content"]["text"]

    # In modern, elicitation never becomes a request on the stream.
    first = await modern.result("tools/call", call("test_streaming_elicitation"),
                                "InputRequiredResult")
    assert first["inputRequests"]
    assert not modern.server_requests


async def test_modern_mrtr_request_state_and_rounds(modern: RawPeer):
    first = await modern.result("tools/call", call("test_input_required_result_request_state"),
                                "InputRequiredResult")
    assert set(first["inputRequests"]) == {"confirm"} and first["requestState"]
    done = await modern.result("tools/call", call(
        "test_input_required_result_request_state",
        inputResponses={"confirm": elicit_answer(ok=True)},
        requestState=first["requestState"]), "CallToolResult")
    assert "state-ok" in only_text(done)
    stateless = await modern.result("tools/call", call(
        "test_input_required_result_request_state",
        inputResponses={"confirm": elicit_answer(ok=True)}), "InputRequiredResult")
    assert stateless["requestState"]

    # Multiple inputs: all three at once; a partial answer re-asks only for the rest.
    first = await modern.result("tools/call", call("test_input_required_result_multiple_inputs"),
                                "InputRequiredResult")
    assert {key: r["method"] for key, r in first["inputRequests"].items()} == {
        "user_name": "elicitation/create", "greeting": "sampling/createMessage",
        "client_roots": "roots/list"}
    assert first["inputRequests"]["greeting"]["params"]["maxTokens"] == 50
    partial = await modern.result("tools/call", call(
        "test_input_required_result_multiple_inputs",
        inputResponses={"user_name": elicit_answer(name="Alice")},
        requestState=first["requestState"]), "InputRequiredResult")
    assert set(partial["inputRequests"]) == {"greeting", "client_roots"}
    done = await modern.result("tools/call", call(
        "test_input_required_result_multiple_inputs",
        inputResponses={"greeting": sampling_answer("Hello"), "client_roots": ROOTS_ANSWER},
        requestState=partial["requestState"]), "CallToolResult")
    assert only_text(done) == "Hello Alice! Roots: file:///test/root"

    # Multi-round: step1 with state 1, then step2 with a different state 2, then complete.
    r1 = await modern.result("tools/call", call("test_input_required_result_multi_round"),
                             "InputRequiredResult")
    assert set(r1["inputRequests"]) == {"step1"} and r1["requestState"]
    r2 = await modern.result("tools/call", call(
        "test_input_required_result_multi_round",
        inputResponses={"step1": elicit_answer(name="Alice")},
        requestState=r1["requestState"]), "InputRequiredResult")
    assert set(r2["inputRequests"]) == {"step2"}
    assert r2["requestState"] and r2["requestState"] != r1["requestState"]
    r3 = await modern.result("tools/call", call(
        "test_input_required_result_multi_round",
        inputResponses={"step2": elicit_answer(color="blue")},
        requestState=r2["requestState"]), "CallToolResult")
    assert only_text(r3) == "Alice's favorite color is blue."

    # Tampered state, or state replayed on another tool: -32602.
    first = await modern.result("tools/call", call("test_input_required_result_tampered_state"),
                                "InputRequiredResult")
    key = next(iter(first["inputRequests"]))
    for name, state in (("test_input_required_result_tampered_state",
                         first["requestState"] + "-TAMPERED"),
                        ("test_input_required_result_request_state", first["requestState"])):
        response = await modern.request("tools/call", call(
            name, inputResponses={key: elicit_answer(ok=True)}, requestState=state))
        validate_def(response["error"], MODERN, "InvalidParamsError")
        assert response["error"]["code"] == -32602
    done = await modern.result("tools/call", call(
        "test_input_required_result_tampered_state",
        inputResponses={key: elicit_answer(ok=True)}, requestState=first["requestState"]),
        "CallToolResult")
    assert "verified" in only_text(done)


async def test_modern_mrtr_asks_only_for_declared_capabilities(modern: RawPeer):
    result = await modern.result("tools/call", call(
        "test_input_required_result_capabilities", capabilities={"sampling": {}}),
        "InputRequiredResult")
    methods = {request["method"] for request in result["inputRequests"].values()}
    assert methods == {"sampling/createMessage"}
    result = await modern.result("tools/call", call(
        "test_input_required_result_capabilities", capabilities={"elicitation": {}}),
        "InputRequiredResult")
    assert {r["method"] for r in result["inputRequests"].values()} == {"elicitation/create"}
    result = await modern.result("tools/call", call(
        "test_input_required_result_capabilities", capabilities={}), "CallToolResult")
    assert result["resultType"] == "complete"

    response = await modern.request("tools/call", call(
        "test_input_required_result_elicitation", capabilities={"sampling": {}}))
    assert response["error"]["code"] == -32021
    assert response["error"]["data"]["requiredCapabilities"] == {"elicitation": {"form": {}}}


async def test_modern_listen_stream(modern: RawPeer):
    listen_id = await modern.send_request("subscriptions/listen", {
        "_meta": meta(), "notifications": {"toolsListChanged": True}})
    while not modern.notifications:
        await modern.read()
    (ack,) = modern.take_notifications()
    validate_def(ack, MODERN, "SubscriptionsAcknowledgedNotification")
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["notifications"] == {"toolsListChanged": True}
    assert ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == listen_id

    # Not requested: prompts. Requested: tools.
    await modern.result("tools/call", call("test_trigger_prompt_change"), "CallToolResult")
    await modern.result("tools/call", call("test_trigger_tool_change"), "CallToolResult")
    while not modern.notifications:
        await modern.read()
    (changed,) = modern.take_notifications()
    validate_def(changed, MODERN, "ToolListChangedNotification")
    assert changed["method"] == "notifications/tools/list_changed"
    assert changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == listen_id

    await modern.notify("notifications/cancelled", {"requestId": listen_id})
    assert await modern.quiet(0.2) == []
    assert listen_id not in modern.responses
    # The connection still works, and the ended stream hears nothing more.
    await modern.result("tools/call", call("test_trigger_tool_change"), "CallToolResult")
    assert await modern.quiet(0.1) == [] and modern.notifications == []
