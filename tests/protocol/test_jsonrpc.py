"""JSON-RPC envelopes and MCP errors: strict parsing, serialization, error codes and shapes."""

from __future__ import annotations

import orjson
import pytest

from bastion.protocol import errors
from bastion.protocol.errors import (
    MODERN_ERROR_CODES,
    HeaderMismatch,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MCPError,
    MethodNotFound,
    MissingRequiredClientCapability,
    ParseError,
    ProtocolError,
    ResourceNotFound,
    UnsupportedProtocolVersion,
    URLElicitationRequired,
)
from bastion.protocol.jsonrpc import (
    DEFAULT_MAX_MESSAGE_SIZE,
    EnvelopeError,
    ErrorResponse,
    Notification,
    Request,
    Response,
    dumps,
    error_response,
    from_object,
    is_valid_id,
    loads,
    parse_message,
    parse_payload,
)
from tests.schema_check import validate_def, validate_message

BOTH = ("2025-11-25", "2026-07-28")

# --------------------------------------------------------------------------------------------
# Error codes and exception classes
# --------------------------------------------------------------------------------------------

ERROR_CLASSES = [
    (ParseError, -32700, "PARSE_ERROR"),
    (InvalidRequest, -32600, "INVALID_REQUEST"),
    (MethodNotFound, -32601, "METHOD_NOT_FOUND"),
    (InvalidParams, -32602, "INVALID_PARAMS"),
    (InternalError, -32603, "INTERNAL_ERROR"),
    (ResourceNotFound, -32002, "RESOURCE_NOT_FOUND"),
    (URLElicitationRequired, -32042, "URL_ELICITATION_REQUIRED"),
    (HeaderMismatch, -32020, "HEADER_MISMATCH"),
    (MissingRequiredClientCapability, -32021, "MISSING_REQUIRED_CLIENT_CAPABILITY"),
    (UnsupportedProtocolVersion, -32022, "UNSUPPORTED_PROTOCOL_VERSION"),
]


@pytest.mark.parametrize(("cls", "code", "constant"), ERROR_CLASSES)
def test_error_constant_and_class_code(cls, code, constant):
    assert getattr(errors, constant) == code
    assert cls.code == code
    exc = cls("boom")
    assert exc.code == code
    assert isinstance(exc, MCPError)
    assert isinstance(exc, Exception)
    assert exc.message == "boom"
    assert str(exc) == "boom"


@pytest.mark.parametrize(("cls", "code", "constant"), ERROR_CLASSES)
def test_from_error_picks_the_most_specific_class(cls, code, constant):
    original = cls("it failed", data={"detail": [1, "two"]})
    error = original.to_error()
    assert error["code"] == code
    rebuilt = MCPError.from_error(error)
    assert type(rebuilt) is cls
    assert rebuilt.code == code
    assert rebuilt.message == "it failed"
    assert rebuilt.data == {"detail": [1, "two"]}
    assert rebuilt.to_error() == error


@pytest.mark.parametrize(
    "cls", [ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError,
            ResourceNotFound, URLElicitationRequired, HeaderMismatch]
)
def test_to_error_without_data_has_no_data_member(cls):
    error = cls("plain").to_error()
    assert error == {"code": cls.code, "message": "plain"}
    assert MCPError.from_error(error).data is None


def test_to_error_keeps_falsy_data():
    # `data` is omitted only when it is None: 0, "" and {} are real values.
    for data in (0, "", {}, [], False):
        assert MCPError("x", data=data).to_error()["data"] == data


def test_mcp_error_default_and_custom_code():
    assert MCPError("x").code == -32603
    custom = MCPError("application failure", code=-31999, data={"k": 1})
    assert custom.code == -31999
    assert custom.to_error() == {"code": -31999, "message": "application failure",
                                 "data": {"k": 1}}
    # A code passed to a subclass overrides the class code for that instance only.
    assert InvalidParams("x", code=-32099).code == -32099
    assert InvalidParams.code == -32602


def test_from_error_unknown_code_keeps_the_code():
    exc = MCPError.from_error({"code": 4242, "message": "app", "data": [1]})
    assert type(exc) is MCPError
    assert (exc.code, exc.message, exc.data) == (4242, "app", [1])
    # -32000..-32019 is legacy implementation space: no meaning may be assumed.
    legacy = MCPError.from_error({"code": -32001, "message": "impl"})
    assert type(legacy) is MCPError
    assert legacy.code == -32001


