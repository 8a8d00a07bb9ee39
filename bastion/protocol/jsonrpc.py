"""JSON-RPC 2.0 envelopes: strict parsing, typed messages and serialization (orjson).

Parsing rejects and never coerces: `jsonrpc` must be exactly "2.0", ids are strings or
integers (never null, float or bool in a request), `params` is an object, a response has
exactly one of `result` and `error`. Params and results stay the dicts orjson produced, so a
relay forwards unknown and newer fields untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.protocol.errors import InvalidRequest, MCPError, ParseError

RequestId = str | int
JSONObject = dict[str, Any]

#: The default bound on one message, in bytes (4 MiB).
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Request:
    """A request: it expects a response with the same id."""

    id: RequestId
    method: str
    params: JSONObject | None = None

    def to_dict(self) -> JSONObject:
        message: JSONObject = {"jsonrpc": "2.0", "id": self.id, "method": self.method}
        if self.params is not None:
            message["params"] = self.params
        return message


@dataclass(slots=True, frozen=True)
class Notification:
    """A one-way message: no id, no response."""

    method: str
    params: JSONObject | None = None

    def to_dict(self) -> JSONObject:
        message: JSONObject = {"jsonrpc": "2.0", "method": self.method}
        if self.params is not None:
            message["params"] = self.params
        return message


@dataclass(slots=True, frozen=True)
class Response:
    """A successful response."""

    id: RequestId
    result: JSONObject

    def to_dict(self) -> JSONObject:
        return {"jsonrpc": "2.0", "id": self.id, "result": self.result}


@dataclass(slots=True, frozen=True)
class ErrorResponse:
    """An error response; `id` is None when the request's id could not be read."""

    id: RequestId | None
    error: JSONObject

    @property
    def code(self) -> int:
        return int(self.error["code"])

    def to_exception(self) -> MCPError:
        return MCPError.from_error(self.error)

    def to_dict(self) -> JSONObject:
        message: JSONObject = {"jsonrpc": "2.0", "error": self.error}
        # Both MCP schemas (2025-11-25 and 2026-07-28) make `id` optional on an error but
        # type it string|integer, so an explicit null would not validate: when the request's
        # id is unknown the member is left out. (A received `"id": null` is still accepted.)
        if self.id is not None:
            message["id"] = self.id
        return message


Message = Request | Notification | Response | ErrorResponse


