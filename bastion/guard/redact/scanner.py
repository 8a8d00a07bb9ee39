"""One scan of a text for every enabled detector: passes, candidates, checks, merged findings.

The detectors (bastion.guard.redact.detectors) that share a source view and an anchor byte
become one regex, `anchor(?:(?P<d0>...)|(?P<d1>...))`, so a default configuration runs about a
dozen passes whose cost is one quick walk over the bytes each: a literal first byte lets
`re` skip to candidates in C. Custom patterns run on the `str` as written.

Findings that overlap are merged into one redaction (the earliest, then the best ranked, names
it): a partial overlap must never leave part of a secret behind.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.guard.redact.detectors import CUSTOM, Detector, Source


def _shape_table() -> bytes:
    table = bytearray(b"~" * 256)
    for code in range(256):
        char = bytes([code])
        if char.isdigit():
            table[code] = ord("0")
        elif char.isupper():
            table[code] = ord("A")
        elif char.islower():
            table[code] = ord("a")
    # Card numbers group by spaces or dashes alike; `.` and `_` keep addresses and ids apart.
    table[ord(" ")] = table[ord("-")] = ord(" ")
    table[ord(".")], table[ord("_")] = ord("."), ord("_")
    return bytes(table)


_SHAPE = _shape_table()
#: How far back an `extend` pattern may reach (an email's local part is at most 64 bytes).
_EXTEND_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Finding:
    """A span of the scanned text to redact, and the kind of thing it is."""

    start: int
    end: int
    kind: str
    rank: int


class Views:
    """The text as bytes of the same length: `raw` (non-ASCII as `?`), and `lower` and `shape`
    (see the detectors module), each made on first use."""

    __slots__ = ("_lower", "_shape", "raw")

    def __init__(self, text: str) -> None:
        # `replace` keeps one byte per character, so offsets are the same in all views.
        self.raw = text.encode("ascii", "replace")
        self._lower: bytes | None = None
        self._shape: bytes | None = None

    def of(self, source: Source) -> bytes:
        if source == "raw":
            return self.raw
        if source == "lower":
            if self._lower is None:
                self._lower = self.raw.lower()
            return self._lower
        if self._shape is None:
            self._shape = self.raw.translate(_SHAPE)
        return self._shape


@dataclass(frozen=True, slots=True)
class _Pass:
    source: Source
    anchor: bytes
    regex: re.Pattern[bytes]
    detectors: tuple[Detector, ...]
    #: Per detector, its value groups as renamed in the combined regex.
    values: tuple[tuple[str, ...], ...]


_GROUP = re.compile(rb"\(\?P([<=])([A-Za-z_][A-Za-z0-9_]*)")


def _build_pass(source: Source, anchor: bytes, detectors: Sequence[Detector]) -> _Pass:
    # Group names must be unique in one regex: suffix each detector's with its index.
    branches = []
    for index, detector in enumerate(detectors):
        body = _GROUP.sub(rb"(?P\1\2_%d" % index, detector.pattern)
        branches.append(b"(?P<d%d>%s)" % (index, body))
    regex = re.compile(re.escape(anchor) + b"(?:" + b"|".join(branches) + b")")
    values = tuple(tuple(f"{name}_{index}" for name in detector.value)
                   for index, detector in enumerate(detectors))
    return _Pass(source, anchor, regex, tuple(detectors), values)


def _accept(detector: Detector, raw: bytes, start: int, end: int, whole_token: bool
            ) -> tuple[int, int] | None:
    """The span to redact of a candidate, after its `extend` and `check`; None to drop it."""
    if detector.extend is not None:
        head = detector.extend.search(raw, max(0, start - _EXTEND_WINDOW), start)
        if head is None:
            return None
        if whole_token:
            start = head.start()
    if detector.check is not None:
        length = detector.check(raw[start:end])
        if length is None:
            return None
        end = start + length
    return start, end


class Scanner:
    """Finds what `detectors` and the `custom` (name, regex) patterns describe in a text."""

    __slots__ = ("_custom", "_needles", "_passes")

    def __init__(self, detectors: Sequence[Detector],
                 custom: Sequence[tuple[str, re.Pattern[str]]] = ()) -> None:
        groups: dict[tuple[Source, bytes], list[Detector]] = {}
        needles: list[Detector] = []
        for detector in detectors:
            if detector.needles:
                needles.append(detector)
            else:
                groups.setdefault((detector.source, detector.anchor), []).append(detector)
        self._passes = tuple(_build_pass(source, anchor, members)
                             for (source, anchor), members in groups.items())
        self._needles = tuple((detector, re.compile(detector.pattern)) for detector in needles)
        self._custom = tuple(custom)

    @property
    def empty(self) -> bool:
        return not (self._passes or self._needles or self._custom)

    def scan(self, text: str) -> list[Finding]:
        """The merged findings in `text`, in order, none overlapping another."""
        if not text:
            return []
        views = Views(text)
        found: list[Finding] = []
        for scan_pass in self._passes:
            self._run_pass(scan_pass, views, found)
        for detector, verify in self._needles:
            self._run_needles(detector, verify, views, found)
        for name, regex in self._custom:
            found.extend(Finding(match.start(), match.end(), name, CUSTOM)
                         for match in regex.finditer(text) if match.end() > match.start())
        return merge(found)

    @staticmethod
    def _run_pass(scan_pass: _Pass, views: Views, found: list[Finding]) -> None:
        text, raw = views.of(scan_pass.source), views.raw
        # memchr finds an absent anchor byte 25 times faster than the regex scan would.
        position = text.find(scan_pass.anchor)
        if position < 0:
            return
        search = scan_pass.regex.search
        while (match := search(text, position)) is not None:
            index = int(match.lastgroup[1:])  # type: ignore[index]  # always a "dN" group
            detector = scan_pass.detectors[index]
            for group in scan_pass.values[index]:
                if match.start(group) >= 0:
                    span, whole_token = match.span(group), False
                    break
            else:
                span, whole_token = (match.start() - detector.back, match.end()), True
            accepted = _accept(detector, raw, span[0], span[1], whole_token)
            if accepted is None:
                # Past a rejected value (`token=token=token=...` must stay linear); a token
                # proper may hide another, so only its first byte is passed.
                position = match.start() + 1 if whole_token else max(span[1],
                                                                      match.start() + 1)
                continue
            found.append(Finding(accepted[0], accepted[1], detector.kind, detector.rank))
            position = max(accepted[1], match.start() + 1)

    @staticmethod
    def _run_needles(detector: Detector, verify: re.Pattern[bytes], views: Views,
                     found: list[Finding]) -> None:
        shape, raw = views.of(detector.source), views.raw
        for needle in detector.needles:
            position = 0
            while (hit := shape.find(needle, position)) >= 0:
                match = verify.match(raw, hit)
                accepted = None if match is None else _accept(
                    detector, raw, match.start(), match.end(), True)
                if accepted is None:
                    # A token cannot start inside the needle: its left edge would touch digits.
                    position = hit + len(needle)
                    continue
                found.append(Finding(accepted[0], accepted[1], detector.kind, detector.rank))
                position = accepted[1]


def merge(findings: list[Finding]) -> list[Finding]:
    """Sorted findings with every overlap joined into one (named by the earliest start, then
    the lowest rank)."""
    if len(findings) < 2:
        return findings
    findings.sort(key=lambda f: (f.start, f.rank, -f.end))
    merged = [findings[0]]
    for finding in findings[1:]:
        last = merged[-1]
        if finding.start < last.end:
            if finding.end > last.end:
                merged[-1] = Finding(last.start, finding.end, last.kind, last.rank)
            continue
        merged.append(finding)
    return merged
