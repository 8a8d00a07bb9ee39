"""The redactor: secrets and personal data out of tool results and arguments, with a report.

`Redactor(config)` is built once from `redaction:` (bastion.config.redaction) and is safe to
share between tasks: it holds compiled patterns and no per-call state.

- `redact_result(result)` walks a CallToolResult: `content[]` text, embedded resource text,
  `structuredContent` strings at any depth, error text. Binary payloads are not text and are
  left alone (`data` of image and audio blocks, `blob` of resources).
- `redact_arguments(arguments)` walks every string of a tool call's arguments.
- `redact_text(text)` is the same for one string.

Each returns the redacted value and a `RedactionReport`: counts per kind and the JSON Pointers
of the strings that changed, never the values, so the report can go into the audit record.
A clean input comes back as the very same object, with no copy made (the hot path); a dirty
one as a copy in which only the containers on the way to a changed string are new.

All the strings of an input are joined (NUL-separated) and scanned in one go, so a result of
ten thousand small strings costs what one string of the same total size costs. A structured
field whose name says it holds a secret (`"password"`, `"api_key"`, `"client_secret"`) is
replaced whole when its value is not a placeholder. Dictionary keys and numbers are not
rewritten.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bastion.config.redaction import RedactionConfig
from bastion.guard.redact import checks
from bastion.guard.redact.detectors import KEYWORDS, PII_DETECTORS, SECRETS, Detector
from bastion.guard.redact.scanner import Finding, Scanner

#: The report lists at most this many paths (and says when it left some out).
MAX_REPORT_PATHS = 64
#: Deeper nesting is refused: JSON from a peer never needs it, and a walk must end.
MAX_DEPTH = 256
_SEPARATOR = "\x00"

Path = tuple[str | int, ...]
Tree = TypeVar("Tree", dict[str, Any], list[Any])


class RedactionLimitError(ValueError):
    """The input is too large or too deep to scan; refuse it rather than pass it unscanned."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"cannot redact: the {what} is {size}, over the limit of {limit}, "
                         "so the message is refused rather than passed on unscanned")
        self.what, self.size, self.limit = what, size, limit


@dataclass(frozen=True, slots=True)
class RedactionReport:
    """What a redaction removed: how many of each kind, and where (JSON Pointers)."""

    counts: Mapping[str, int] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    #: Whether more strings changed than `paths` lists (MAX_REPORT_PATHS).
    truncated: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def for_audit(self) -> dict[str, Any]:
        """The report as the audit record stores it (no redacted value is ever in it)."""
        record: dict[str, Any] = {"redactions": self.total, "kinds": dict(sorted(
            self.counts.items())), "paths": list(self.paths)}
        if self.truncated:
            record["paths_truncated"] = True
        return record


#: The report of an input with nothing to redact (shared: reports are immutable).
NOTHING = RedactionReport()


def json_pointer(path: Path) -> str:
    """RFC 6901: `/content/0/text`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _field_kinds() -> list[tuple[str, re.Pattern[str], re.Pattern[str] | None]]:
    # The generic rule's keyword families, as names of structured fields.
    rules = []
    for kind, _anchor, keywords, excluded in KEYWORDS:
        ends = re.compile("(?:" + "|".join(re.escape(k.decode()) for k in keywords) + ")$")
        unless = (re.compile("(?:" + "|".join(re.escape(n.decode()) for n in excluded) + ")$")
                  if excluded else None)
        rules.append((kind, ends, unless))
    return rules


_FIELD_KINDS = _field_kinds()


def secret_field_kind(name: str) -> str | None:
    """The secret kind a structured field's name announces (`accessToken` -> token), if any."""
    lowered = name.lower()
    for kind, ends, unless in _FIELD_KINDS:
        if ends.search(lowered) and not (unless and unless.search(lowered)):
            return kind
    return None


#: A field's secret kind, by name, as learnt (field names repeat: rows of the same object).
_FIELD_CACHE: dict[Any, str | None] = {}
_FIELD_CACHE_SIZE = 4096
_UNKNOWN = object()
#: Roles of a container in a result: content blocks hold binary payloads under known keys.
_PLAIN, _CONTENT, _BLOCK = 0, 1, 2
_CONTENT_KEYS = ("content", "contents")