@pytest.mark.parametrize("code", [None, "x", 1.5, True, False, [1]])
def test_from_error_malformed_code_is_internal_error(code):
    error = {"message": "m"} if code is None else {"code": code, "message": "m"}
    exc = MCPError.from_error(error)
    assert type(exc) is MCPError
    assert exc.code == -32603
    assert exc.code is not True


@pytest.mark.parametrize("message", [None, 5, ["a"]])
def test_from_error_malformed_message(message):
    error = {"code": -32601} if message is None else {"code": -32601, "message": message}
    exc = MCPError.from_error(error)
    assert isinstance(exc, MethodNotFound)
    assert exc.message == "(no message)"


def test_repr_names_class_code_and_message():
    assert repr(MethodNotFound("nope")) == "MethodNotFound(code=-32601, message='nope')"


def test_protocol_error_is_not_a_wire_error():
    assert not issubclass(ProtocolError, MCPError)
    assert issubclass(ProtocolError, Exception)


def test_modern_error_codes():
    assert frozenset({-32020, -32021, -32022}) == MODERN_ERROR_CODES
    for legacy_code in (-32700, -32600, -32601, -32602, -32603, -32002, -32042):
        assert legacy_code not in MODERN_ERROR_CODES


def test_spec_codes_stay_in_their_ranges():
    for cls, code, _ in ERROR_CLASSES:
        assert -32768 <= code <= -32000, cls
    # -32020..-32099 is reserved for the spec: we emit only the codes it defines there.
    reserved = {code for _, code, _ in ERROR_CLASSES if -32099 <= code <= -32020}
    assert reserved == {-32020, -32021, -32022, -32042}


# -32021 MissingRequiredClientCapability ----------------------------------------------------


def test_missing_capability_data_is_a_capabilities_object():
    exc = MissingRequiredClientCapability("needs sampling", required={"sampling": {}})
    assert exc.data == {"requiredCapabilities": {"sampling": {}}}
    assert isinstance(exc.data["requiredCapabilities"], dict)
    message = error_response("r1", exc).to_dict()
    for kind in ("MissingRequiredClientCapabilityError", "JSONRPCErrorResponse",
                 "JSONRPCMessage"):
        validate_message(message, "2026-07-28", kind)


def test_missing_capability_default_data_is_an_empty_object():
    exc = MissingRequiredClientCapability("needs something")
    assert exc.data == {"requiredCapabilities": {}}
    validate_message(error_response(3, exc).to_dict(), "2026-07-28",
                     "MissingRequiredClientCapabilityError")


def test_missing_capability_round_trip_keeps_data():
    exc = MissingRequiredClientCapability(
        "elicitation", required={"elicitation": {"url": {}}, "roots": {}}
    )
    rebuilt = MCPError.from_error(exc.to_error())
    assert isinstance(rebuilt, MissingRequiredClientCapability)
    assert rebuilt.data == {"requiredCapabilities": {"elicitation": {"url": {}}, "roots": {}}}


def test_missing_capability_explicit_data_wins():
    exc = MissingRequiredClientCapability("x", data={"requiredCapabilities": {"roots": {}},
                                                     "extra": 1})
    assert exc.data == {"requiredCapabilities": {"roots": {}}, "extra": 1}


# -32022 UnsupportedProtocolVersion ---------------------------------------------------------


def test_unsupported_version_data_has_supported_and_requested():
    exc = UnsupportedProtocolVersion(
        "unsupported", requested="1999-01-01", supported=("2026-07-28",)
    )
    assert exc.data == {"requested": "1999-01-01", "supported": ["2026-07-28"]}
    assert isinstance(exc.data["supported"], list)
    message = error_response(7, exc).to_dict()
    for kind in ("UnsupportedProtocolVersionError", "JSONRPCErrorResponse"):
        validate_message(message, "2026-07-28", kind)


def test_unsupported_version_defaults_are_schema_valid():
    exc = UnsupportedProtocolVersion("unsupported")
    assert exc.data == {"requested": "", "supported": []}
    validate_message(error_response(None, exc).to_dict(), "2026-07-28",
                     "UnsupportedProtocolVersionError")


