"""Interop through the gateway: real clients, `bastion serve`, and real upstream servers.

One gateway (`bastion serve --http 127.0.0.1:0`, a child process) serves the whole module,
in front of, with the default `<name>__` prefixes:

* `time`: PyPI `mcp-server-time` (stdio);
* `git`: PyPI `mcp-server-git` (stdio) on a repository made here;
* `sdk`: an SDK (`mcp` 2.3.0) `MCPServer` on Streamable HTTP (`url:`);
* `everything`: npm `@modelcontextprotocol/server-everything` (stdio, legacy only), when
  tools/mcp-node is installed.

Clients: the official SDK `Client` in legacy (2025-11-25) and 2026-07-28 mode, Bastion's
`connect_http`, and a raw HTTP client (`McpHttp`) that validates every frame the gateway
sends against the official schema of the era.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import mcp.types as types
import pytest
import yaml
from mcp import Client, MCPError

from bastion.client import ClientHandlers, connect_http
from tests.http.conftest import McpHttp, Reply, error_of
from tests.interop.conftest import LEGACY_VERSION, MODERN_VERSION, SDK_MODES, Recorder, texts
from tests.interop.test_sdk_client_vs_bastion_server import make_callbacks, text_of
from tests.schema_check import validate_def

from .conftest import TIME_SERVER, stdio_upstream
from .interop_helpers import (
    GATEWAY_READY,
    NO_NODE_REASON,
    NODE_EVERYTHING,
    UVICORN_READY,
    LoggedServer,
    PeerDidNotStart,
    make_git_repo,
    sdk_http_peer_argv,
    start_logged_server,
)

pytestmark = pytest.mark.timeout(60)

#: The SDK Client's modes, one per era.
SDK_ERAS = ["legacy", MODERN_VERSION]
#: Both eras, as the raw client names them.
VERSIONS = [LEGACY_VERSION, MODERN_VERSION]

COMMIT_MESSAGE = "interop: first commit"
UNTRACKED = "untracked-interop.txt"
MISSING_URI = "nowhere://no-such-resource"

requires_node_everything = pytest.mark.skipif(NODE_EVERYTHING is None, reason=NO_NODE_REASON)


# -- the peers, once per module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_git_repo(tmp_path_factory.mktemp("git") / "repo", message=COMMIT_MESSAGE,
                         untracked=UNTRACKED)


@pytest.fixture(scope="module")
def sdk_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sdk_http")
    server = start_logged_server(sdk_http_peer_argv(folder), folder / "peer.log", UVICORN_READY)
    yield f"{server.url}/mcp"
    server.stop()


def serve_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "bastion.cli", "serve", "--config", str(config),
            "--http", "127.0.0.1:0"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, git_repo: Path,
            sdk_http_url: str) -> Iterator[LoggedServer]:
    upstreams: dict[str, Any] = {
        "time": stdio_upstream(TIME_SERVER),
        "git": stdio_upstream([sys.executable, "-m", "mcp_server_git",
                               "--repository", str(git_repo)]),
        "sdk": {"url": sdk_http_url},
    }
    if NODE_EVERYTHING is not None:
        upstreams["everything"] = stdio_upstream(NODE_EVERYTHING)
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "bastion.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(folder / "state"),
                                      "mcpServers": upstreams}), encoding="utf-8")
    server = start_logged_server(serve_argv(config), folder / "gateway.log", GATEWAY_READY)
    yield server
    server.stop()


@pytest.fixture
def url(gateway: LoggedServer) -> str:
    if gateway.process.poll() is not None:
        pytest.fail(f"the gateway exited ({gateway.process.returncode}):\n{gateway.log_text()}")
    return gateway.url


# -- 1. the SDK client, both eras, to PyPI time and git servers --------------------------------


@pytest.mark.parametrize("mode", SDK_ERAS)
async def test_sdk_client_uses_time_and_git(url: str, git_repo: Path, mode: str) -> None:
    async with Client(url, mode=mode) as client:
        assert client.protocol_version == SDK_MODES[mode]
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"time__get_current_time", "time__convert_time",
                "git__git_status", "git__git_log"} <= names

        now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert now.is_error is False
        current = json.loads(text_of(now)[0])
        assert current["timezone"] == "UTC"
        assert datetime.fromisoformat(current["datetime"]).utcoffset().total_seconds() == 0

        converted = await client.call_tool("time__convert_time", {
            "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        target = json.loads(text_of(converted)[0])["target"]
        assert target["timezone"] == "Asia/Tokyo"
        assert target["datetime"].endswith("T21:00:00+09:00")

        status = await client.call_tool("git__git_status", {"repo_path": str(git_repo)})
        assert status.is_error is False
        [report] = text_of(status)
        assert report.startswith("Repository status:")
        assert UNTRACKED in report

        log = await client.call_tool("git__git_log", {"repo_path": str(git_repo)})
        assert COMMIT_MESSAGE in text_of(log)[0]


# -- 2. an SDK MCPServer on Streamable HTTP as the upstream ------------------------------------


@pytest.mark.parametrize("mode", SDK_ERAS)
async def test_sdk_client_uses_an_sdk_http_upstream(url: str, mode: str) -> None:
    recorder = Recorder()
    async with Client(url, mode=mode, **make_callbacks(recorder)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"sdk__echo", "sdk__add", "sdk__ask", "sdk__whoami"} <= names

        added = await client.call_tool("sdk__add", {"a": 2, "b": 40})
        assert added.is_error is False
        assert added.structured_content == {"result": 42}
        echoed = await client.call_tool("sdk__echo", {"text": "bastion", "times": 2})
        assert text_of(echoed) == ["bastion bastion"]

        # Sampling and elicitation cross the gateway: the SDK client's callbacks answer.
        asked = await client.call_tool("sdk__ask", {"question": "Capital of France?"})
        assert text_of(asked) == ["LLM said: Paris"]
        whoami = await client.call_tool("sdk__whoami", {})
        assert text_of(whoami) == ["accept:ann:ann@example.com"]
    [sampled] = recorder.of("sampling")
    assert sampled.messages[0].content.text == "Capital of France?"
    [elicited] = recorder.of("elicitation")
    assert elicited.message == "Who are you?"


# -- 3. npm server-everything (legacy) serving modern clients through the era bridge -----------


EVERYTHING_TOOLS = {"everything__echo", "everything__get-sum",
                    "everything__trigger-sampling-request",
                    "everything__trigger-elicitation-request"}


def bastion_handlers(recorder: Recorder) -> ClientHandlers:
    async def sampling(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("sampling", params))
        return {"role": "assistant", "model": "interop-model", "stopReason": "endTurn",
                "content": {"type": "text", "text": "Lyon"}}

    async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
        recorder.calls.append(("elicitation", params))
        return {"action": "accept", "content": {"name": "Grace Hopper"}}

    return ClientHandlers(sampling=sampling, elicitation=elicitation)


@requires_node_everything
async def test_bastion_modern_client_uses_everything(url: str) -> None:
    recorder = Recorder()
    async with connect_http(url, mode="modern", handlers=bastion_handlers(recorder)) as client:
        assert client.protocol_version == MODERN_VERSION
        tools = [tool for tool in await client.list_tools() if tool["name"] in EVERYTHING_TOOLS]
        assert {tool["name"] for tool in tools} == EVERYTHING_TOOLS
        for tool in tools:
            validate_def(tool, MODERN_VERSION, "Tool")

        results = [
            await client.call_tool("everything__echo", {"message": "hi there"}),
            await client.call_tool("everything__get-sum", {"a": 2, "b": 40}),
            await client.call_tool("everything__trigger-sampling-request",
                                   {"prompt": "Capital of France?"}),
            await client.call_tool("everything__trigger-elicitation-request", {}),
        ]
    for result in results:
        validate_def(result, MODERN_VERSION, "CallToolResult")
        assert not result.get("isError"), result
    echo, total, sampled, elicited = (" ".join(texts(result)) for result in results)
    assert echo == "Echo: hi there"
    assert "42" in total
    assert '"text": "Lyon"' in sampled and "interop-model" in sampled
    assert "Grace Hopper" in elicited and '"action": "accept"' in elicited
    [question] = recorder.of("sampling")
    assert "Capital of France?" in question["messages"][0]["content"]["text"]
    [form] = recorder.of("elicitation")
    assert "name" in form["requestedSchema"]["properties"]


@requires_node_everything
@pytest.mark.parametrize("mode", SDK_ERAS)
async def test_sdk_client_uses_everything(url: str, mode: str) -> None:
    recorder = Recorder()
    callbacks = make_callbacks(recorder)

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        recorder.calls.append(("elicitation", params))
        return types.ElicitResult(action="accept", content={"name": "Grace Hopper"})

    callbacks["elicitation_callback"] = elicitation
    async with Client(url, mode=mode, **callbacks) as client:
        assert client.protocol_version == SDK_MODES[mode]
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names >= EVERYTHING_TOOLS
        echo = await client.call_tool("everything__echo", {"message": "hi"})
        assert text_of(echo) == ["Echo: hi"]
        sampled = await client.call_tool("everything__trigger-sampling-request",
                                         {"prompt": "Capital of France?"})
        assert sampled.is_error is False
        assert '"text": "Paris"' in text_of(sampled)[0]
        elicited = await client.call_tool("everything__trigger-elicitation-request", {})
        assert elicited.is_error is False
        assert "Grace Hopper" in " ".join(text_of(elicited))
    assert len(recorder.of("sampling")) == 1
    assert len(recorder.of("elicitation")) == 1


# -- 4. every frame the gateway sends validates against the official schema --------------------


async def raw_client(http: httpx.AsyncClient, url: str, version: str) -> McpHttp:
    """A schema-checking raw client, through the handshake of `version`'s era."""
    client = McpHttp(http, url, version)
    if version == LEGACY_VERSION:
        await client.initialize()
    else:
        assert (await client.post(client.request("server/discover"))).status == 200
    return client