def _learn_field(name: Any) -> str | None:
    if len(_FIELD_CACHE) >= _FIELD_CACHE_SIZE:
        _FIELD_CACHE.clear()
    kind = _FIELD_CACHE[name] = secret_field_kind(name) if isinstance(name, str) else None
    return kind


def _binary_keys(block: dict[str, Any]) -> tuple[str, ...]:
    # Base64 payloads of content blocks and resource contents: data, not text.
    if block.get("type") in ("image", "audio"):
        return ("data",)
    return ("blob",) if "blob" in block else ()


class _Walk:
    """The strings of a JSON tree in a fixed order; with `track`, the path of each.

    A clean input is walked once without paths (the hot path builds no tuples); a dirty one is
    walked again with them, in the same order. Fields whose name announces a secret are set
    apart (`fields`) when their value looks like one. With `binary`, the tree is a result:
    `data` of image and audio blocks and `blob` of resource contents are skipped."""

    __slots__ = ("fields", "paths", "strings")

    def __init__(self, root: Any, *, binary: bool, fields: bool, track: bool) -> None:
        self.strings: list[str] = []
        self.paths: list[Path] = []
        self.fields: list[tuple[Path, str]] = []
        # Hot loop (a result can hold tens of thousands of strings): local names, type() is.
        strings, paths, field_cache = self.strings, self.paths, _FIELD_CACHE
        stack: list[tuple[Any, Path, int, int]] = [(root, (), _PLAIN, 1)]
        while stack:
            node, path, role, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise RedactionLimitError("nesting depth", depth, MAX_DEPTH)
            if type(node) is dict:
                skip = _binary_keys(node) if role == _BLOCK else ()
                for key, value in node.items():
                    kind_of_value = type(value)
                    if kind_of_value is str:
                        if skip and key in skip:
                            continue
                        if fields:
                            kind = field_cache.get(key, _UNKNOWN)
                            if kind is _UNKNOWN:
                                kind = _learn_field(key)
                            if kind is not None and checks.field_looks_secret(
                                    value.encode("ascii", "replace")):
                                self.fields.append(((*path, key) if track else (), kind))
                                continue
                        strings.append(value)
                        if track:
                            paths.append((*path, key))
                    elif kind_of_value is dict or kind_of_value is list:
                        # `content` is a list of blocks (tool results) or one block (prompt
                        # messages); a block's `resource` holds resource contents.
                        child = (_PLAIN if not binary else
                                 (_CONTENT if kind_of_value is list else _BLOCK)
                                 if key in _CONTENT_KEYS else
                                 _BLOCK if role == _BLOCK and key == "resource" else _PLAIN)
                        stack.append((value, (*path, key) if track else (), child, depth + 1))
            else:
                child = _BLOCK if role == _CONTENT else _PLAIN
                for index, value in enumerate(node):
                    kind_of_value = type(value)
                    if kind_of_value is str:
                        strings.append(value)
                        if track:
                            paths.append((*path, index))
                    elif kind_of_value is dict or kind_of_value is list:
                        stack.append((value, (*path, index) if track else (), child, depth + 1))


def _copy_on_write(root: Tree, changes: dict[Path, str]) -> Tree:
    """A copy of `root` with `changes` applied, new only along the changed paths."""
    new_root: Any = dict(root) if isinstance(root, dict) else list(root)
    fresh = {id(new_root)}
    for path, value in changes.items():
        node = new_root
        for key in path[:-1]:
            child = node[key]
            if id(child) not in fresh:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[key] = child
                fresh.add(id(child))
            node = child
        node[path[-1]] = value
    return new_root


