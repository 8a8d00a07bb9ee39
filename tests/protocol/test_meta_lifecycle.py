"""`_meta` keys and modern per-request metadata, the legacy lifecycle, capabilities, results
and the protocol's own message builders (each checked against the official schemas)."""

from __future__ import annotations

import pytest

from bastion.protocol import messages, meta, results
from bastion.protocol.capabilities import (
    capability_for_input_request,
    elicitation_modes,
    has_capability,
    has_extension,
)
from bastion.protocol.errors import InvalidParams, InvalidRequest
from bastion.protocol.jsonrpc import Request, Response, dumps, parse_message
from bastion.protocol.lifecycle import PRE_INIT_METHODS, LegacyServerLifecycle, LifecycleState
from bastion.protocol.meta import (
    CLIENT_CAPABILITIES,
    CLIENT_INFO,
    LOG_LEVEL,
    LOG_LEVELS,
    PROTOCOL_VERSION,
    RequestMeta,
    get_meta,
    is_modern_request,
    log_level_allows,
    progress_token,
    request_meta,
)
from bastion.protocol.methods import requests_from_client
from bastion.protocol.versions import ALL_VERSIONS, LATEST_LEGACY, LEGACY_VERSIONS
from tests.schema_check import is_valid, validate_def, validate_message

BOTH = ("2025-11-25", "2026-07-28")
MODERN = "2026-07-28"
CLIENT_INFO_VALUE = {"name": "test-client", "version": "1.0.0"}
SERVER_INFO_VALUE = {"name": "bastion", "version": "0.1.0", "title": "Bastion"}

# --------------------------------------------------------------------------------------------
# _meta keys
# --------------------------------------------------------------------------------------------


def test_reserved_key_names():
    assert PROTOCOL_VERSION == "io.modelcontextprotocol/protocolVersion"
    assert CLIENT_CAPABILITIES == "io.modelcontextprotocol/clientCapabilities"
    assert CLIENT_INFO == "io.modelcontextprotocol/clientInfo"
    assert LOG_LEVEL == "io.modelcontextprotocol/logLevel"
    assert meta.SERVER_INFO == "io.modelcontextprotocol/serverInfo"
    assert meta.SUBSCRIPTION_ID == "io.modelcontextprotocol/subscriptionId"
    assert meta.RELATED_TASK == "io.modelcontextprotocol/related-task"
    assert meta.PROGRESS_TOKEN == "progressToken"
    assert meta.TRACE_KEYS == ("traceparent", "tracestate", "baggage")


def test_log_levels_match_the_schema():
    assert LOG_LEVELS == ("debug", "info", "notice", "warning", "error", "critical", "alert",
                          "emergency")
    for version in BOTH:
        for level in LOG_LEVELS:
            validate_def(level, version, "LoggingLevel")
        assert not is_valid("verbose", version, "LoggingLevel")


@pytest.mark.parametrize("params", [None, {}, {"_meta": None}, {"_meta": []}, {"_meta": "x"},
                                    {"other": 1}])
def test_get_meta_without_an_object(params):
    assert get_meta(params) == {}


def test_get_meta_returns_the_object_itself():
    inner = {"progressToken": 1}
    assert get_meta({"_meta": inner}) is inner


@pytest.mark.parametrize(("token", "expected"), [
    ("t-1", "t-1"), (0, 0), (7, 7), (-3, -3), ("", ""),
    (True, None), (False, None), (1.0, None), (None, None), ([1], None), ({}, None),
])
def test_progress_token(token, expected):
    assert progress_token({"_meta": {"progressToken": token}}) == expected
    assert type(progress_token({"_meta": {"progressToken": token}})) is type(expected)


def test_progress_token_absent():
    assert progress_token(None) is None
    assert progress_token({"_meta": {}}) is None


def test_is_modern_request():
    assert is_modern_request({"_meta": {PROTOCOL_VERSION: MODERN}})
    assert not is_modern_request({"_meta": {}})
    assert not is_modern_request(None)
    assert not is_modern_request({"protocolVersion": MODERN})


# --------------------------------------------------------------------------------------------
# RequestMeta (modern per-request metadata)
# --------------------------------------------------------------------------------------------


def _params(**meta_values) -> dict:
    return {"_meta": dict(meta_values)}


