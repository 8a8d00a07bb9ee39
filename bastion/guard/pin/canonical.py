"""Canonical JSON of tool, prompt and resource-template definitions, and their pin digests.

A pin is only as good as its digest: it must change when anything a model reads changes
(old mcp-scan hashed the description alone, so a schema edit passed unseen), and must not
change when nothing did (key order, whitespace, a fresh trace id in `_meta`).

The canonical form follows RFC 8785 (JCS) in spirit:

- object members sorted by their keys' UTF-16 code units, no insignificant whitespace, UTF-8;
  strings escaped as JSON requires and nothing more (non-ASCII stays as it is);
- integers, and floats with an integral value below 2**53, as integers (`1.0` is `1`); other
  floats in Python's shortest round-trip form (JCS's ECMAScript form differs only in how
  exponents are spelt, which cannot make two different values equal);
- volatile `_meta` keys (trace context, progress tokens, server info, subscription and task
  ids) are dropped, and a `_meta` left empty is dropped with them;
- lists keep their order, except the lists whose member name says they are sets: `required`,
  `enum`, `type`, `allOf`, `anyOf` and `oneOf`. JSON Schema gives their order no meaning,
  and servers built on hash maps emit them in any order; positional lists (`prefixItems`,
  prompt `arguments`, `icons`) keep theirs, because order is meaning there.
  Duplicates are kept: adding a repeated member is still a change.

Three SHA-256 digests (`digest()`), each over `{kind, server, definition}` so a digest is bound
to the server identity and the kind as well as to the content:

- `raw`: the canonical form as is. Any edit, an invisible one included, changes it; approval
  is by this digest.
- `normalized`: every string (keys too) in NFKC with hidden characters removed (`is_hidden`):
  the stable identity of what a reader sees. A change that moves `raw` but not `normalized`
  added or removed only invisible characters, the signature of a hidden-instruction attack.
  (It follows the Unicode tables of the Python computing it, which is why approval is by
  `raw`, the digest that depends on nothing but the bytes.)
- `body`: the normalized form without the item's name (`uriTemplate` for templates), so an
  item renamed with its body unchanged is recognised as the pinned item under a new name.

Definitions are digested as the upstream sent them, under the upstream's own name, never the
gateway's public (prefixed) name: a changed prefix is a configuration change, not a rug pull.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from bastion.config.pins import PIN_KINDS, PinKind
from bastion.protocol.meta import (
    PROGRESS_TOKEN,
    RELATED_TASK,
    SERVER_INFO,
    SUBSCRIPTION_ID,
    TRACE_KEYS,
)

#: The member that names an item of each kind (the server's `instructions` are one item).
KEY_FIELDS: dict[PinKind, str] = {"tool": "name", "prompt": "name", "template": "uriTemplate",
                                  "instructions": ""}
#: The pin kind of the items of each list (the kinds a guard stage's `filter_list` sees);
#: plain resources are not pinned: they are data, and their lists change as data does.
LIST_KINDS: dict[str, PinKind] = {"tools": "tool", "prompts": "prompt",
                                  "resourceTemplates": "template"}
#: The name under which a server's `instructions` are pinned.
INSTRUCTIONS_NAME = "instructions"

VOLATILE_META_KEYS = frozenset({PROGRESS_TOKEN, RELATED_TASK, SERVER_INFO, SUBSCRIPTION_ID,
                                *TRACE_KEYS})
#: Members whose list value is a set (see the module doc).
SET_MEMBERS = frozenset({"required", "enum", "type", "allOf", "anyOf", "oneOf"})
#: Bounds on what one definition may cost to canonicalise (a server controls its size).
MAX_DEPTH = 64
MAX_CANONICAL_BYTES = 1024 * 1024
_SAFE_INTEGER = 2**53

# Code points no reader sees, beyond the Cf, Co and Cn categories: variation selectors,
# Hangul and Mongolian fillers, the combining grapheme joiner, the Braille blank.
_INVISIBLE_EXTRA = frozenset(
    [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), 0x034F, 0x115F, 0x1160, 0x17B4,
     0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x2800, 0x3164, 0xFFA0])
_VISIBLE_CONTROLS = frozenset("\t\n\r")
_ASCII_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class CanonicalError(ValueError):
    """A definition cannot be put in canonical form (not JSON, too deep, too large)."""


@dataclass(frozen=True, slots=True)
class PinDigest:
    """The three SHA-256 digests of one definition (lower-case hex; see the module doc)."""

    raw: str
    normalized: str
    body: str


def is_hidden(char: str) -> bool:
    """Whether a reader cannot see `char`: format and control characters (tab, newline and
    carriage return excepted), line and paragraph separators, private-use and unassigned
    code points, variation selectors and the fillers that render as nothing."""
    if ord(char) in _INVISIBLE_EXTRA:
        return True
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in _VISIBLE_CONTROLS
    return category in ("Cf", "Co", "Cn", "Zl", "Zp")


def normalize_text(text: str) -> str:
    """`text` in NFKC with hidden characters removed."""
    if text.isascii():  # NFKC leaves ASCII as it is; only control characters can hide
        return _ASCII_HIDDEN.sub("", text)
    folded = unicodedata.normalize("NFKC", text)
    return "".join(char for char in folded if not is_hidden(char))


def item_name(kind: PinKind, definition: Mapping[str, Any]) -> str | None:
    """The upstream's own name of an item (its `uriTemplate` for a template), or None."""
    if not isinstance(definition, Mapping):
        return None
    if kind == "instructions":
        return INSTRUCTIONS_NAME
    name = definition.get(KEY_FIELDS[kind])
    return name if isinstance(name, str) and name else None