def test_unsupported_version_round_trip():
    exc = UnsupportedProtocolVersion("no", requested="2030-01-01",
                                     supported=["2026-07-28", "2025-11-25"])
    rebuilt = MCPError.from_error(exc.to_error())
    assert isinstance(rebuilt, UnsupportedProtocolVersion)
    assert rebuilt.data == {"requested": "2030-01-01", "supported": ["2026-07-28", "2025-11-25"]}
    assert rebuilt.to_error() == exc.to_error()


def test_supported_list_is_copied():
    supported = ["2026-07-28"]
    exc = UnsupportedProtocolVersion("no", requested="x", supported=supported)
    supported.append("mutated")
    assert exc.data["supported"] == ["2026-07-28"]


# -32020, -32042 and the plain JSON-RPC codes against the schemas ---------------------------


def test_header_mismatch_is_schema_valid():
    exc = HeaderMismatch("Mcp-Method header does not match the body",
                         data={"header": "Mcp-Method"})
    validate_message(error_response("abc", exc).to_dict(), "2026-07-28", "HeaderMismatchError")


def test_url_elicitation_required_is_schema_valid_in_2025_11_25():
    elicitation = {"mode": "url", "message": "Sign in to continue",
                   "url": "https://example.com/connect", "elicitationId": "e-1"}
    exc = URLElicitationRequired("authorization needed", data={"elicitations": [elicitation]})
    message = error_response(9, exc).to_dict()
    validate_message(message, "2025-11-25", "URLElicitationRequiredError")
    validate_message(message, "2025-11-25")
    rebuilt = ErrorResponse(9, message["error"]).to_exception()
    assert isinstance(rebuilt, URLElicitationRequired)
    assert rebuilt.data["elicitations"][0]["elicitationId"] == "e-1"


@pytest.mark.parametrize(
    ("cls", "def_name"),
    [(ParseError, "ParseError"), (InvalidRequest, "InvalidRequestError"),
     (MethodNotFound, "MethodNotFoundError"), (InvalidParams, "InvalidParamsError"),
     (InternalError, "InternalError")],
)
def test_standard_error_objects_match_their_2026_defs(cls, def_name):
    validate_def(cls("message").to_error(), "2026-07-28", def_name)
    validate_def(cls("message", data={"uri": "file:///x"}).to_error(), "2026-07-28", def_name)


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(("cls", "code", "constant"), ERROR_CLASSES)
def test_every_error_response_is_a_valid_message(version, cls, code, constant):
    for request_id in (1, "req-1", None):
        message = error_response(request_id, cls("failed")).to_dict()
        validate_message(message, version)
        validate_message(message, version, "JSONRPCErrorResponse")


# --------------------------------------------------------------------------------------------
# Envelopes: building and serializing
# --------------------------------------------------------------------------------------------