def test_request_meta_parses_all_keys():
    params = {"_meta": {
        PROTOCOL_VERSION: MODERN,
        CLIENT_CAPABILITIES: {"sampling": {"tools": {}}},
        CLIENT_INFO: CLIENT_INFO_VALUE,
        LOG_LEVEL: "warning",
        "progressToken": "p1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }}
    parsed = RequestMeta.parse(params)
    assert parsed == RequestMeta(MODERN, {"sampling": {"tools": {}}}, CLIENT_INFO_VALUE,
                                 "warning", "p1")


def test_request_meta_minimal():
    parsed = RequestMeta.parse({"_meta": {PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}}})
    assert parsed.protocol_version == MODERN
    assert parsed.client_capabilities == {}
    assert parsed.client_info is None
    assert parsed.log_level is None
    assert parsed.progress_token is None


def test_request_meta_does_not_judge_the_version():
    # Whether a version is supported is the server's decision (-32022), not a parse error.
    assert RequestMeta.parse(_params(**{PROTOCOL_VERSION: "2099-01-01",
                                        CLIENT_CAPABILITIES: {}})).protocol_version == \
        "2099-01-01"


@pytest.mark.parametrize("params", [
    None,
    {},
    {"_meta": None},
    {"_meta": "not an object"},
    _params(**{CLIENT_CAPABILITIES: {}}),
    _params(**{PROTOCOL_VERSION: "", CLIENT_CAPABILITIES: {}}),
    _params(**{PROTOCOL_VERSION: 20260728, CLIENT_CAPABILITIES: {}}),
    _params(**{PROTOCOL_VERSION: None, CLIENT_CAPABILITIES: {}}),
    _params(**{PROTOCOL_VERSION: MODERN}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: None}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: []}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: "sampling"}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, CLIENT_INFO: "me"}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, CLIENT_INFO: []}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, LOG_LEVEL: "verbose"}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, LOG_LEVEL: "DEBUG"}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, LOG_LEVEL: 3}),
    _params(**{PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}, LOG_LEVEL: ["info"]}),
])
def test_request_meta_errors_are_invalid_params(params):
    with pytest.raises(InvalidParams) as info:
        RequestMeta.parse(params)
    assert info.value.code == -32602
    assert "_meta" in info.value.message


def test_request_meta_error_names_the_missing_key():
    with pytest.raises(InvalidParams, match="protocolVersion"):
        RequestMeta.parse(_params(**{CLIENT_CAPABILITIES: {}}))
    with pytest.raises(InvalidParams, match="clientCapabilities"):
        RequestMeta.parse(_params(**{PROTOCOL_VERSION: MODERN}))


@pytest.mark.parametrize("level", LOG_LEVELS)
def test_request_meta_accepts_every_log_level(level):
    params = {"_meta": request_meta(MODERN, {}, log_level=level)}
    assert RequestMeta.parse(params).log_level == level


def test_request_meta_builder():
    built = request_meta(MODERN, {"elicitation": {}}, CLIENT_INFO_VALUE, log_level="info")
    assert built == {PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {"elicitation": {}},
                     CLIENT_INFO: CLIENT_INFO_VALUE, LOG_LEVEL: "info"}
    assert request_meta(MODERN, {}) == {PROTOCOL_VERSION: MODERN, CLIENT_CAPABILITIES: {}}


def test_request_meta_round_trip_through_the_wire():
    params = {"_meta": request_meta(MODERN, {"roots": {}}, CLIENT_INFO_VALUE, log_level="error")}
    params["_meta"]["progressToken"] = 17
    request = parse_message(dumps(Request(1, "tools/list", params)))
    parsed = RequestMeta.parse(request.params)
    assert parsed == RequestMeta(MODERN, {"roots": {}}, CLIENT_INFO_VALUE, "error", 17)


@pytest.mark.parametrize(("method", "kind", "extra"), [
    ("server/discover", "DiscoverRequest", {}),
    ("tools/list", "ListToolsRequest", {"cursor": "c1"}),
    ("tools/call", "CallToolRequest", {"name": "echo", "arguments": {"text": "hi"}}),
    ("prompts/list", "ListPromptsRequest", {}),
    ("resources/read", "ReadResourceRequest", {"uri": "file:///tmp/x"}),
])
def test_modern_requests_with_request_meta_validate(method, kind, extra):
    params = {"_meta": request_meta(MODERN, {"sampling": {}, "elicitation": {"form": {}}},
                                    CLIENT_INFO_VALUE, log_level="debug"), **extra}
    message = Request("id-1", method, params).to_dict()
    validate_message(message, MODERN, kind)
    validate_message(message, MODERN, "ClientRequest")
    validate_message(message, MODERN)


