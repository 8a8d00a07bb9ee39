"""Every string and every key of a JSON value, each with its JSON pointer and its role.

The scanner never looks at a field by name alone: it walks the whole object, so a payload
in a property name, an enum value, a default, an unknown schema key or `_meta` is seen as
surely as one in `description`. Inside a JSON Schema the walk knows which keys are
keywords, which are property names and which values are data (`default`, `enum`,
`examples`, `const`), because the rules differ for each.

The walk is bounded (depth, containers, strings, characters): a hostile object cannot
exhaust the stack or the CPU; the bound that was hit is reported.
`walk_result` is the same walk for results (scanned on every call), cheaper: it leaves out
protocol values that are fixed vocabulary and falls back to `walk` at any bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
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
         limits: Limits | None = None, role: str = "text", depth: int = 0) -> Iterator[Item]:
    """Every string and key below `value`, depth first, within the bounds of `limits`.

    `mode` says what `value` is: "generic" (an MCP object), "schema" (a JSON Schema),
    "data" (arbitrary JSON; its strings are data). `role` and `depth` place a sub-tree
    (`value` at `base`) as the walk of its whole object would.
    """
    limits = limits if limits is not None else Limits()
    items: list[Item] = []
    # At a bound, `limits` says which; what was read so far is scanned.
    with suppress(_TooBig):
        _collect(value, base, mode, role, depth, items, limits)
    return iter(items)


def _collect(node: object, path: str, mode: str, role: str, depth: int, items: list[Item],
             limits: Limits) -> None:
    # Recursion is bounded by MAX_DEPTH; a list is cheaper than a generator per level.
    if isinstance(node, str):
        limits.strings += 1
        limits.chars += len(node)
        if limits.strings > MAX_STRINGS or limits.chars > MAX_CHARS:
            limits.size = limits.size or path
            raise _TooBig
        items.append(_new(Item, (path, node, role, False)))
        return
    if not isinstance(node, _CONTAINERS):
        return  # numbers, booleans, null: nothing to read
    limits.containers += 1
    if limits.containers > MAX_CONTAINERS:
        limits.size = limits.size or path
        raise _TooBig
    if depth >= MAX_DEPTH:
        limits.depth = limits.depth or path
        return
    depth += 1
    for child_value, child_path, child_mode, child_role, key in _children(
            node, path, mode, role, limits):
        if key is not None:
            items.append(key)
        _collect(child_value, child_path, child_mode, child_role, depth, items, limits)


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


#: Values of protocol keys that are fixed vocabulary: short printable ASCII that no rule
#: reads, so the result walk leaves them out. Any other value is scanned as usual.
FIXED_VOCABULARY = frozenset({
    "text", "image", "audio", "resource", "resource_link", "complete", "input_required",
    "incomplete", "user", "assistant", "text/plain", "text/markdown", "text/html",
    "text/csv", "application/json", "image/png", "image/jpeg", "image/gif", "image/webp",
    "audio/wav", "audio/mpeg", "application/octet-stream",
})
FIXED_VOCABULARY_KEYS = frozenset({"type", "resultType", "mimeType", "role"})
#: Plain keys results use (no escaping, no key item, not a schema root).
_PROTOCOL_KEYS = frozenset({"content", "contents", "type", "text", "resultType", "isError",
                            "structuredContent", "mimeType", "uri", "resource", "messages",
                            "role", "annotations", "audience", "priority", "name", "title",
                            "description", "data", "blob", "lastModified", "size"})


#: Faster than `Item(...)` (whose generated `__new__` is Python code), same result.
_new = tuple.__new__
_CONTAINERS = (dict, list)


class _TooBig(Exception):
    """The fast walk hit a bound: the caller walks again with `walk`, which reports it."""


def walk_result(value: dict[str, object], limits: Limits) -> list[Item]:
    """The strings and keys of a result (tool, prompt or resource), as `walk` finds them,
    minus the protocol values that are fixed vocabulary (`type: text`,
    `resultType: complete`, `mimeType: text/plain` ...): content text, embedded resource
    text, prompt messages, resource contents and `structuredContent` at any depth are all
    kept. Recursive and allocation-light, because every result of every call is scanned;
    schema sub-trees (rare in results) go through `walk`."""
    items: list[Item] = []
    if _plain_text_result(value, items, limits):
        return items
    try:
        _walk_generic(value, "", 0, items, limits)
    except _TooBig:
        fresh = Limits()
        items = list(walk(value, limits=fresh))
        limits.depth, limits.size = fresh.depth, fresh.size
        limits.strings, limits.chars, limits.containers = (fresh.strings, fresh.chars,
                                                           fresh.containers)
        limits.odd_keys = fresh.odd_keys
    return items


def _plain_text_result(value: dict[str, object], items: list[Item], limits: Limits) -> bool:
    """The commonest result, `{"content": [{"type": "text", "text": ...}, ...]}` with
    optional `resultType`/`isError`, read without recursion; False (nothing added) for
    any other shape."""
    content = value.get("content")
    if type(content) is not list or len(content) > 64:
        return False
    for key, other in value.items():
        if key == "content" or (key == "isError" and type(other) is bool) or (
                key == "resultType" and other in FIXED_VOCABULARY):
            continue
        return False
    texts = []
    for part in content:
        if type(part) is not dict or len(part) != 2 or part.get("type") != "text":
            return False
        text = part.get("text")
        if type(text) is not str:
            return False
        texts.append(text)
    chars = sum(map(len, texts))
    if chars > MAX_CHARS:
        return False
    items.extend(_new(Item, (f"/content/{i}/text", text, "text", False))
                 for i, text in enumerate(texts))
    limits.strings, limits.chars, limits.containers = len(texts), chars, len(texts) + 2
    return True


def _walk_generic(node: dict[str, object] | list[object], path: str, depth: int,
                  items: list[Item], limits: Limits, role: str = "text") -> None:
    limits.containers += 1
    if limits.containers > MAX_CONTAINERS:
        raise _TooBig
    if depth >= MAX_DEPTH:
        limits.depth = limits.depth or path
        return
    depth += 1
    if isinstance(node, list):
        for i, child in enumerate(node):
            if isinstance(child, str):
                limits.strings += 1
                limits.chars += len(child)
                items.append(_new(Item, (f"{path}/{i}", child, role, False)))
            elif isinstance(child, _CONTAINERS):
                _walk_generic(child, f"{path}/{i}", depth, items, limits, role)
    else:
        for key, child in node.items():
            if key in _PROTOCOL_KEYS:
                if isinstance(child, str):
                    if child in FIXED_VOCABULARY and key in FIXED_VOCABULARY_KEYS:
                        continue
                    limits.strings += 1
                    limits.chars += len(child)
                    role_of = _GENERIC_FIELDS.get(key, "text")
                    items.append(_new(Item, (f"{path}/{key}", child, role_of, False)))
                elif isinstance(child, _CONTAINERS):
                    _walk_generic(child, f"{path}/{key}", depth, items, limits,
                                  _GENERIC_FIELDS.get(key, "text"))
                continue
            if not isinstance(key, str):
                raise _TooBig  # odd keys: `walk` records them
            child_path = pointer(path, key)
            if key in _SCHEMA_ROOTS:
                items.extend(walk(child, base=child_path, mode="schema", limits=limits,
                                  depth=depth))
                if limits.size:
                    raise _TooBig
                continue
            if not (len(key) < 30 and key.isascii() and key.isprintable()):
                items.append(Item(child_path, key, "key", True))
            if isinstance(child, str):
                limits.strings += 1
                limits.chars += len(child)
                items.append(Item(child_path, child, _GENERIC_FIELDS.get(key, "text")))
            elif isinstance(child, _CONTAINERS):
                _walk_generic(child, child_path, depth, items, limits,
                              _GENERIC_FIELDS.get(key, "text"))
    if limits.strings > MAX_STRINGS or limits.chars > MAX_CHARS:
        raise _TooBig