def instructions_definition(instructions: str) -> dict[str, Any]:
    """The definition under which a server's `instructions` are pinned."""
    return {"instructions": instructions}


def stable_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A `_meta` object without its volatile keys."""
    return {key: value for key, value in meta.items() if key not in VOLATILE_META_KEYS}


def canonical_json(value: Any, *, normalize: bool = False) -> bytes:
    """The canonical UTF-8 JSON of `value` (see the module doc); `normalize` applies
    `normalize_text` to every string and key."""
    encoder = _Encoder(normalize_text if normalize else None)
    encoder.encode(value, 0)
    return b"".join(encoder.parts)


def digest(kind: PinKind, server_id: str, definition: Mapping[str, Any]) -> PinDigest:
    """The pin digests of one definition of `server_id` (`CanonicalError` if it has none)."""
    if kind not in KEY_FIELDS:
        raise CanonicalError(f"unknown kind {kind!r}; use one of {', '.join(PIN_KINDS)}")
    if not isinstance(definition, Mapping):
        raise CanonicalError(f"a {kind} definition must be a JSON object, "
                             f"not {type(definition).__name__}")
    key = KEY_FIELDS[kind]
    body = {member: value for member, value in definition.items() if member != key}
    return PinDigest(
        raw=_sha256({"kind": kind, "server": server_id, "definition": definition}, False),
        normalized=_sha256({"kind": kind, "server": server_id, "definition": definition}, True),
        body=_sha256({"kind": kind, "server": server_id, "body": body}, True),
    )


def _sha256(document: dict[str, Any], normalize: bool) -> str:
    return hashlib.sha256(canonical_json(document, normalize=normalize)).hexdigest()


def _sort_key(text: str) -> bytes:
    # RFC 8785 orders members by UTF-16 code units, which differs from code point order
    # above U+FFFF; surrogatepass keeps lone surrogates (valid in JSON text) encodable.
    return text.encode("utf-16-be", "surrogatepass")


class _Encoder:
    """Writes one value's canonical JSON into `parts`, keeping track of size and depth."""

    __slots__ = ("normalize", "parts", "size")

    def __init__(self, normalize: Callable[[str], str] | None) -> None:
        self.normalize = normalize
        self.parts: list[bytes] = []
        self.size = 0

    def emit(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_CANONICAL_BYTES:
            raise CanonicalError(f"the definition's canonical JSON exceeds "
                                 f"{MAX_CANONICAL_BYTES} bytes")
        self.parts.append(chunk)

    def text(self, value: str) -> bytes:
        if self.normalize is not None:
            value = self.normalize(value)
        return encode_basestring(value).encode("utf-8", "surrogatepass")

    def encode(self, value: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise CanonicalError(f"the definition nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            self.emit(self.text(value))
        elif value is None or isinstance(value, bool):
            self.emit(b"null" if value is None else b"true" if value else b"false")
        elif isinstance(value, int):
            self.emit(str(value).encode())
        elif isinstance(value, float):
            self.emit(_number(value))
        elif isinstance(value, Mapping):
            self.encode_object(value, depth)
        elif isinstance(value, list | tuple):
            self.encode_list(value, depth, ordered=True)
        else:
            raise CanonicalError(f"a definition holds a {type(value).__name__}, which is not "
                                 "JSON")

    def encode_object(self, value: Mapping[Any, Any], depth: int) -> None:
        members: list[tuple[bytes, str, Any]] = []
        for key, member in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"an object key is a {type(key).__name__}, not a string")
            if key == "_meta" and isinstance(member, Mapping):
                member = stable_meta(member)
                if not member:
                    continue
            shown = self.normalize(key) if self.normalize is not None else key
            # Normalising may make two keys equal: the raw key breaks the tie.
            members.append((_sort_key(shown) + b"\0\0" + _sort_key(key), key, member))
        members.sort(key=lambda item: item[0])
        self.emit(b"{")
        for index, (_, key, member) in enumerate(members):
            if index:
                self.emit(b",")
            self.emit(self.text(key) + b":")
            if key in SET_MEMBERS and isinstance(member, list | tuple):
                self.encode_list(member, depth + 1, ordered=False)
            else:
                self.encode(member, depth + 1)
        self.emit(b"}")

    def encode_list(self, value: list[Any] | tuple[Any, ...], depth: int, *,
                    ordered: bool) -> None:
        if not ordered:
            items = []
            for item in value:
                inner = _Encoder(self.normalize)
                inner.size = self.size
                inner.encode(item, depth + 1)
                items.append(b"".join(inner.parts))
            items.sort()
            self.emit(b"[" + b",".join(items) + b"]")
            return
        self.emit(b"[")
        for index, item in enumerate(value):
            if index:
                self.emit(b",")
            self.encode(item, depth + 1)
        self.emit(b"]")


def _number(value: float) -> bytes:
    if value != value or value in (float("inf"), float("-inf")):
        raise CanonicalError("NaN and infinities are not JSON numbers")
    if value.is_integer() and abs(value) < _SAFE_INTEGER:
        return str(int(value)).encode()
    return repr(value).encode()