def test_modern_request_without_meta_is_schema_invalid():
    assert not is_valid(Request(1, "tools/list", {}).to_dict(), MODERN, "ListToolsRequest")


def test_log_level_allows():
    assert not log_level_allows(None, "emergency")
    assert log_level_allows("debug", "debug")
    assert log_level_allows("debug", "emergency")
    assert log_level_allows("warning", "error")
    assert not log_level_allows("warning", "notice")
    assert log_level_allows("emergency", "emergency")
    assert not log_level_allows("emergency", "alert")
    for threshold in LOG_LEVELS:
        passing = [level for level in LOG_LEVELS if log_level_allows(threshold, level)]
        assert passing == list(LOG_LEVELS[LOG_LEVELS.index(threshold):])


# --------------------------------------------------------------------------------------------
# Legacy lifecycle
# --------------------------------------------------------------------------------------------


def _init_params(version: str = LATEST_LEGACY, **overrides) -> dict:
    params = messages.initialize_params(version, {"roots": {"listChanged": True}},
                                        CLIENT_INFO_VALUE)
    params.update(overrides)
    return params


def test_pre_init_methods():
    assert frozenset({"initialize", "ping"}) == PRE_INIT_METHODS


def test_new_lifecycle():
    lifecycle = LegacyServerLifecycle()
    assert lifecycle.state is LifecycleState.NEW
    assert lifecycle.protocol_version is None
    assert lifecycle.client_capabilities == {}
    assert lifecycle.client_info is None
    assert not lifecycle.may_send_requests
    assert lifecycle.supported_versions == LEGACY_VERSIONS


def test_only_ping_before_initialize():
    lifecycle = LegacyServerLifecycle()
    lifecycle.check_request("ping")
    lifecycle.check_request("initialize")
    for method in sorted(requests_from_client(LATEST_LEGACY) - PRE_INIT_METHODS):
        with pytest.raises(InvalidRequest) as info:
            lifecycle.check_request(method)
        assert info.value.code == -32600
        assert "initialize" in info.value.message
    assert lifecycle.state is LifecycleState.NEW


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_initialize_echoes_a_supported_version(version):
    lifecycle = LegacyServerLifecycle()
    assert lifecycle.initialize(_init_params(version)) == version
    assert lifecycle.protocol_version == version
    assert lifecycle.state is LifecycleState.INITIALIZED
    assert lifecycle.client_capabilities == {"roots": {"listChanged": True}}
    assert lifecycle.client_info == CLIENT_INFO_VALUE


@pytest.mark.parametrize("requested", ["2026-07-28", "2030-01-01", "1.0"])
def test_initialize_offers_the_latest_otherwise(requested):
    lifecycle = LegacyServerLifecycle()
    assert lifecycle.initialize(_init_params(requested)) == LATEST_LEGACY


def test_initialize_with_restricted_versions():
    lifecycle = LegacyServerLifecycle(supported_versions=("2024-11-05", "2025-03-26"))
    assert lifecycle.initialize(_init_params("2025-11-25")) == "2025-03-26"


def test_initialize_only_once():
    lifecycle = LegacyServerLifecycle()
    lifecycle.initialize(_init_params())
    with pytest.raises(InvalidRequest, match="only once") as info:
        lifecycle.check_request("initialize")
    assert info.value.code == -32600
    with pytest.raises(InvalidRequest):
        lifecycle.initialize(_init_params("2024-11-05"))
    assert lifecycle.protocol_version == LATEST_LEGACY
    lifecycle.initialized()
    with pytest.raises(InvalidRequest):
        lifecycle.initialize(_init_params())


def test_full_handshake():
    lifecycle = LegacyServerLifecycle()
    lifecycle.check_request("ping")
    lifecycle.initialize(_init_params())
    # Between the initialize response and notifications/initialized the client may send
    # requests, but the server must not send its own (other than ping).
    lifecycle.check_request("tools/list")
    assert not lifecycle.may_send_requests
    lifecycle.initialized()
    assert lifecycle.state is LifecycleState.OPERATING
    assert lifecycle.may_send_requests
    for method in ("ping", "tools/call", "resources/read"):
        lifecycle.check_request(method)
    lifecycle.initialized()  # a duplicate notification changes nothing
    assert lifecycle.state is LifecycleState.OPERATING


