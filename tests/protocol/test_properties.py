"""Property tests for the JSON-RPC core: valid messages round-trip unchanged and validate
against both schemas; invalid envelopes are rejected, never coerced; arbitrary input only
ever raises MCPError subclasses."""

from __future__ import annotations

import contextlib

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bastion.protocol.errors import InvalidParams, InvalidRequest, MCPError, ParseError
from bastion.protocol.jsonrpc import (
    EnvelopeError,
    ErrorResponse,
    Notification,
    Request,
    Response,
    dumps,
    error_response,
    parse_message,
    parse_payload,
)
from bastion.protocol.sealed import StateSealer, binding_for
from tests.schema_check import validate_message

PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

# JSON text never holds lone surrogates (orjson refuses them both ways).
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | int64 | texts | st.floats(
    allow_nan=False, allow_infinity=False
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
request_ids = texts | int64
methods = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
optional_params = st.none() | json_objects

requests = st.builds(Request, request_ids, methods, optional_params)
notifications = st.builds(Notification, methods, optional_params)
responses = st.builds(Response, request_ids, json_objects)
error_objects = st.builds(
    lambda code, message, data, has_data: (
        {"code": code, "message": message, "data": data} if has_data
        else {"code": code, "message": message}
    ),
    int64, texts, json_values, st.booleans(),
)
error_responses = st.builds(ErrorResponse, st.none() | request_ids, error_objects)
any_message = requests | notifications | responses | error_responses

not_exactly_2_0 = json_values.filter(lambda value: value != "2.0") | st.sampled_from(
    ["2", "2.00", "2.0 ", " 2.0", "1.0", "3.0", 2, 2.0, "2.0\x00"]
)
invalid_ids = st.sampled_from([None, True, False]) | st.floats(allow_nan=False,
                                                                allow_infinity=False) | st.lists(
    json_scalars, max_size=2) | st.dictionaries(texts, json_scalars, max_size=2)
non_objects = json_scalars | st.lists(json_values, max_size=3)

ENVELOPE_KEYS = ("jsonrpc", "id", "method", "params", "result", "error")

@st.composite
def near_envelopes(draw: st.DrawFn) -> dict:
    """A valid message with some members broken, dropped or added: about half still parse."""
    obj = draw(any_message).to_dict()
    broken = {
        "jsonrpc": not_exactly_2_0,
        "id": invalid_ids,
        "method": json_scalars,
        "params": non_objects,
        "result": non_objects,
        "error": json_values,
    }
    extra = {
        "jsonrpc": st.just("2.0"),
        "id": request_ids | invalid_ids,
        "method": methods,
        "params": json_objects,
        "result": json_objects,
        "error": error_objects,
    }
    for key in ENVELOPE_KEYS:
        roll = draw(st.integers(min_value=0, max_value=19))
        if key in obj and roll == 0:
            obj[key] = draw(broken[key])
        elif key in obj and roll == 1:
            del obj[key]
        elif key not in obj and roll == 2:
            obj[key] = draw(extra[key])
    return obj


def _with_result_type(message: dict) -> dict:
    """The 2026-07-28 Result requires resultType; add it to success responses."""
    if "result" in message:
        return {**message, "result": {**message["result"], "resultType": "complete"}}
    return message


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@PROFILE
@given(any_message)
def test_round_trip_through_dumps_and_parse(message):
    data = dumps(message)
    assert b"\n" not in data
    assert parse_message(data) == message
    assert parse_message(data.decode()) == message
    assert dumps(parse_message(data)) == data


@PROFILE
@given(any_message)
def test_valid_messages_validate_against_both_schemas(message):
    wire = orjson.loads(dumps(message))
    validate_message(wire, "2025-11-25")
    validate_message(_with_result_type(wire), "2026-07-28")
    kind = {Request: "JSONRPCRequest", Notification: "JSONRPCNotification",
            Response: "JSONRPCResultResponse", ErrorResponse: "JSONRPCErrorResponse"}
    validate_message(wire, "2025-11-25", kind[type(message)])


@PROFILE
@given(st.lists(any_message, min_size=1, max_size=5))
def test_batches_round_trip_when_allowed(batch):
    data = orjson.dumps([message.to_dict() for message in batch])
    assert parse_payload(data, allow_batch=True) == batch


@PROFILE
@given(st.lists(json_values, max_size=5))
def test_batches_are_refused_unless_allowed(batch):
    data = orjson.dumps(batch)
    for parse in (parse_message, parse_payload):
        try:
            parse(data)
        except EnvelopeError as exc:
            assert exc.code == -32600
        else:
            raise AssertionError("a batch was accepted")


@PROFILE
@given(any_message, st.integers(min_value=0, max_value=400))
def test_size_bound(message, max_size):
    data = dumps(message)
    if len(data) <= max_size:
        assert parse_message(data, max_size=max_size) == message
    else:
        try:
            parse_message(data, max_size=max_size)
        except InvalidRequest as exc:
            assert exc.data == {"size": len(data), "limit": max_size}
        else:
            raise AssertionError("an oversized message was accepted")


@PROFILE
@given(error_responses, st.sampled_from(["2025-11-25", "2026-07-28"]))
def test_error_responses_from_exceptions_validate(response, version):
    exc = response.to_exception()
    assert isinstance(exc, MCPError)
    assert exc.code == response.code
    rebuilt = error_response(response.id, exc)
    assert rebuilt.error == {"code": exc.code, "message": exc.message,
                             **({"data": exc.data} if exc.data is not None else {})}
    validate_message(rebuilt.to_dict(), version, "JSONRPCErrorResponse")


# --------------------------------------------------------------------------------------------
# Rejection without coercion
# --------------------------------------------------------------------------------------------


def _rejects(obj: object) -> EnvelopeError:
    try:
        message = parse_message(orjson.dumps(obj))
    except EnvelopeError as exc:
        assert exc.code == -32600
        assert isinstance(exc, InvalidRequest)
        return exc
    raise AssertionError(f"accepted {obj!r} as {message!r}")


@PROFILE
@given(invalid_ids, methods, optional_params)
@example(None, "ping", None)
@example(1.0, "ping", None)
@example(True, "ping", None)
def test_requests_with_null_float_or_bool_ids_are_rejected(request_id, method, params):
    obj = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        obj["params"] = params
    assert _rejects(obj).request_id is None


@PROFILE
@given(invalid_ids.filter(lambda value: value is not None), json_objects)
def test_responses_with_invalid_ids_are_rejected(response_id, result):
    _rejects({"jsonrpc": "2.0", "id": response_id, "result": result})
    _rejects({"jsonrpc": "2.0", "id": response_id, "error": {"code": 1, "message": "m"}})


@PROFILE
@given(not_exactly_2_0, any_message)
def test_jsonrpc_must_be_exactly_2_0(version, message):
    obj = message.to_dict()
    obj["jsonrpc"] = version
    _rejects(obj)
    del obj["jsonrpc"]
    _rejects(obj)


@PROFILE
@given(non_objects, request_ids, methods, st.booleans())
def test_params_must_be_an_object(params, request_id, method, is_request):
    obj = {"jsonrpc": "2.0", "method": method, "params": params}
    if is_request:
        obj["id"] = request_id
    _rejects(obj)


@PROFILE
@given(non_objects, request_ids)
def test_results_and_errors_must_be_objects(value, request_id):
    _rejects({"jsonrpc": "2.0", "id": request_id, "result": value})
    _rejects({"jsonrpc": "2.0", "id": request_id, "error": value})


@PROFILE
@given(near_envelopes())
def test_accepted_envelopes_are_never_coerced(obj):
    try:
        message = parse_message(orjson.dumps(obj))
    except EnvelopeError:
        return
    wire = message.to_dict()
    # Every member we keep is the value received, with its JSON type intact.
    for key, value in wire.items():
        assert key in obj
        assert orjson.dumps(obj[key]) == orjson.dumps(value), key
    # Dropped members: the null id of an error response, and params, which no response has.
    for key in set(obj) - set(wire):
        if key == "id":
            assert obj["id"] is None
            assert isinstance(message, ErrorResponse)
        else:
            assert key == "params"
            assert isinstance(message, Response | ErrorResponse)
    assert set(wire) <= set(ENVELOPE_KEYS)


# --------------------------------------------------------------------------------------------
# Arbitrary input
# --------------------------------------------------------------------------------------------


@PROFILE
@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff\xfe\x00")
@example(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
@example(b"[]")
@example(b"[" * 3000)
def test_arbitrary_bytes_only_raise_mcp_errors(data):
    for parse in (parse_message, parse_payload,
                  lambda raw: parse_payload(raw, allow_batch=True)):
        try:
            parse(data)
        except MCPError as exc:
            assert isinstance(exc, ParseError | InvalidRequest)
            assert exc.code in (-32700, -32600)


@PROFILE
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_mcp_errors(text):
    try:
        parse_message(text)
    except MCPError as exc:
        assert exc.code in (-32700, -32600)


@PROFILE
@given(json_values)
def test_arbitrary_json_is_a_message_or_an_invalid_request(value):
    data = orjson.dumps(value)
    try:
        message = parse_message(data)
    except EnvelopeError as exc:
        assert exc.code == -32600
        assert exc.request_id is None or isinstance(exc.request_id, str | int)
        response = error_response(exc.request_id, exc).to_dict()
        validate_message(response, "2025-11-25")
        validate_message(response, "2026-07-28")
    else:
        assert isinstance(message, Request | Notification | Response | ErrorResponse)


@PROFILE
@given(near_envelopes() | st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values,
                                          max_size=6))
def test_arbitrary_envelopes_only_raise_envelope_errors(obj):
    with contextlib.suppress(EnvelopeError):
        assert isinstance(parse_message(orjson.dumps(obj)), Request | Notification | Response
                          | ErrorResponse)


# --------------------------------------------------------------------------------------------
# Sealed state
# --------------------------------------------------------------------------------------------

SEALER = StateSealer()


@PROFILE
@given(json_values, methods, json_values, st.none() | texts)
def test_sealed_state_round_trips(state, method, salient, principal):
    binding = binding_for(method, salient, principal)
    assert SEALER.open(SEALER.seal(state, binding), binding) == state


@PROFILE
@given(json_values, methods, json_values, texts, texts)
def test_sealed_state_is_bound_to_the_principal(state, method, salient, owner, other):
    if owner == other:
        return
    token = SEALER.seal(state, binding_for(method, salient, owner))
    try:
        SEALER.open(token, binding_for(method, salient, other))
    except InvalidParams as exc:
        assert exc.code == -32602
    else:
        raise AssertionError("a token opened for another principal")


@PROFILE
@given(st.text(max_size=120))
def test_sealed_garbage_is_always_invalid_params(token):
    try:
        SEALER.open(token, b"binding")
    except InvalidParams as exc:
        assert exc.code == -32602
    else:
        raise AssertionError("a forged token opened")