def test_request_to_dict():
    assert Request(1, "tools/list").to_dict() == {"jsonrpc": "2.0", "id": 1,
                                                  "method": "tools/list"}
    assert Request("a", "tools/call", {"name": "x"}).to_dict() == {
        "jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "x"}}
    # An empty params object is kept: only None means "no params member".
    assert Request(2, "ping", {}).to_dict()["params"] == {}


def test_notification_to_dict():
    assert Notification("notifications/initialized").to_dict() == {
        "jsonrpc": "2.0", "method": "notifications/initialized"}
    assert "id" not in Notification("m", {"a": 1}).to_dict()


def test_response_to_dict():
    assert Response(5, {"tools": []}).to_dict() == {"jsonrpc": "2.0", "id": 5,
                                                    "result": {"tools": []}}


def test_error_response_with_id():
    response = error_response(4, MethodNotFound("no such method", data={"method": "x"}))
    assert response.to_dict() == {
        "jsonrpc": "2.0", "id": 4,
        "error": {"code": -32601, "message": "no such method", "data": {"method": "x"}},
    }
    assert response.code == -32601
    exc = response.to_exception()
    assert isinstance(exc, MethodNotFound)
    assert exc.data == {"method": "x"}


def test_error_response_without_id_omits_the_member():
    # Both schemas type an error's id as string|integer and make it optional: no null.
    message = error_response(None, ParseError("invalid JSON")).to_dict()
    assert message == {"jsonrpc": "2.0", "error": {"code": -32700, "message": "invalid JSON"}}
    for version in BOTH:
        validate_message(message, version, "JSONRPCErrorResponse")


def test_messages_are_frozen():
    request = Request(1, "ping")
    with pytest.raises(AttributeError):
        request.id = 2  # type: ignore[misc]


@pytest.mark.parametrize("version", BOTH)
def test_built_envelopes_validate(version):
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    validate_message(Request(1, "tools/list", {"_meta": meta}).to_dict(), version,
                     "JSONRPCRequest")
    validate_message(Request("x", "ping").to_dict(), version, "JSONRPCRequest")
    validate_message(Notification("notifications/tools/list_changed").to_dict(), version,
                     "JSONRPCNotification")
    validate_message(Response(1, {"resultType": "complete"}).to_dict(), version,
                     "JSONRPCResultResponse")


def test_dumps_is_compact_single_line_utf8():
    message = Request(1, "tools/call", {"name": "echo", "arguments": {"text": "héllo\nworld"}})
    data = dumps(message)
    assert isinstance(data, bytes)
    assert b"\n" not in data
    assert b" " not in data
    assert data == dumps(message.to_dict())
    assert orjson.loads(data) == message.to_dict()
    assert "héllo".encode() in data


def test_dumps_accepts_a_plain_dict():
    assert dumps({"jsonrpc": "2.0", "method": "x"}) == b'{"jsonrpc":"2.0","method":"x"}'


# --------------------------------------------------------------------------------------------
# Parsing: accepted shapes
# --------------------------------------------------------------------------------------------


def test_parse_request():
    message = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}')
    assert message == Request(1, "tools/list", {})


def test_parse_accepts_str_and_bytes():
    text = '{"jsonrpc":"2.0","id":"x","method":"ping"}'
    assert parse_message(text) == parse_message(text.encode()) == Request("x", "ping")


def test_parse_notification():
    assert parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') == \
        Notification("notifications/initialized")


def test_parse_response():
    message = parse_message(b'{"jsonrpc":"2.0","id":"r","result":{"a":[1,2]}}')
    assert message == Response("r", {"a": [1, 2]})


def test_parse_error_response():
    message = parse_message(
        b'{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"nope","data":[1]}}'
    )
    assert isinstance(message, ErrorResponse)
    assert message.id == 3
    assert message.code == -32601
    assert message.error["data"] == [1]


def test_parse_error_response_with_null_id():
    # JSON-RPC 2.0 peers send "id": null when they could not read the request's id.
    message = parse_message(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}')
    assert message == ErrorResponse(None, {"code": -32700, "message": "x"})


def test_parse_error_response_without_id():
    # Both MCP schemas make id optional on an error response; modern peers leave it out.
    message = parse_message(b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"x"}}')
    assert message == ErrorResponse(None, {"code": -32700, "message": "x"})
    assert parse_message(dumps(message)) == message


def test_parse_keeps_unknown_fields_untouched():
    raw = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": "t", "future": {"x": [1.5, None, True]}, "_meta": {"k": "v"}}}
    message = parse_message(orjson.dumps(raw))
    assert message.params == raw["params"]
    result = {"content": [], "newerField": {"nested": 1}, "_meta": {}}
    assert parse_message(orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result})).result \
        == result


def test_parse_ignores_unknown_top_level_members():
    message = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping","extra":true}')
    assert message == Request(1, "ping")


@pytest.mark.parametrize("request_id", [0, -1, 2**63 - 1, -(2**63), "", "0", "ü-id"])
def test_parse_accepts_every_string_and_integer_id(request_id):
    raw = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
    message = parse_message(raw)
    assert message.id == request_id
    assert type(message.id) is type(request_id)


def test_ids_are_never_coerced():
    assert parse_message(b'{"jsonrpc":"2.0","id":"1","method":"ping"}').id == "1"
    assert parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}').id == 1


def test_is_valid_id():
    assert is_valid_id(0)
    assert is_valid_id("x")
    for value in (None, True, False, 1.0, [], {}, b"1"):
        assert not is_valid_id(value)