def test_initialized_before_initialize_is_ignored():
    lifecycle = LegacyServerLifecycle()
    lifecycle.initialized()
    assert lifecycle.state is LifecycleState.NEW
    with pytest.raises(InvalidRequest):
        lifecycle.check_request("tools/list")


@pytest.mark.parametrize("params", [
    None,
    {},
    {"capabilities": {}, "clientInfo": CLIENT_INFO_VALUE},
    _init_params(protocolVersion=None),
    _init_params(protocolVersion=20251125),
    _init_params(capabilities=None),
    _init_params(capabilities=[]),
    {"protocolVersion": LATEST_LEGACY, "clientInfo": CLIENT_INFO_VALUE},
])
def test_malformed_initialize_is_invalid_params_and_can_be_retried(params):
    lifecycle = LegacyServerLifecycle()
    with pytest.raises(InvalidParams) as info:
        lifecycle.initialize(params)
    assert info.value.code == -32602
    assert lifecycle.state is LifecycleState.NEW
    assert lifecycle.protocol_version is None
    assert lifecycle.initialize(_init_params()) == LATEST_LEGACY


def test_client_info_must_be_an_object_to_be_kept():
    lifecycle = LegacyServerLifecycle()
    lifecycle.initialize(_init_params(clientInfo="not an object"))
    assert lifecycle.client_info is None


def test_closed_session_refuses_everything():
    lifecycle = LegacyServerLifecycle()
    lifecycle.initialize(_init_params())
    lifecycle.initialized()
    lifecycle.close()
    assert lifecycle.state is LifecycleState.CLOSED
    assert not lifecycle.may_send_requests
    for method in ("ping", "initialize", "tools/list"):
        with pytest.raises(InvalidRequest, match="ended"):
            lifecycle.check_request(method)
    lifecycle.initialized()
    assert lifecycle.state is LifecycleState.CLOSED


def test_close_before_initialize():
    lifecycle = LegacyServerLifecycle()
    lifecycle.close()
    with pytest.raises(InvalidRequest):
        lifecycle.initialize(_init_params())


def test_lifecycle_state_values():
    assert [state.value for state in LifecycleState] == ["new", "initialized", "operating",
                                                         "closed"]


# --------------------------------------------------------------------------------------------
# Capabilities
# --------------------------------------------------------------------------------------------

CAPS = {
    "sampling": {"tools": {}, "context": {}},
    "elicitation": {"url": {}},
    "roots": {"listChanged": False},
    "tasks": {"requests": {"sampling": {"createMessage": {}}}},
    "experimental": None,
    "extensions": {"io.modelcontextprotocol/tasks": {}},
}


@pytest.mark.parametrize(("path", "expected"), [
    ("sampling", True),
    ("sampling.tools", True),
    ("sampling.context", True),
    ("sampling.missing", False),
    ("elicitation.url", True),
    ("elicitation.form", False),
    ("roots", True),
    ("roots.listChanged", False),
    ("tasks.requests.sampling.createMessage", True),
    ("tasks.requests.elicitation.create", False),
    ("experimental", False),
    ("logging", False),
    ("sampling.tools.deeper", False),
])
def test_has_capability(path, expected):
    assert has_capability(CAPS, path) is expected


def test_has_capability_without_capabilities():
    assert not has_capability(None, "sampling")
    assert not has_capability({}, "sampling")
    assert has_capability({"logging": {}}, "logging")
    assert not has_capability({"sampling": "yes"}, "sampling.tools")


@pytest.mark.parametrize(("caps", "modes"), [
    (None, set()),
    ({}, set()),
    ({"elicitation": None}, set()),
    ({"elicitation": False}, set()),
    ({"elicitation": {}}, {"form"}),
    ({"elicitation": {"form": {}}}, {"form"}),
    ({"elicitation": {"url": {}}}, {"url"}),
    ({"elicitation": {"form": {}, "url": {}}}, {"form", "url"}),
    ({"elicitation": {"other": {}}}, {"form"}),
    # Malformed declarations never crash the reader; they mean the bare (form) capability.
    ({"elicitation": True}, {"form"}),
    ({"elicitation": "url"}, {"form"}),
    ({"elicitation": ["url"]}, {"form"}),
])
def test_elicitation_modes(caps, modes):
    assert elicitation_modes(caps) == modes


def test_has_extension():
    assert has_extension(CAPS, "io.modelcontextprotocol/tasks")
    assert not has_extension(CAPS, "io.modelcontextprotocol/ui")
    assert not has_extension(None, "io.modelcontextprotocol/tasks")
    assert not has_extension({"extensions": ["io.modelcontextprotocol/tasks"]},
                             "io.modelcontextprotocol/tasks")


