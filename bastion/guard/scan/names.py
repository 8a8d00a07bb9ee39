"""The known tool names, indexed once per Scanner, so cross-server checks cost a lookup.

The gateway builds one Scanner with every tool of every upstream and scans each of them:
comparing each name with all others would be quadratic (5,000 tools: tens of seconds).
Here each known name's skeleton, content words and lower-cased form are computed once and
put in dictionaries, so a name's collisions, look-alikes and overlaps, and "is this word
another server's tool?", are answered by hashing.

Gateway public names carry their upstream's prefix (`edr__isolate_host`); the part after
each `__` is indexed too, so a description that names the bare tool (`isolate_host`) is
seen as referring to that upstream, unless the scanning server has a tool of that name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache

from bastion.guard.scan.confusables import skeleton
from bastion.guard.scan.normalize import words_of_identifier

#: The separator between a gateway prefix and the upstream's own tool name.
PREFIX_SEPARATOR = "__"

_VERB_SYNONYMS = {"get": "get", "fetch": "get", "retrieve": "get", "read": "get", "load": "get",
                  "list": "get", "query": "get", "find": "get", "lookup": "get", "search": "get",
                  "obtain": "get", "pull": "get", "show": "get"}
_PROMO_WORDS = frozenset({"best", "premium", "ultimate", "pro", "advanced", "super", "top",
                          "official", "enhanced", "better", "plus", "new", "secure", "real",
                          "true", "v2", "fast", "smart"})

#: (position in known_tools, name, upstream): the position keeps findings in the order a
#: plain loop over known_tools would give them.
Known = tuple[int, str, str]


skeleton_of = lru_cache(maxsize=8192)(skeleton)


@lru_cache(maxsize=8192)
def content_tokens(name: str) -> frozenset[str]:
    """The words of a name with verb synonyms merged and promotional words dropped:
    `fetch_historical_stock_prices` and `Get_Stock_HistoricalPrices` compare equal."""
    words = words_of_identifier(name).split()
    out = {_VERB_SYNONYMS.get(w, w) for w in words if w not in _PROMO_WORDS}
    out.discard("for")
    return frozenset(out) if len(out) >= 2 else frozenset()


def bare_names(name: str) -> list[str]:
    """The names after each `__` of a prefixed name, when they read as identifiers with a
    separator (`edr__isolate_host` -> `isolate_host`); one-word bare names (`search`) are
    ordinary words in prose and are left out."""
    out = []
    start = name.find(PREFIX_SEPARATOR)
    while start != -1:
        bare = name[start + len(PREFIX_SEPARATOR):].strip("_")
        if len(bare) >= 3 and any(c in bare for c in "_-."):
            out.append(bare)
        start = name.find(PREFIX_SEPARATOR, start + len(PREFIX_SEPARATOR))
    return out


class NameIndex:
    """`known_tools` (public name -> upstream) with its lookups precomputed."""

    def __init__(self, known_tools: Mapping[str, str]) -> None:
        self.known: dict[str, str] = dict(known_tools)
        self._by_skeleton: dict[str, list[Known]] = {}
        self._by_tokens: dict[frozenset[str], list[Known]] = {}
        #: lower-cased public name -> the upstreams that offer it, in order
        self._full: dict[str, tuple[str, ...]] = {}
        #: lower-cased bare name (after a prefix) -> the upstreams that offer it
        self._bare: dict[str, tuple[str, ...]] = {}
        for i, (name, upstream) in enumerate(self.known.items()):
            known = (i, name, upstream)
            self._by_skeleton.setdefault(skeleton_of(name), []).append(known)
            tokens = content_tokens(name)
            if tokens:
                self._by_tokens.setdefault(tokens, []).append(known)
            _add(self._full, name.lower(), upstream)
            for bare in bare_names(name):
                _add(self._bare, bare.lower(), upstream)
        self._upstreams = frozenset(self.known.values())
        self._others: dict[str, OtherTools] = {}

    def __bool__(self) -> bool:
        return bool(self.known)

    def candidates(self, name: str) -> list[Known]:
        """The known names that may collide with, look like or overlap `name`, in
        known_tools order (same name, same skeleton, same content words)."""
        found: dict[int, Known] = {}
        for known in self._by_skeleton.get(skeleton_of(name), ()):  # the same name too
            found[known[0]] = known
        tokens = content_tokens(name)
        if tokens:
            for known in self._by_tokens.get(tokens, ()):
                found[known[0]] = known
        return [found[k] for k in sorted(found)]

    def others(self, server: str) -> OtherTools:
        """The lower-cased names of tools of upstreams other than `server`."""
        view = self._others.get(server)
        if view is None:
            if len(self._others) >= 4096:
                self._others.clear()
            view = self._others[server] = OtherTools(self, server)
        return view

    def other_upstream(self, key: str, server: str) -> str | None:
        """An upstream other than `server` offering the tool `key` (lower-cased), or None.
        A public name counts when any other upstream offers it; a bare name only when
        `server` offers no tool of that name itself (then it names its own tool)."""
        full = self._full.get(key)
        if full is not None:
            for upstream in full:
                if upstream != server:
                    return upstream
            return None
        bare = self._bare.get(key)
        if bare is None or server in bare:
            return None
        return bare[0]


def _add(index: dict[str, tuple[str, ...]], key: str, upstream: str) -> None:
    ups = index.get(key, ())
    if upstream not in ups:
        index[key] = (*ups, upstream)


class OtherTools(Mapping[str, str]):
    """A read-only view: lower-cased tool name -> an upstream other than `server` that
    offers it (see `NameIndex.other_upstream`)."""

    def __init__(self, index: NameIndex, server: str) -> None:
        self._index = index
        self._server = server
        self._len: int | None = None

    def __getitem__(self, key: str) -> str:
        upstream = self._index.other_upstream(key, self._server) \
            if isinstance(key, str) else None
        if upstream is None:
            raise KeyError(key)
        return upstream

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._index.other_upstream(key, self._server) \
            is not None

    def __iter__(self) -> Iterator[str]:
        index = self._index
        for key in (*index._full, *(k for k in index._bare if k not in index._full)):
            if index.other_upstream(key, self._server) is not None:
                yield key

    def __len__(self) -> int:
        if self._len is None:  # O(names) once; truth needs no count (see __bool__)
            self._len = sum(1 for _ in self)
        return self._len

    def __bool__(self) -> bool:
        # Another upstream offers at least one public name, which is then in the view.
        upstreams = self._index._upstreams
        return len(upstreams) > 1 or (bool(upstreams) and self._server not in upstreams)
