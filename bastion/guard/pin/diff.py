"""What changed between a pinned definition and the live one, in a form a reviewer can read.

`diff_definitions(old, new)` lists the differences as `Change`s addressed by JSON pointers
(RFC 6901), with the old and the new value. It compares what the digests compare (see
`canonical`): key order, volatile `_meta` keys and the order of set-like lists (`required`,
`enum`, ...) are not differences; a member added to or removed from such a list is reported
as that member. Values are rendered by `visible()`, which writes hidden characters as
`\\u` escapes, so a zero-width space or a Unicode Tag message shows up in the diff instead of
passing for an unchanged line.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bastion.guard.pin.canonical import SET_MEMBERS, canonical_json, is_hidden, stable_meta

ChangeOp = Literal["added", "removed", "changed"]
#: A changed string longer than this is shown as the region that differs, with context.
LONG_STRING = 160
CONTEXT = 40
#: A diff of two unrelated definitions could be long; a reviewer needs the first changes.
MAX_CHANGES = 200


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: at `path` (a JSON pointer) a value was added, removed or changed."""

    path: str
    op: ChangeOp
    old: Any = None
    new: Any = None

    def describe(self) -> str:
        """One line (or a few) for people: `~ /description: "a" -> "b"`."""
        where = self.path or "/"
        if self.op == "added":
            return f"+ {where}: {visible(self.new)}"
        if self.op == "removed":
            return f"- {where}: {visible(self.old)}"
        old, new = self.old, self.new
        if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) > LONG_STRING:
            return f"~ {where}: {_window(old, new)}"
        return f"~ {where}: {visible(old)} -> {visible(new)}"


def visible(value: Any) -> str:
    """`value` as JSON text in which every hidden character, and every space other than
    U+0020, is written as a `\\u` escape (`\\U` with eight digits beyond U+FFFF)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if not (is_hidden(char) or (char != " " and unicodedata.category(char) == "Zs")):
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _window(old: str, new: str) -> str:
    """The region of two long strings that differs, with some context either side."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    begin = max(0, start - CONTEXT)

    def part(text: str) -> str:
        stop = len(text) - max(0, end - CONTEXT)
        shown = visible(text[begin:stop])
        return ("…" if begin else "") + shown + ("…" if stop < len(text) else "")

    return f"(from character {start}) {part(old)} -> {part(new)}"


def pointer(parts: tuple[str | int, ...]) -> str:
    """The JSON pointer (RFC 6901) of a path."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def diff_definitions(old: Any, new: Any) -> list[Change]:
    """The differences from `old` to `new` (at most `MAX_CHANGES`), in document order."""
    changes: list[Change] = []
    _walk(old, new, (), changes)
    return changes[:MAX_CHANGES]


def _same(old: Any, new: Any) -> bool:
    try:
        return canonical_json(old) == canonical_json(new)
    except ValueError:
        return old == new


def _members(value: Mapping[str, Any]) -> dict[str, Any]:
    """An object's members as the digests see them: `_meta` without its volatile keys."""
    members = dict(value)
    meta = members.get("_meta")
    if isinstance(meta, Mapping):
        meta = stable_meta(meta)
        if meta:
            members["_meta"] = meta
        else:
            del members["_meta"]
    return members


def _walk(old: Any, new: Any, path: tuple[str | int, ...], changes: list[Change]) -> None:
    if len(changes) >= MAX_CHANGES:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        old, new = _members(old), _members(new)
        for key in sorted(set(old) | set(new), key=str):
            here = (*path, key)
            if key not in new:
                changes.append(Change(pointer(here), "removed", old=old[key]))
            elif key not in old:
                changes.append(Change(pointer(here), "added", new=new[key]))
            else:
                _walk(old[key], new[key], here, changes)
    elif isinstance(old, list) and isinstance(new, list):
        if path and path[-1] in SET_MEMBERS:
            _walk_set(old, new, path, changes)
            return
        for index in range(max(len(old), len(new))):
            here = (*path, index)
            if index >= len(new):
                changes.append(Change(pointer(here), "removed", old=old[index]))
            elif index >= len(old):
                changes.append(Change(pointer(here), "added", new=new[index]))
            else:
                _walk(old[index], new[index], here, changes)
    elif not _same(old, new):
        changes.append(Change(pointer(path), "changed", old=old, new=new))


def _walk_set(old: list[Any], new: list[Any], path: tuple[str | int, ...],
              changes: list[Change]) -> None:
    """Members removed from and added to a set-like list (a multiset: duplicates count)."""
    where = pointer(path)
    changes += [Change(where, "removed", old=item) for item in _unmatched(old, new)]
    changes += [Change(where, "added", new=item) for item in _unmatched(new, old)]


def _unmatched(items: list[Any], others: list[Any]) -> list[Any]:
    """The members of `items` left over once each member of `others` has cancelled one."""
    remaining = [canonical_json(other) for other in others]
    left: list[Any] = []
    for item in items:
        key = canonical_json(item)
        if key in remaining:
            remaining.remove(key)
        else:
            left.append(item)
    return left