def test_capability_for_input_request():
    assert capability_for_input_request("sampling/createMessage") == "sampling"
    assert capability_for_input_request("elicitation/create") == "elicitation"
    assert capability_for_input_request("roots/list") == "roots"
    with pytest.raises(KeyError):
        capability_for_input_request("tools/call")


@pytest.mark.parametrize("version", BOTH)
def test_capability_examples_are_schema_valid(version):
    validate_def({"sampling": {"tools": {}, "context": {}}, "elicitation": {"form": {}, "url": {}},
                  "roots": {}}, version, "ClientCapabilities")


# --------------------------------------------------------------------------------------------
# Results and content blocks
# --------------------------------------------------------------------------------------------


def test_result_type():
    assert results.RESULT_TYPES == ("complete", "input_required", "task")
    assert results.result_type({}) == "complete"
    assert results.result_type({"resultType": "input_required"}) == "input_required"
    assert results.result_type({"resultType": "task"}) == "task"
    assert results.result_type({"resultType": None}) == "complete"
    assert results.result_type({"resultType": 3}) == "complete"


def test_input_required_result():
    ask = {"method": "elicitation/create",
           "params": {"mode": "form", "message": "Which environment?",
                      "requestedSchema": {"type": "object",
                                          "properties": {"env": {"type": "string"}}}}}
    result = results.input_required({"env": ask}, "opaque-state")
    assert result == {"resultType": "input_required", "inputRequests": {"env": ask},
                      "requestState": "opaque-state"}
    validate_def(result, MODERN, "InputRequiredResult")
    validate_def(result, MODERN, "ServerResult")
    validate_message(Response(1, result).to_dict(), MODERN)
    state_only = results.input_required(request_state="")
    assert state_only == {"resultType": "input_required", "requestState": ""}
    validate_def(state_only, MODERN, "InputRequiredResult")
    roots_only = results.input_required({"r": {"method": "roots/list"}})
    assert "requestState" not in roots_only
    validate_def(roots_only, MODERN, "InputRequiredResult")


@pytest.mark.parametrize(("requests", "state"), [(None, None), ({}, None)])
def test_input_required_needs_something(requests, state):
    with pytest.raises(ValueError, match="inputRequests or requestState"):
        results.input_required(requests, state)


CONTENT = [
    (results.text("hello"), "TextContent"),
    (results.text("hi", annotations={"audience": ["user"], "priority": 0.5}), "TextContent"),
    (results.image("aGVsbG8=", "image/png"), "ImageContent"),
    (results.audio("aGVsbG8=", "audio/wav"), "AudioContent"),
    (results.embedded_text("file:///a.txt", "contents"), "EmbeddedResource"),
    (results.embedded_blob("file:///a.bin", "AAEC", "application/octet-stream"),
     "EmbeddedResource"),
    (results.resource_link("file:///a.txt", "a.txt", mimeType="text/plain"), "ResourceLink"),
]


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(("block", "def_name"), CONTENT)
def test_content_blocks_are_schema_valid(version, block, def_name):
    validate_def(block, version, def_name)
    validate_def(block, version, "ContentBlock")


@pytest.mark.parametrize("version", BOTH)
def test_call_tool_result_with_every_block(version):
    result = {"content": [block for block, _ in CONTENT], "isError": False,
              "structuredContent": {"ok": True}}
    if version == MODERN:
        result["resultType"] = "complete"
    validate_def(result, version, "CallToolResult")
    validate_message(Response(2, result).to_dict(), version)


def test_content_block_shapes():
    assert results.text("x") == {"type": "text", "text": "x"}
    assert results.embedded_text("u", "v") == {
        "type": "resource", "resource": {"uri": "u", "mimeType": "text/plain", "text": "v"}}
    assert results.resource_link("u", "n", title="T") == {"type": "resource_link", "uri": "u",
                                                          "name": "n", "title": "T"}


