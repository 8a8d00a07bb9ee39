"""The gateway's catalogue: one merged, namespaced list per kind, and the owner of each item.

Each upstream MCP server offers tools, prompts, resources and resource templates. The catalogue
gives every tool and prompt a public name (the upstream's prefix, `<name>__` by default, before
its own name), merges what all upstreams offer into one list per kind in a deterministic order,
and answers "which upstream owns this?" for every call. Definitions stay the dicts upstreams
sent (a shallow copy with the public name), so unknown and newer fields pass through untouched.

Where two upstreams offer the same public key, the one earlier in configuration order wins and
the other's item is hidden until the winner drops it; `collisions()` reports every such case.
Malformed items are skipped, logged and kept in `skipped()`; they never raise.

Pure and synchronous: no I/O, no asyncio. Lists are built on change, so reading them and
looking a name up are O(1) on the hot path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bastion.server.pagination import paginate
from bastion.server.resources import InvalidTemplate, compile_template

logger = logging.getLogger(__name__)

Kind = Literal["tool", "prompt", "resource", "template"]
KINDS: tuple[Kind, ...] = ("tool", "prompt", "resource", "template")
#: The result member each kind's list goes under (tools/list, ..., resources/templates/list).
LIST_KEYS: dict[Kind, str] = {"tool": "tools", "prompt": "prompts", "resource": "resources",
                              "template": "resourceTemplates"}
_KEY_FIELD: dict[Kind, str] = {"tool": "name", "prompt": "name", "resource": "uri",
                               "template": "uriTemplate"}

#: Items kept per upstream and kind; the rest are skipped (and reported).
MAX_ITEMS_PER_KIND = 10_000
#: Longest public name, URI or URI template kept, and longest URI matched against templates.
MAX_KEY_LENGTH = 8192
_MAX_REASONS_LOGGED = 5


@dataclass(frozen=True, slots=True)
class Entry:
    """One visible item: its public `key`, the `upstream` that owns it, and its definition."""

    kind: Kind
    key: str  # public name (tools, prompts), URI (resources), URI template (templates)
    upstream: str
    original: str  # the upstream's own name, URI or URI template
    definition: dict[str, Any]  # what clients see: do not mutate


@dataclass(frozen=True)
class Collision:
    """Several upstreams offer the same public key; `winner` (first in order) is visible."""

    kind: Kind
    key: str
    upstreams: tuple[str, ...]  # in configuration order
    winner: str


@dataclass(frozen=True, slots=True)
class _Held:
    entry: Entry
    fingerprint: bytes  # canonical JSON of the definition: equal bytes, same visible item
    pattern: re.Pattern[str] | None = None  # templates only


def split_name(public: str, prefix: str) -> str | None:
    """The upstream's own name inside `public`, or None if `public` does not carry `prefix`."""
    if isinstance(public, str) and public.startswith(prefix) and len(public) > len(prefix):
        return public[len(prefix):]
    return None