class Redactor:
    """Redacts what `config` enables (see the module doc)."""

    __slots__ = ("_fields", "_replacements", "max_chars", "scanner")

    def __init__(self, config: RedactionConfig | None = None) -> None:
        config = config if config is not None else RedactionConfig()
        detectors: list[Detector] = list(SECRETS) if config.secrets else []
        detectors.extend(PII_DETECTORS[kind] for kind in config.pii)
        custom = [(pattern.name, re.compile(pattern.regex)) for pattern in config.patterns]
        self.scanner = Scanner(detectors, custom)
        self.max_chars = config.max_chars
        kinds = {detector.kind for detector in detectors} | {name for name, _ in custom}
        self._replacements = {kind: config.replacement.replace("{kind}", kind)
                              for kind in kinds | {kind for kind, *_ in KEYWORDS}}
        # Secret-named fields belong to the secret rules: off with them.
        self._fields = config.secrets

    @property
    def active(self) -> bool:
        """Whether anything is looked for at all (a stage can skip itself when not)."""
        return not self.scanner.empty

    def replacement(self, kind: str) -> str:
        """The text that stands in for a redacted `kind`."""
        return self._replacements[kind]

    # -- entry points ---------------------------------------------------------------------

    def redact_text(self, text: str) -> tuple[str, RedactionReport]:
        """`text` with what the detectors find replaced; the same object when clean."""
        if not isinstance(text, str):
            raise TypeError(f"redact_text expects a str, got {type(text).__name__}")
        self._check_size(len(text))
        findings = self.scanner.scan(text) if self.active else []
        if not findings:
            return text, NOTHING
        counts = Counter(finding.kind for finding in findings)
        return self._rewrite(text, findings), RedactionReport(dict(counts), ("",))

    def redact_result(self, result: dict[str, Any]) -> tuple[dict[str, Any], RedactionReport]:
        """A CallToolResult (or any result object) redacted; the same object when clean."""
        if not isinstance(result, dict):
            raise TypeError(f"redact_result expects a dict (a result object), got "
                            f"{type(result).__name__}")
        return self._redact_tree(result, binary=True)

    def redact_arguments(self, arguments: dict[str, Any]
                         ) -> tuple[dict[str, Any], RedactionReport]:
        """A tool call's arguments redacted (every string, at any depth)."""
        if not isinstance(arguments, dict):
            raise TypeError(f"redact_arguments expects a dict, got {type(arguments).__name__}")
        return self._redact_tree(arguments, binary=False)

    # -- internals -----------------------------------------------------------------------

    def _check_size(self, chars: int) -> None:
        if chars > self.max_chars:
            raise RedactionLimitError("text size in characters", chars, self.max_chars)

    def _redact_tree(self, root: Tree, *, binary: bool) -> tuple[Tree, RedactionReport]:
        if not self.active:
            return root, NOTHING
        walk = _Walk(root, binary=binary, fields=self._fields, track=False)
        joined = _SEPARATOR.join(walk.strings)
        self._check_size(len(joined))
        findings = self.scanner.scan(joined)
        if not findings and not walk.fields:
            return root, NOTHING
        walk = _Walk(root, binary=binary, fields=self._fields, track=True)
        counts: Counter[str] = Counter(finding.kind for finding in findings)
        changes: dict[Path, str] = {}
        sizes = [len(text) for text in walk.strings]
        for index, spans in _by_string(findings, sizes).items():
            changes[walk.paths[index]] = self._rewrite(walk.strings[index], spans)
        for path, kind in walk.fields:
            changes[path] = self.replacement(kind)
            counts[kind] += 1
        pointers = sorted(json_pointer(path) for path in changes)
        report = RedactionReport(dict(counts), tuple(pointers[:MAX_REPORT_PATHS]),
                                 len(pointers) > MAX_REPORT_PATHS)
        return _copy_on_write(root, changes), report

    def _rewrite(self, text: str, findings: list[Finding]) -> str:
        pieces: list[str] = []
        position = 0
        for finding in findings:
            pieces.append(text[position:finding.start])
            pieces.append(self.replacement(finding.kind))
            position = finding.end
        pieces.append(text[position:])
        return "".join(pieces)


def _by_string(findings: list[Finding], sizes: list[int]) -> dict[int, list[Finding]]:
    """The findings in a NUL-joined text, split per string, with offsets into each string.

    A finding that crosses a separator (only a custom pattern can) is cut there and redacts
    the pieces in every string it touches; it still counts once."""
    per_string: dict[int, list[Finding]] = {}
    index, start_of = 0, 0  # the string being looked at, and where it starts in the text
    for finding in findings:
        start = finding.start
        while start < finding.end:
            while start >= start_of + sizes[index]:  # past this string, or on its separator
                start_of += sizes[index] + 1
                index += 1
            begin, end = max(start, start_of), min(finding.end, start_of + sizes[index])
            if begin < end:
                per_string.setdefault(index, []).append(
                    Finding(begin - start_of, end - start_of, finding.kind, finding.rank))
            start = start_of + sizes[index]
    return per_string