# --------------------------------------------------------------------------------------------
# Message builders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_initialize_request_is_schema_valid(version):
    params = messages.initialize_params(
        version, {"roots": {"listChanged": True}, "sampling": {}, "elicitation": {}},
        {**CLIENT_INFO_VALUE, "title": "Test client"},
    )
    assert params == {"protocolVersion": version,
                      "capabilities": {"roots": {"listChanged": True}, "sampling": {},
                                       "elicitation": {}},
                      "clientInfo": {**CLIENT_INFO_VALUE, "title": "Test client"}}
    message = Request(0, "initialize", params).to_dict()
    validate_message(message, version, "InitializeRequest")
    validate_message(message, version, "ClientRequest")


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_initialize_result_is_schema_valid(version):
    caps = {"tools": {"listChanged": True}, "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": False}, "logging": {}, "completions": {}}
    result = messages.initialize_result(version, caps, SERVER_INFO_VALUE, "Use the tools.")
    assert result == {"protocolVersion": version, "capabilities": caps,
                      "serverInfo": SERVER_INFO_VALUE, "instructions": "Use the tools."}
    validate_def(result, version, "InitializeResult")
    validate_message(Response(0, result).to_dict(), version, "JSONRPCResultResponse")


def test_initialize_result_without_instructions():
    result = messages.initialize_result(LATEST_LEGACY, {}, SERVER_INFO_VALUE)
    assert "instructions" not in result
    assert "instructions" not in messages.initialize_result(LATEST_LEGACY, {}, SERVER_INFO_VALUE,
                                                            "")
    validate_def(result, LATEST_LEGACY, "InitializeResult")


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_initialized_notification(version):
    message = messages.initialized().to_dict()
    assert message == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    validate_message(message, version, "InitializedNotification")
    validate_message(message, version, "ClientNotification")


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(("request_id", "reason"), [(1, None), ("abc", "user pressed stop"),
                                                    (0, "")])
def test_cancelled_notification(version, request_id, reason):
    notification = messages.cancelled(request_id, reason)
    params = notification.to_dict()["params"]
    assert params["requestId"] == request_id
    assert ("reason" in params) is bool(reason)
    validate_message(notification.to_dict(), version, "CancelledNotification")
    validate_message(notification.to_dict(), version, "ClientNotification")


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(("token", "value", "total", "message"), [
    ("tok", 0, None, None),
    (5, 0.5, 1.0, None),
    ("t", 3, 10, "three of ten"),
    (-1, 1e-3, None, ""),
])
def test_progress_notification(version, token, value, total, message):
    notification = messages.progress(token, value, total, message)
    params = notification.params
    assert params["progressToken"] == token
    assert params["progress"] == value
    assert ("total" in params) is (total is not None)
    assert ("message" in params) is (message is not None)
    validate_message(notification.to_dict(), version, "ProgressNotification")
    validate_message(notification.to_dict(), version, "ServerNotification")
    assert parse_message(dumps(notification)) == notification


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize("level", LOG_LEVELS)
def test_log_message_notification(version, level):
    notification = messages.log_message(level, {"event": "x", "n": [1, 2]}, logger="bastion")
    assert notification.params == {"level": level, "data": {"event": "x", "n": [1, 2]},
                                   "logger": "bastion"}
    validate_message(notification.to_dict(), version, "LoggingMessageNotification")
    validate_message(notification.to_dict(), version, "ServerNotification")
    plain = messages.log_message(level, "text only")
    assert "logger" not in plain.params
    validate_message(plain.to_dict(), version, "LoggingMessageNotification")


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(("kind", "def_name"), [
    ("tools", "ToolListChangedNotification"),
    ("prompts", "PromptListChangedNotification"),
    ("resources", "ResourceListChangedNotification"),
])
def test_list_changed_notifications(version, kind, def_name):
    message = messages.list_changed(kind).to_dict()
    assert message == {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
    validate_message(message, version, def_name)
    validate_message(message, version, "ServerNotification")


@pytest.mark.parametrize("version", BOTH)
def test_resource_updated_notification(version):
    message = messages.resource_updated("file:///etc/motd").to_dict()
    assert message["params"] == {"uri": "file:///etc/motd"}
    validate_message(message, version, "ResourceUpdatedNotification")


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_builders_only_emit_methods_the_version_defines(version):
    from bastion.protocol.methods import notifications_from_client, notifications_from_server

    server_side = notifications_from_server(version)
    for notification in (messages.progress("t", 1), messages.log_message("info", "x"),
                         messages.list_changed("tools"), messages.resource_updated("file:///x"),
                         messages.cancelled(1)):
        assert notification.method in server_side
    client_side = notifications_from_client(version)
    assert messages.cancelled(1).method in client_side
    assert (messages.initialized().method in client_side) is (version in LEGACY_VERSIONS)