class Catalog:
    """The merged catalogue of several upstreams, in configuration `order` (which breaks ties).

    `prefixes` optionally names each upstream's prefix before its first `update`, so that
    `owner_of_prefix` can name an upstream that never connected.
    """

    def __init__(self, order: Sequence[str], *, prefixes: Mapping[str, str] | None = None) -> None:
        if isinstance(order, str) or not all(isinstance(name, str) and name for name in order):
            raise TypeError("order must be a sequence of upstream names (non-empty strings)")
        if len(set(order)) != len(order):
            raise ValueError(f"order names an upstream twice: {list(order)!r}")
        self._rank = {name: index for index, name in enumerate(order)}
        self._prefixes: dict[str, str] = {}
        self._prefix_index: list[tuple[str, str]] = []
        self._raw: dict[str, dict[Kind, list[Any]]] = {}
        self._skipped: dict[str, tuple[str, ...]] = {}
        # kind -> key -> upstream -> item: every upstream's items, visible or hidden.
        self._held: dict[Kind, dict[str, dict[str, _Held]]] = {kind: {} for kind in KINDS}
        self._winners: dict[Kind, dict[str, _Held]] = {kind: {} for kind in KINDS}
        self._entries: dict[Kind, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._lists: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        self._collisions: dict[Kind, dict[str, Collision]] = {kind: {} for kind in KINDS}
        self._matchers: list[tuple[re.Pattern[str], Entry]] = []
        self._tools = self._entries["tool"]  # bound once: tool() is on every tools/call
        self.version = 0
        for upstream, prefix in (prefixes or {}).items():
            self._set_prefix(upstream, prefix)

    # -- changes -------------------------------------------------------------------------

    def update(self, upstream: str, prefix: str, *, tools: Sequence[Any] | None = None,
               prompts: Sequence[Any] | None = None, resources: Sequence[Any] | None = None,
               templates: Sequence[Any] | None = None) -> set[Kind]:
        """Replace `upstream`'s items of each kind given (None leaves a kind as it is).

        Returns the kinds whose merged, visible list changed. A changed `prefix` renames all
        of the upstream's items. Malformed items are skipped and reported, never raised.
        """
        _check_names(upstream, prefix)
        given: dict[Kind, Any] = {kind: items for kind, items in zip(
            KINDS, (tools, prompts, resources, templates), strict=True) if items is not None}
        raw = self._raw.setdefault(upstream, {})
        if self._prefixes.get(upstream) != prefix:
            self._set_prefix(upstream, prefix)
            given = {**raw, **given}  # every kind it has is renamed
        reasons: list[str] = []
        for kind, items in given.items():
            if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
                reasons.append(f"its {LIST_KEYS[kind]} are not a list")
                items = []
            raw[kind] = list(items[:MAX_ITEMS_PER_KIND])
            if len(items) > MAX_ITEMS_PER_KIND:
                reasons.append(f"only the first {MAX_ITEMS_PER_KIND} {LIST_KEYS[kind]} kept")
        changed = self._apply(upstream, {kind: self._build(upstream, kind, raw[kind], reasons)
                                         for kind in given})
        self._skipped[upstream] = tuple(reasons)
        if reasons:
            logger.warning("catalogue: upstream %r: skipped %d malformed item(s): %s%s",
                           upstream, len(reasons), "; ".join(reasons[:_MAX_REASONS_LOGGED]),
                           " ..." if len(reasons) > _MAX_REASONS_LOGGED else "")
        return changed

    def remove(self, upstream: str) -> set[Kind]:
        """Drop every item of `upstream` (its prefix stays known); the kinds that changed."""
        _check_names(upstream)
        kinds = self._raw.pop(upstream, {})
        self._skipped.pop(upstream, None)
        return self._apply(upstream, {kind: {} for kind in kinds})

    def skipped(self, upstream: str) -> tuple[str, ...]:
        """Why items of `upstream` were skipped at its last update (empty if none were)."""
        return self._skipped.get(upstream, ())

    # -- lists ---------------------------------------------------------------------------

    def tools(self) -> list[dict[str, Any]]:
        """Visible tool definitions, sorted by public name (a cached list: do not mutate)."""
        return self._lists["tool"]

    def prompts(self) -> list[dict[str, Any]]:
        """Visible prompt definitions, sorted by public name (cached: do not mutate)."""
        return self._lists["prompt"]

    def resources(self) -> list[dict[str, Any]]:
        """Visible resource definitions, sorted by URI (cached: do not mutate)."""
        return self._lists["resource"]

    def templates(self) -> list[dict[str, Any]]:
        """Visible resource template definitions, sorted by URI template (cached)."""
        return self._lists["template"]

    def page(self, kind: Kind, cursor: object, page_size: int) -> dict[str, Any]:
        """One page of a kind's list: `{"tools": [...], "nextCursor": ...}` and so on.

        Raises `InvalidParams` for a cursor that is not one this catalogue handed out.
        """
        if kind not in LIST_KEYS:
            raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, not {page_size!r}")
        return paginate(self._lists[kind], LIST_KEYS[kind], cursor, page_size)

    def collisions(self) -> list[Collision]:
        """Every current collision, by kind then key."""
        return [self._collisions[kind][key] for kind in KINDS
                for key in sorted(self._collisions[kind])]

    # -- lookups -------------------------------------------------------------------------

    def tool(self, name: str) -> Entry | None:
        """The visible tool with public name `name`."""
        try:
            return self._tools.get(name)
        except TypeError:  # an unhashable name from a malformed request
            return None

    def prompt(self, name: str) -> Entry | None:
        """The visible prompt with public name `name`."""
        return self._lookup("prompt", name)

    def template(self, uri_template: str) -> Entry | None:
        """The visible resource template whose `uriTemplate` is exactly `uri_template`."""
        return self._lookup("template", uri_template)

    def resource(self, uri: str) -> Entry | None:
        """Who serves `uri`: the resource with that exact URI, else the first visible template
        (in list order) that matches it, whose Entry is returned."""
        entry = self._lookup("resource", uri)
        if entry is not None or not isinstance(uri, str) or len(uri) > MAX_KEY_LENGTH:
            return entry
        for pattern, template in self._matchers:
            if pattern.fullmatch(uri) is not None:
                return template
        return None

    def owner_of_prefix(self, name: str) -> str | None:
        """The upstream whose (non-empty) prefix starts `name`, the longest prefix first."""
        if not isinstance(name, str):
            return None
        for prefix, upstream in self._prefix_index:
            if name.startswith(prefix):
                return upstream
        return None

    # -- internals -----------------------------------------------------------------------

    def _lookup(self, kind: Kind, key: str) -> Entry | None:
        try:
            return self._entries[kind].get(key)
        except TypeError:  # unhashable key from a malformed request
            return None

    def _rank_of(self, upstream: str) -> tuple[int, str]:
        # Upstreams missing from `order` come after the configured ones, by name.
        return self._rank.get(upstream, len(self._rank)), upstream

    def _set_prefix(self, upstream: str, prefix: str) -> None:
        _check_names(upstream, prefix)
        self._prefixes[upstream] = prefix
        self._prefix_index = sorted(
            ((p, u) for u, p in self._prefixes.items() if p),
            key=lambda item: (-len(item[0]), self._rank_of(item[1])))

    def _build(self, upstream: str, kind: Kind, items: Iterable[Any],
               reasons: list[str]) -> dict[str, _Held]:
        """The upstream's valid items of one kind, by public key; the others go to `reasons`."""
        prefix = self._prefixes[upstream]
        previous = self._items_of(upstream, kind)
        built: dict[str, _Held] = {}
        for index, item in enumerate(items):
            problem, held = _validate(kind, upstream, prefix, item, previous)
            if held is not None and held.entry.key in built:
                problem, held = f"duplicate {_KEY_FIELD[kind]} {held.entry.key[:80]!r}", None
            if held is None:
                reasons.append(f"{kind} #{index}: {problem}")
            else:
                built[held.entry.key] = held
        return built

    def _items_of(self, upstream: str, kind: Kind) -> dict[str, _Held]:
        return {key: holders[upstream] for key, holders in self._held[kind].items()
                if upstream in holders}

    def _apply(self, upstream: str, new: dict[Kind, dict[str, _Held]]) -> set[Kind]:
        """Install `upstream`'s new items per kind; re-merge the keys they touch."""
        changed: set[Kind] = set()
        for kind, items in new.items():
            held = self._held[kind]
            touched = {key for key, holders in held.items() if upstream in holders}
            touched.update(items)
            visible_changed = order_changed = False
            for key in touched:
                holders = held.setdefault(key, {})
                if key in items:
                    holders[upstream] = items[key]
                else:
                    holders.pop(upstream, None)
                before = self._winners[kind].get(key)
                after = self._merge(kind, key, holders)
                if after is not before:
                    order_changed = True
                    if before is None or after is None or after.fingerprint != before.fingerprint:
                        visible_changed = True
            if order_changed:
                self._rebuild(kind)
            if visible_changed:
                changed.add(kind)
        if changed:
            self.version += 1
        return changed

    def _merge(self, kind: Kind, key: str, holders: dict[str, _Held]) -> _Held | None:
        """Pick the winner for one key, record (and log once) any collision, return it."""
        if not holders:
            del self._held[kind][key]
            self._winners[kind].pop(key, None)
            self._entries[kind].pop(key, None)
            self._collisions[kind].pop(key, None)
            return None
        names = tuple(sorted(holders, key=self._rank_of))
        winner = holders[names[0]]
        self._winners[kind][key] = winner
        self._entries[kind][key] = winner.entry
        if len(names) == 1:
            self._collisions[kind].pop(key, None)
            return winner
        collision = Collision(kind, key, names, names[0])
        if self._collisions[kind].get(key) != collision:
            logger.warning("catalogue: %s %r is offered by upstreams %s; %r wins (first in "
                           "configuration order), the others' are hidden: give them distinct "
                           "prefixes to expose both", kind, key[:200], ", ".join(map(repr, names)),
                           names[0])
        self._collisions[kind][key] = collision
        return winner

    def _rebuild(self, kind: Kind) -> None:
        winners = self._winners[kind]
        ordered = [winners[key] for key in sorted(winners)]
        self._lists[kind] = [held.entry.definition for held in ordered]
        if kind == "template":
            self._matchers = [(held.pattern, held.entry) for held in ordered
                              if held.pattern is not None]


def _check_names(upstream: object, prefix: object = "") -> None:
    if not isinstance(upstream, str) or not upstream:
        raise TypeError(f"upstream must be a non-empty string, not {upstream!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix of upstream {upstream!r} must be a string, "
                        f"not {type(prefix).__name__}")


def _validate(kind: Kind, upstream: str, prefix: str, item: Any,
          previous: dict[str, _Held]) -> tuple[str, _Held | None]:
    """Validate one item; (why it is malformed, None) or ("", its held form)."""
    if not isinstance(item, dict):
        return f"not an object but {type(item).__name__}", None
    field = _KEY_FIELD[kind]
    for required in dict.fromkeys((field, "name")):
        value = item.get(required)
        if not isinstance(value, str) or not value:
            return f"no string {required!r}", None
    original = item[field]
    public_name = prefix + item["name"]
    key = public_name if field == "name" else original
    if len(key) > MAX_KEY_LENGTH or len(public_name) > MAX_KEY_LENGTH:
        return f"{field} longer than {MAX_KEY_LENGTH} characters", None
    if kind == "tool" and not isinstance(item.get("inputSchema"), dict):
        return f"tool {original[:80]!r} has no object 'inputSchema'", None
    definition = {**item, "name": public_name}
    try:
        fingerprint = _fingerprint(definition)
    except (TypeError, ValueError, RecursionError):
        return f"{field} {original[:80]!r} is not plain JSON", None
    old = previous.get(key)
    if old is not None and old.fingerprint == fingerprint:
        return "", old  # unchanged: keep the same objects, so nothing downstream churns
    pattern = None
    if kind == "template":
        try:
            pattern = compile_template(original)
        except InvalidTemplate as exc:
            return exc.reason, None
    entry = Entry(kind, key, upstream, original, definition)
    return "", _Held(entry, fingerprint, pattern)


def _fingerprint(definition: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Integers past 64 bits (from a non-orjson decoder) and the like: the slow, exact way.
        return json.dumps(definition, sort_keys=True, allow_nan=False).encode()