async def call(client: McpHttp, name: str, arguments: Any, **options: Any) -> Reply:
    return await client.post(client.request("tools/call", {"name": name, "arguments": arguments},
                                            **options))


def result_of(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply
    assert "result" in reply.last, reply.last
    return reply.last["result"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_gateway_frames_validate(url: str, git_repo: Path, version: str) -> None:
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("time__get_current_time", {"timezone": "UTC"}, '"timezone": "UTC"'),
        ("git__git_status", {"repo_path": str(git_repo)}, UNTRACKED),
        ("sdk__add", {"a": 2, "b": 40}, "42"),
    ]
    if NODE_EVERYTHING is not None:
        calls.append(("everything__echo", {"message": "framed"}, "Echo: framed"))
    async with httpx.AsyncClient() as http:
        client = await raw_client(http, url, version)
        tools: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        while True:  # every page; McpHttp checked each ListToolsResult
            page = result_of(await client.post(client.request("tools/list", params)))
            tools.extend(page["tools"])
            if not page.get("nextCursor"):
                break
            params = {"cursor": page["nextCursor"]}
        assert {name for name, _, _ in calls} <= {tool["name"] for tool in tools}
        for name, arguments, expected in calls:
            result = result_of(await call(client, name, arguments))
            assert not result.get("isError"), result
            assert expected in " ".join(texts(result))
        # Each post parsed and validated every message (results by their method's type).
        assert client.checker.checked >= len(calls) + 2


async def test_modern_input_required_round_validates(url: str) -> None:
    """A modern client without a back-channel: the gateway's input_required result and the
    final result after the retry are both valid 2026-07-28 results."""
    targets = [("sdk__ask", {"question": "Capital?"})]
    if NODE_EVERYTHING is not None:  # a legacy upstream: the bridge builds the MRTR result
        targets.append(("everything__trigger-sampling-request", {"prompt": "Capital?"}))
    answer = {"role": "assistant", "model": "m", "content": {"type": "text", "text": "Oslo"}}
    async with httpx.AsyncClient() as http:
        client = await raw_client(http, url, MODERN_VERSION)
        for name, arguments in targets:
            first = result_of(await call(client, name, arguments,
                                         capabilities={"sampling": {}}))
            validate_def(first, MODERN_VERSION, "InputRequiredResult")
            [(key, request)] = first["inputRequests"].items()
            assert request["method"] == "sampling/createMessage"
            retry = client.request("tools/call", {
                "name": name, "arguments": arguments, "inputResponses": {key: answer},
                "requestState": first["requestState"]}, capabilities={"sampling": {}})
            final = result_of(await client.post(retry))
            assert final.get("resultType") == "complete"
            assert "Oslo" in " ".join(texts(final))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", SDK_ERAS)
async def test_unknown_tool_is_named(url: str, mode: str) -> None:
    async with Client(url, mode=mode) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("time__nope", {})
    assert unknown.value.code == types.INVALID_PARAMS
    assert "time__nope" in unknown.value.message


@pytest.mark.parametrize("mode", SDK_ERAS)
async def test_unknown_resource_uri(url: str, mode: str) -> None:
    async with Client(url, mode=mode) as client:
        with pytest.raises(MCPError) as missing:
            await client.read_resource(MISSING_URI)
    # Legacy: -32002 (resource not found); 2026-07-28: -32602 with data.uri.
    assert missing.value.code == (-32002 if mode == "legacy" else types.INVALID_PARAMS)
    assert missing.value.data == {"uri": MISSING_URI}
    assert MISSING_URI in missing.value.message


NOT_OBJECTS = ["UTC", ["UTC"], 42]


@pytest.mark.parametrize("version", VERSIONS)
async def test_arguments_not_an_object_is_invalid_params(url: str, version: str) -> None:
    async with httpx.AsyncClient() as http:
        client = await raw_client(http, url, version)
        for arguments in NOT_OBJECTS:
            error = error_of(await call(client, "time__get_current_time", arguments))
            assert error["code"] == -32602, error
        # The gateway is still fine afterwards.
        good = result_of(await call(client, "time__get_current_time", {"timezone": "UTC"}))
        assert '"timezone": "UTC"' in texts(good)[0]


@pytest.mark.parametrize("version", VERSIONS)
async def test_arguments_not_an_object_is_refused_by_the_gateway(url: str,
                                                                 version: str) -> None:
    async with httpx.AsyncClient() as http:
        client = await raw_client(http, url, version)
        error = error_of(await call(client, "time__get_current_time", "UTC"))
    assert "arguments" in error["message"], error


def test_serve_with_a_bad_config_exits_and_says_why(tmp_path: Path) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(yaml.safe_dump({"mcpServers": {"both": {
        "command": "mcp-server-time", "url": "http://127.0.0.1:1/mcp"}}}), encoding="utf-8")
    with pytest.raises(PeerDidNotStart) as failed:
        start_logged_server(serve_argv(config), tmp_path / "gateway.log", GATEWAY_READY)
    assert "exited with code 2" in failed.value.reason
    assert "not both" in failed.value.log_tail
