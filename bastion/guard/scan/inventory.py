"""Every string and every key of a JSON value, each with its JSON pointer and its role.

The scanner never looks at a field by name alone: it walks the whole object, so a payload
in a property name, an enum value, a default, an unknown schema key or `_meta` is seen as
surely as one in `description`. Inside a JSON Schema the walk knows which keys are
keywords, which are property names and which values are data (`default`, `enum`,
`examples`, `const`), because the rules differ for each.

The walk is iterative and bounded (depth, containers, strings, characters): a hostile
object cannot exhaust the stack or the CPU; the bound that was hit is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_DEPTH = 64
MAX_CONTAINERS = 200_000
MAX_STRINGS = 200_000
MAX_CHARS = 16_000_000

#: JSON Schema keywords (2020-12, draft-07 and the MCP extension) whose value is not prose.
SCHEMA_TOKEN_KEYS = frozenset({
    "type", "format", "$schema", "$id", "$anchor", "$dynamicAnchor", "contentEncoding",
    "contentMediaType", "$vocabulary", "required", "dependentRequired",
})
SCHEMA_PROSE_KEYS = frozenset({"description", "title", "$comment"})
SCHEMA_DATA_KEYS = {"default": "default", "const": "const", "enum": "enum",
                    "examples": "examples", "example": "examples"}
SCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "$defs", "definitions",
                             "dependentSchemas"})
SCHEMA_ONE_KEYS = frozenset({
    "items", "additionalProperties", "not", "if", "then", "else", "contains",
    "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems",
    "contentSchema",
})
SCHEMA_LIST_KEYS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
SCHEMA_NUMERIC_KEYS = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "minContains", "maxContains", "readOnly", "writeOnly", "deprecated", "nullable",
})
SCHEMA_KEYWORDS = (SCHEMA_TOKEN_KEYS | SCHEMA_PROSE_KEYS | set(SCHEMA_DATA_KEYS)
                   | SCHEMA_MAP_KEYS | SCHEMA_ONE_KEYS | SCHEMA_LIST_KEYS
                   | SCHEMA_NUMERIC_KEYS
                   | {"pattern", "$ref", "$dynamicRef", "x-mcp-header"})

#: Keys of MCP objects whose string values are identifiers or binary, not prose.
_GENERIC_FIELDS = {
    "name": "name", "title": "title", "description": "description", "uri": "uri",
    "uriTemplate": "uri", "mimeType": "token", "type": "token", "role": "token",
    "data": "binary", "blob": "binary", "src": "uri", "instructions": "description",
    "text": "text", "message": "text", "version": "token", "protocolVersion": "token",
}
_SCHEMA_ROOTS = frozenset({"inputSchema", "outputSchema", "requestedSchema"})


class Item(NamedTuple):
    """One string of the scanned object: a value, or a key (`is_key`)."""

    path: str
    text: str
    #: What the string is: name, title, description, text, property-name, key, extra-key,
    #: default, enum, examples, const, pattern, ref, header, uri, token, binary.
    role: str
    is_key: bool = False


@dataclass(slots=True)
class Limits:
    """Which bounds the walk hit (each is reported once as an E-LIM finding)."""

    depth: str | None = None
    size: str | None = None
    strings: int = 0
    chars: int = 0
    containers: int = 0
    odd_keys: list[str] = field(default_factory=list)


def pointer(parent: str, token: str | int) -> str:
    """RFC 6901: append one reference token to a JSON pointer."""
    text = str(token)
    if "~" in text or "/" in text:
        text = text.replace("~", "~0").replace("/", "~1")
    return f"{parent}/{text}"


def walk(value: object, *, base: str = "", mode: str = "generic",
         limits: Limits | None = None) -> Iterator[Item]:
    """Every string and key below `value`, depth first, within the bounds of `limits`.

    `mode` says what `value` is: "generic" (an MCP object), "schema" (a JSON Schema),
    "data" (arbitrary JSON; its strings are data).
    """
    limits = limits if limits is not None else Limits()
    # The stack holds (value, pointer, mode, role for strings, depth).
    stack: list[tuple[object, str, str, str, int]] = [(value, base, mode, "text", 0)]
    while stack:
        node, path, node_mode, role, depth = stack.pop()
        if isinstance(node, str):
            limits.strings += 1
            limits.chars += len(node)
            if limits.strings > MAX_STRINGS or limits.chars > MAX_CHARS:
                limits.size = limits.size or path
                return
            yield Item(path, node, role)
            continue
        if not isinstance(node, dict | list):
            continue  # numbers, booleans, null: nothing to read
        limits.containers += 1
        if limits.containers > MAX_CONTAINERS:
            limits.size = limits.size or path
            return
        if depth >= MAX_DEPTH:
            limits.depth = limits.depth or path
            continue
        children = _children(node, path, node_mode, role, limits)
        for child in reversed(children):
            child_value, child_path, child_mode, child_role, key = child
            if key is not None:
                yield key
            stack.append((child_value, child_path, child_mode, child_role, depth + 1))


_Child = tuple[object, str, str, str, Item | None]


def _children(node: dict | list, path: str, mode: str, role: str,
              limits: Limits) -> list[_Child]:
    if isinstance(node, list):
        child_mode = "schema" if mode == "schema-list" else mode
        return [(v, pointer(path, i), child_mode, role, None) for i, v in enumerate(node)
                if isinstance(v, str | dict | list)]
    out: list[_Child] = []
    for raw_key, value in node.items():
        key = raw_key if isinstance(raw_key, str) else str(raw_key)
        if key is not raw_key:
            limits.odd_keys.append(pointer(path, key))
        child_path = pointer(path, key)
        if mode == "schema":
            out.append(_schema_child(key, value, child_path))
        elif mode == "props":
            out.append((value, child_path, "schema", "text",
                        Item(child_path, key, "property-name", True)))
        elif mode == "data":
            out.append((value, child_path, "data", role, Item(child_path, key, role, True)))
        else:
            out.append(_generic_child(key, value, child_path))
    return out


def _schema_child(key: str, value: object, path: str) -> _Child:
    if key in SCHEMA_MAP_KEYS:
        return (value, path, "props", "text", None)
    if key in SCHEMA_ONE_KEYS:
        return (value, path, "schema-list" if isinstance(value, list) else "schema",
                "text", None)
    if key in SCHEMA_LIST_KEYS:
        return (value, path, "schema-list", "text", None)
    if key in SCHEMA_DATA_KEYS:
        return (value, path, "data", SCHEMA_DATA_KEYS[key], None)
    if key in SCHEMA_PROSE_KEYS:
        return (value, path, "data", "title" if key == "title" else "description", None)
    if key in SCHEMA_TOKEN_KEYS:
        return (value, path, "data", "token", None)
    if key == "pattern":
        return (value, path, "data", "pattern", None)
    if key in ("$ref", "$dynamicRef"):
        return (value, path, "data", "ref", None)
    if key == "x-mcp-header":
        return (value, path, "data", "header", None)
    if key in SCHEMA_NUMERIC_KEYS:
        return (value, path, "data", "token", None)
    # A key no JSON Schema vocabulary defines: whatever it holds still reaches the model.
    return (value, path, "data", "extra", Item(path, key, "extra-key", True))


def _generic_child(key: str, value: object, path: str) -> _Child:
    if key in _SCHEMA_ROOTS:
        return (value, path, "schema", "text", None)
    role = _GENERIC_FIELDS.get(key, "text")
    # A short printable ASCII key can hide nothing and say nothing; others are scanned.
    plain = len(key) < 30 and key.isascii() and key.isprintable()
    return (value, path, "generic", role, None if plain else Item(path, key, "key", True))