# --------------------------------------------------------------------------------------------
# Parsing: rejections (never coerced)
# --------------------------------------------------------------------------------------------


def _envelope_error(raw: object) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        parse_message(orjson.dumps(raw))
    assert info.value.code == -32600
    assert isinstance(info.value, InvalidRequest)
    return info.value


@pytest.mark.parametrize("request_id", [None, 1.0, 1.5, True, False, [1], {"a": 1}])
def test_request_with_invalid_id_is_rejected(request_id):
    exc = _envelope_error({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
    assert exc.request_id is None


@pytest.mark.parametrize("version", [None, "2.1", "2", "1.0", 2.0, 2, "", " 2.0", "2.0 ",
                                     ["2.0"]])
def test_jsonrpc_member_must_be_exactly_2_0(version):
    exc = _envelope_error({"jsonrpc": version, "id": 8, "method": "ping"})
    # The id was readable, so the error response can still be correlated.
    assert exc.request_id == 8


def test_missing_jsonrpc_member_is_rejected():
    exc = _envelope_error({"id": "q", "method": "ping"})
    assert exc.request_id == "q"


@pytest.mark.parametrize("params", [None, [], [1, 2], "x", 1, 1.5, True])
def test_params_must_be_an_object(params):
    exc = _envelope_error({"jsonrpc": "2.0", "id": 1, "method": "m", "params": params})
    assert exc.request_id == 1
    _envelope_error({"jsonrpc": "2.0", "method": "m", "params": params})


@pytest.mark.parametrize("method", ["", None, 1, [], {}, True])
def test_method_must_be_a_non_empty_string(method):
    _envelope_error({"jsonrpc": "2.0", "id": 1, "method": method})


def test_request_must_not_carry_result_or_error():
    _envelope_error({"jsonrpc": "2.0", "id": 1, "method": "m", "result": {}})
    _envelope_error({"jsonrpc": "2.0", "id": 1, "method": "m",
                     "error": {"code": 1, "message": "x"}})


def test_response_needs_exactly_one_of_result_and_error():
    exc = _envelope_error({"jsonrpc": "2.0", "id": 1, "result": {},
                           "error": {"code": 1, "message": "x"}})
    assert "exactly one" in exc.message
    exc = _envelope_error({"jsonrpc": "2.0", "id": 1})
    assert "method" in exc.message
    assert exc.request_id == 1


def test_success_response_needs_an_id():
    _envelope_error({"jsonrpc": "2.0", "result": {}})


@pytest.mark.parametrize("response_id", [None, 1.0, True, [], {}])
def test_success_response_with_invalid_id_is_rejected(response_id):
    _envelope_error({"jsonrpc": "2.0", "id": response_id, "result": {}})


@pytest.mark.parametrize("result", [None, [], "ok", 1, True])
def test_result_must_be_an_object(result):
    exc = _envelope_error({"jsonrpc": "2.0", "id": 2, "result": result})
    assert exc.request_id == 2


@pytest.mark.parametrize("error_id", [1.0, True, [], {}])
def test_error_response_with_invalid_id_is_rejected(error_id):
    _envelope_error({"jsonrpc": "2.0", "id": error_id, "error": {"code": 1, "message": "x"}})


@pytest.mark.parametrize(
    "error",
    [None, [], "boom", 1, {"message": "no code"}, {"code": "1", "message": "x"},
     {"code": 1.0, "message": "x"}, {"code": True, "message": "x"},
     {"code": -32600}, {"code": -32600, "message": None}, {"code": -32600, "message": 1}],
)
def test_malformed_error_objects_are_rejected(error):
    _envelope_error({"jsonrpc": "2.0", "id": 1, "error": error})


@pytest.mark.parametrize("value", [1, "x", None, True, 1.5])
def test_top_level_must_be_an_object(value):
    _envelope_error(value)


@pytest.mark.parametrize(
    "data", [b"", b"{", b"not json", b'{"jsonrpc":"2.0",}', b"\xff\xfe", b"NaN",
             b'{"a":1}{"b":2}', b"[" * 5000 + b"]" * 5000, b"1e400"],
)
def test_invalid_json_is_a_parse_error(data):
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.code == -32700


def test_from_object_requires_decoded_json():
    assert from_object({"jsonrpc": "2.0", "method": "x"}) == Notification("x")
    with pytest.raises(EnvelopeError):
        from_object("{}")


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------

BATCH = orjson.dumps([
    {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "1.0", "id": 2, "method": "bad"},
    5,
    {"jsonrpc": "2.0", "id": 3, "result": {}},
])


def test_parse_message_refuses_batches():
    with pytest.raises(EnvelopeError) as info:
        parse_message(BATCH)
    assert info.value.code == -32600
    with pytest.raises(EnvelopeError):
        parse_message(b"[]")


def test_parse_payload_refuses_batches_by_default():
    with pytest.raises(EnvelopeError) as info:
        parse_payload(BATCH)
    assert "batch" in info.value.message
    with pytest.raises(EnvelopeError):
        parse_payload(BATCH, allow_batch=False)


def test_parse_payload_single_message_is_not_a_list():
    raw = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    assert parse_payload(raw) == Request(1, "ping")
    assert parse_payload(raw, allow_batch=True) == Request(1, "ping")


def test_parse_payload_batch_yields_one_entry_per_element():
    items = parse_payload(BATCH, allow_batch=True)
    assert isinstance(items, list)
    assert len(items) == 5
    assert items[0] == Request(1, "tools/list")
    assert items[1] == Notification("notifications/initialized")
    assert isinstance(items[2], EnvelopeError)
    assert items[2].request_id == 2
    assert items[2].code == -32600
    assert isinstance(items[3], EnvelopeError)
    assert items[3].request_id is None
    assert items[4] == Response(3, {})


def test_empty_batch_is_invalid_even_when_allowed():
    with pytest.raises(EnvelopeError) as info:
        parse_payload(b"[]", allow_batch=True)
    assert info.value.code == -32600
    assert "empty" in info.value.message


def test_nested_batch_element_is_an_error_entry():
    items = parse_payload(b"[[]]", allow_batch=True)
    assert len(items) == 1
    assert isinstance(items[0], EnvelopeError)


def test_batch_errors_answer_with_valid_error_responses():
    items = parse_payload(BATCH, allow_batch=True)
    for item in items:
        if isinstance(item, EnvelopeError):
            validate_message(error_response(item.request_id, item).to_dict(), "2025-11-25")


def test_batch_with_invalid_json_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_payload(b'[{"jsonrpc":"2.0"', allow_batch=True)


# --------------------------------------------------------------------------------------------
# Size bound
# --------------------------------------------------------------------------------------------


def test_default_size_limit_is_4_mib():
    assert DEFAULT_MAX_MESSAGE_SIZE == 4 * 1024 * 1024


def test_size_limit_boundary():
    raw = dumps(Request(1, "tools/call", {"name": "x" * 100}))
    assert parse_message(raw, max_size=len(raw)) == Request(1, "tools/call",
                                                              {"name": "x" * 100})
    with pytest.raises(InvalidRequest) as info:
        parse_message(raw, max_size=len(raw) - 1)
    exc = info.value
    assert type(exc) is InvalidRequest
    assert exc.code == -32600
    assert exc.data == {"size": len(raw), "limit": len(raw) - 1}
    validate_message(error_response(None, exc).to_dict(), "2026-07-28")


def test_size_limit_is_checked_before_decoding():
    # Oversized garbage is refused for its size, not parsed (no ParseError).
    with pytest.raises(InvalidRequest):
        loads(b"\xff" * 100, max_size=10)
    with pytest.raises(InvalidRequest):
        parse_payload(b"[" + b"1," * 100 + b"1]", allow_batch=True, max_size=50)


def test_size_limit_counts_utf8_bytes_of_a_str():
    text = '{"jsonrpc":"2.0","method":"' + "é" * 50 + '"}'
    size = len(text.encode())
    assert size > len(text)
    assert parse_message(text, max_size=size).method == "é" * 50
    with pytest.raises(InvalidRequest) as info:
        parse_message(text, max_size=size - 1)
    assert info.value.data["size"] == size


def test_large_message_under_the_default_limit():
    raw = dumps(Notification("n", {"blob": "a" * (1024 * 1024)}))
    assert parse_message(raw).params["blob"] == "a" * (1024 * 1024)