class EnvelopeError(InvalidRequest):
    """A message that is valid JSON but not a valid JSON-RPC 2.0 envelope."""

    def __init__(self, message: str, *, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def is_valid_id(value: object) -> bool:
    """Ids are strings or integers; bool is an int subclass in Python and is refused."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def loads(data: bytes | str, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Any:
    """Decode JSON, enforcing the size bound first. Raises ParseError or InvalidRequest."""
    size = len(data)
    if isinstance(data, str) and size <= max_size < 4 * size:
        # The bound is in UTF-8 bytes; a str of n characters encodes to n..4n bytes.
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_size:
        raise InvalidRequest(
            f"message of {size} bytes exceeds the {max_size}-byte limit",
            data={"size": size, "limit": max_size},
        )
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None


def parse_message(data: bytes | str, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Parse one JSON-RPC message. Batches are refused here (see `parse_payload`)."""
    decoded = loads(data, max_size=max_size)
    if isinstance(decoded, list):
        raise EnvelopeError("JSON-RPC batches are not supported by this protocol version")
    return from_object(decoded)


def parse_payload(
    data: bytes | str, *, allow_batch: bool = False, max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> Message | list[Message | EnvelopeError]:
    """Parse a payload that may be a batch (only where the version allows batches).

    A batch yields one entry per element: the message, or the error that element earned.
    """
    decoded = loads(data, max_size=max_size)
    if not isinstance(decoded, list):
        return from_object(decoded)
    if not allow_batch:
        raise EnvelopeError("JSON-RPC batches are not supported by this protocol version")
    if not decoded:
        raise EnvelopeError("an empty JSON-RPC batch is invalid")
    items: list[Message | EnvelopeError] = []
    for element in decoded:
        try:
            items.append(from_object(element))
        except EnvelopeError as exc:
            items.append(exc)
    return items


def from_object(obj: Any) -> Message:
    """Validate a decoded JSON value as one JSON-RPC message."""
    if not isinstance(obj, dict):
        raise EnvelopeError(f"a JSON-RPC message must be an object, not {_json_type(obj)}")
    raw_id = obj.get("id")
    known_id = raw_id if is_valid_id(raw_id) else None
    version = obj.get("jsonrpc")
    if version != "2.0":
        raise EnvelopeError(
            f'"jsonrpc" must be the string "2.0", got {_describe(version)}', request_id=known_id
        )
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise EnvelopeError(
                f'"method" must be a non-empty string, got {_describe(method)}',
                request_id=known_id,
            )
        if "result" in obj or "error" in obj:
            raise EnvelopeError("a request must not carry result or error", request_id=known_id)
        params = obj.get("params")
        if "params" in obj and not isinstance(params, dict):
            raise EnvelopeError(
                f'"params" must be an object, got {_json_type(params)}', request_id=known_id
            )
        if "id" not in obj:
            return Notification(method, params)
        if known_id is None:
            raise EnvelopeError(
                f'request "id" must be a string or an integer, got {_describe(raw_id)}'
            )
        return Request(known_id, method, params)
    has_result = "result" in obj
    has_error = "error" in obj
    if has_result == has_error:
        raise EnvelopeError(
            "a response must carry exactly one of result and error"
            if has_result
            else "a message needs a method (request or notification) or a result or error",
            request_id=known_id,
        )
    if has_result:
        if "id" not in obj:
            raise EnvelopeError("a response must carry an id")
        if known_id is None:
            raise EnvelopeError(
                f'response "id" must be a string or an integer, got {_describe(raw_id)}'
            )
        result = obj["result"]
        if not isinstance(result, dict):
            raise EnvelopeError(
                f'"result" must be an object, got {_json_type(result)}', request_id=known_id
            )
        return Response(known_id, result)
    if raw_id is not None and known_id is None:
        raise EnvelopeError(f'error response "id" must be a string, an integer or null, got '
                            f"{_describe(raw_id)}")
    error = obj["error"]
    if not isinstance(error, dict):
        raise EnvelopeError(f'"error" must be an object, got {_json_type(error)}',
                            request_id=known_id)
    code = error.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise EnvelopeError(f'"error.code" must be an integer, got {_describe(code)}',
                            request_id=known_id)
    if not isinstance(error.get("message"), str):
        raise EnvelopeError('"error.message" must be a string', request_id=known_id)
    return ErrorResponse(known_id, error)


_ID_PATTERN = re.compile(rb'"id"\s*:\s*(-?\d+(?=\s*[,}])|"(?:[^"\\]|\\.){0,256}")')
_MEMBER_PATTERN = re.compile(rb'"(method|params|result|error)"\s*:')


def sniff_envelope(head: bytes) -> tuple[str | None, RequestId | None]:
    """From the first bytes of a message too large to parse: its kind and its id.

    Returns ("request" | "response" | None, id | None). Only an id that appears before
    `params`, `result` or `error` counts, so an "id" nested in the payload is not taken.
    """
    kind: str | None = None
    boundary = len(head)
    for member in _MEMBER_PATTERN.finditer(head):
        name = member.group(1)
        if name == b"method":
            kind = "request"
            continue
        kind = kind or ("request" if name == b"params" else "response")
        boundary = member.start()
        break
    found = _ID_PATTERN.search(head, 0, boundary)
    if found is None:
        return kind, None
    try:
        value = orjson.loads(found.group(1))
    except orjson.JSONDecodeError:
        return kind, None
    return kind, value if is_valid_id(value) else None


def dumps(message: Message | JSONObject) -> bytes:
    """Serialize one message to compact UTF-8 JSON (no newlines, as stdio framing needs)."""
    if not isinstance(message, dict):
        message = message.to_dict()
    return orjson.dumps(message)


def error_response(request_id: RequestId | None, exc: MCPError) -> ErrorResponse:
    """The error response that answers `request_id` with `exc`."""
    return ErrorResponse(request_id, exc.to_error())


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    text = orjson.dumps(value).decode() if not isinstance(value, float) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_json_type(value)} ({text})"
