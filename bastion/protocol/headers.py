"""The modern HTTP routing headers: `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` (no I/O).

Values are plain visible ASCII, or `=?base64?<UTF-8 as base64>?=` when they are not (or when
a plain value would itself look like that wrapper). `x-mcp-header` annotations in a tool's
input schema name the arguments mirrored into `Mcp-Param-{Name}`; `header_params` checks
them with the spec's rules, and a client drops a tool whose annotations break them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from bastion.protocol.errors import HeaderMismatch

PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
PARAM_HEADER_PREFIX = "mcp-param-"
SESSION_HEADER = "mcp-session-id"

#: Methods whose `Mcp-Name` comes from a body field.
NAME_FIELDS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

MAX_SAFE_INTEGER = 2**53 - 1
_TCHAR = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PLAIN = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_PREFIX, _SUFFIX = "=?base64?", "?="
_BLOCKED_KEYWORDS = ("items", "prefixItems", "additionalProperties", "patternProperties",
                     "oneOf", "anyOf", "allOf", "not", "if", "then", "else", "$ref", "$defs",
                     "definitions", "contains", "dependentSchemas", "unevaluatedProperties",
                     "unevaluatedItems", "propertyNames")


class InvalidHeaderAnnotation(ValueError):
    """A tool's `x-mcp-header` annotations break the spec's rules."""


def encode_value(value: str) -> str:
    """A header value for `value`: as is when plain visible ASCII, else base64-wrapped."""
    if _PLAIN.match(value) and not (value.startswith(_PREFIX) and value.endswith(_SUFFIX)):
        return value
    return _PREFIX + base64.b64encode(value.encode("utf-8")).decode("ascii") + _SUFFIX


def decode_value(raw: str) -> str:
    """The value a header carries (optional whitespace trimmed, base64 wrapper decoded)."""
    value = raw.strip(" \t")
    if value.startswith(_PREFIX) and value.endswith(_SUFFIX) and len(value) >= len(
        _PREFIX + _SUFFIX
    ):
        encoded = value[len(_PREFIX) : -len(_SUFFIX)]
        if len(encoded) % 4 or not _B64.match(encoded):
            raise HeaderMismatch(f"header value {raw[:60]!r} has invalid base64")
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HeaderMismatch(f"header value {raw[:60]!r} has invalid base64") from None
    if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in value):
        raise HeaderMismatch(f"header value {raw[:60]!r} has characters that must be encoded")
    return value


def param_value(value: Any) -> str | None:
    """The header text for an argument value; None means no header (absent or null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is outside the safe range for a header")
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return str(int(value))
    if isinstance(value, str):
        return encode_value(value)
    raise ValueError(f"a {type(value).__name__} cannot travel in an Mcp-Param header")


def header_params(input_schema: Any) -> dict[str, tuple[str, ...]]:
    """`{header name: property path}` for a tool's `x-mcp-header` annotations.

    Raises InvalidHeaderAnnotation when any annotation breaks the rules (the whole tool is
    then invalid for a client).
    """
    found: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()

    def walk(schema: Any, path: tuple[str, ...], reachable: bool) -> None:
        if isinstance(schema, list):
            for item in schema:
                walk(item, path, False)
            return
        if not isinstance(schema, dict):
            return
        if "x-mcp-header" in schema:
            _check_annotation(schema, path, reachable, seen)
            found[schema["x-mcp-header"]] = path
        for key, child in schema.items():
            if key == "properties" and isinstance(child, dict):
                for name, sub in child.items():
                    walk(sub, (*path, name), reachable)
            elif key in _BLOCKED_KEYWORDS or isinstance(child, dict | list):
                if key in ("enum", "const", "default", "examples"):
                    continue  # values, not schemas
                walk(child, path, False)

    walk(input_schema, (), True)
    return found


def _check_annotation(
    schema: dict[str, Any], path: tuple[str, ...], reachable: bool, seen: set[str]
) -> None:
    name = schema["x-mcp-header"]
    where = "/".join(path) or "(root)"
    if not reachable or not path:
        raise InvalidHeaderAnnotation(
            f"x-mcp-header at {where} is not reachable through properties alone"
        )
    if not isinstance(name, str) or not name or not _TCHAR.match(name):
        raise InvalidHeaderAnnotation(f"x-mcp-header {name!r} at {where} is not an HTTP token")
    if name.lower() in seen:
        raise InvalidHeaderAnnotation(f"x-mcp-header {name!r} is used twice (case-insensitive)")
    seen.add(name.lower())
    kind = schema.get("type")
    if kind not in ("string", "integer", "boolean"):
        raise InvalidHeaderAnnotation(
            f"x-mcp-header {name!r} at {where} is on a {kind or 'untyped'} property; only "
            "string, integer and boolean may be mirrored"
        )


def value_at(arguments: Any, path: tuple[str, ...]) -> Any:
    """The argument at a property path, or None when any step is missing."""
    node = arguments
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def param_headers(schema_params: dict[str, tuple[str, ...]], arguments: Any) -> dict[str, str]:
    """The `Mcp-Param-*` headers a client sends for these arguments."""
    headers: dict[str, str] = {}
    for name, path in schema_params.items():
        text = param_value(value_at(arguments, path))
        if text is not None:
            headers[f"Mcp-Param-{name}"] = text
    return headers


def matches(header: str, body_value: Any) -> bool:
    """Whether a decoded header value equals the body value (integers numerically)."""
    if isinstance(body_value, bool):
        return header == ("true" if body_value else "false")
    if isinstance(body_value, int | float):
        try:
            return float(header) == float(body_value)
        except ValueError:
            return False
    return isinstance(body_value, str) and header == body_value
