"""Unicode forensics on raw text, before any normalisation, and the "strip" action.

Finds the channels that hide text from a person but not from a model: Tag characters
(decoded, so the hidden message is shown), zero-width and bidi controls, variation-selector
smuggling, private-use and control characters, ANSI/terminal escapes, invisible fillers,
and mixed-script (confusable) identifiers. Legitimate uses are allowed: emoji ZWJ
sequences, subdivision flags (which are made of Tag characters), VS15/VS16 after an emoji,
joiners inside scripts that need them, right-to-left marks in right-to-left text, the
soft hyphen in prose, a leading byte-order mark.

Pure ASCII text (the common case) costs one C-level pass.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bastion.guard.scan.findings import Severity

H, M, L = Severity.HIGH, Severity.MEDIUM, Severity.LOW


@dataclass(frozen=True, slots=True)
class UnicodeHit:
    """One hidden-text channel found in one string."""

    code: str
    severity: Severity
    message: str
    evidence: str | None


_TAG = (0xE0000, 0xE007F)
_ZERO_WIDTH = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E})
_INVISIBLE = frozenset({0x2061, 0x2062, 0x2063, 0x2064, 0x115F, 0x1160, 0x3164, 0xFFA0,
                        0x2800, 0x17B4, 0x17B5, 0x034F, 0xFFF9, 0xFFFA, 0xFFFB,
                        *range(0x206A, 0x2070), *range(0x1D173, 0x1D17B),
                        *range(0x1BCA0, 0x1BCA4)})
_BIDI_OVERRIDE = frozenset({0x202D, 0x202E})
_BIDI_EMBED = frozenset({0x202A, 0x202B, 0x202C, 0x2066, 0x2067, 0x2068, 0x2069})
_BIDI_MARK = frozenset({0x200E, 0x200F, 0x061C})
_VS = frozenset({*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)})
_HANGUL_FILLERS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0})

# Every character any rule looks at, as one class: the regex engine finds them in C.
_SUSPECT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f"
    "\ufeff\uffa0\ufff9-\ufffb\ue000-\uf8ff\ud800-\udfff\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef"
    "\U000f0000-\U0010ffff]")
_ASCII_CONTROLS = bytes(c for c in range(128) if c < 32 and c not in (9, 10, 13)) + b"\x7f"
_ASCII_PRINTABLE = bytes(c for c in range(128) if c not in _ASCII_CONTROLS)
_ASCII_BYTES = bytes(range(128))
_NOT_ASCII_CONTROL = bytes(c for c in range(256) if c not in _ASCII_CONTROLS)
_C1 = re.compile("[\x80-\x9f]")

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
                   r"|\x1b\][^\x07\x1b]{0,2000}(?:\x07|\x1b\\)?|\x1b[P^_X][^\x1b]{0,2000}"
                   r"|\x1b[@-Z\\-_]")
# SGR 8 conceals, K/J erase, cursor moves rewrite what was shown, OSC sets titles,
# hyperlinks and the clipboard: these deceive; colours alone do not.
_ANSI_DECEPTIVE = re.compile(r"\x1b\[(?:[0-9;]*;)?8(?:;[0-9;]*)?m"
                             r"|[\x1b\x9b]\[?[0-9;]*[ABCDEFGHJKSTfsu]|\x1b\]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff"
                  "\U0001e800-\U0001efff]")
_WHITESPACE_RUN = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]{80,}")
_VERTICAL_RUN = re.compile(r"\n(?:[ \t]*\r?\n){11,}")
_SPACES = " " * 80
_NEWLINES = b"\n" * 12
_WIDE_BLANKS = re.compile("[\u00a0\u2000-\u200a\u3000]{8}")


def is_emoji(cp: int) -> bool:
    """A character that starts or continues an emoji sequence (close enough for ZWJ/VS)."""
    return (0x1F000 <= cp <= 0x1FAFF or 0x2600 <= cp <= 0x27BF or 0x2300 <= cp <= 0x23FF
            or 0x2B00 <= cp <= 0x2BFF or 0x2190 <= cp <= 0x21FF or 0x25A0 <= cp <= 0x25FF
            or cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D,
                      0x3297, 0x3299, 0x20E3, 0x24C2, 0x2934, 0x2935))


def _needs_joiners(ch: str) -> bool:
    """Letters of scripts where ZWJ/ZWNJ shape text (Arabic, Indic, Persian ...)."""
    return (ord(ch) >= 0x0590 and not 0x1F000 <= ord(ch) <= 0x1FAFF
            and (ch.isalpha() or unicodedata.category(ch) in ("Mn", "Mc")))


def decode_tags(run: str) -> str:
    """The ASCII a run of Tag characters spells (U+E0000 + ord(c))."""
    return "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)


def decode_selectors(run: str) -> bytes:
    """The bytes a run of variation selectors carries (VS1-16 = 0-15, VS17-256 = 16-255)."""
    out = bytearray()
    for c in run:
        cp = ord(c)
        out.append(cp - 0xFE00 if cp < 0xFE10 else cp - 0xE0100 + 16)
    return bytes(out)


def visible(text: str, limit: int = 200) -> str:
    """`text` with every invisible or control character written as \\uXXXX (for evidence)."""
    text = text[:limit]
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if c in "\n\t" or (c.isprintable() and not _SUSPECT.match(c))
                   else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                   for c in text)


def scan_text(text: str, *, context: bool = False) -> list[UnicodeHit]:
    """The hidden-text channels in one raw string.

    `context` is True for data the model reads (results, resource contents): there,
    terminal colours, stray zero-width spaces and private-use glyphs are common in
    honest output and count for less.
    """
    hits: list[UnicodeHit] = []
    if text.isascii():
        raw = text.encode("ascii")
        if raw.translate(None, _ASCII_PRINTABLE):
            _controls(text, hits, context)
        return _padding(text, hits, context, raw=raw)
    classes: set[str] = set()
    # In C: the ASCII controls, and the non-ASCII characters alone (deleting ASCII bytes
    # from UTF-8 leaves whole sequences); only when one of those is suspect is the text
    # searched position by position.
    raw = text.encode("utf-8", "surrogatepass")
    non_ascii = raw.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")
    if raw.translate(None, _NOT_ASCII_CONTROL) or _C1.search(non_ascii):
        _controls(text, hits, context)
    if _SUSPECT.search(non_ascii):
        _classify(text, list(_SUSPECT.finditer(text)), hits, classes, context)
    if len(text) <= 20_000 and not context:
        _unassigned(text, hits)
    if len({h.code for h in hits if h.severity >= L}) >= 3:
        hits.append(UnicodeHit("E-HU01.multi", H, "three or more kinds of hidden characters "
                               "in one string: this is deliberate concealment; remove them",
                               None))
    # Wide blanks are non-ASCII: a run of them in `text` is a run in `non_ascii` too.
    return _padding(text, hits, context, wide=bool(_WIDE_BLANKS.search(non_ascii)), raw=raw)


def _padding(text: str, hits: list[UnicodeHit], context: bool, wide: bool = False,
             raw: bytes | None = None) -> list[UnicodeHit]:
    """Long runs of blanks that push the text after them out of view. Literal searches
    first: a regular expression over every space of a large text is slow. `wide`: the
    text may hold a run of non-ASCII blanks (the caller checked its non-ASCII part); `raw`:
    the text encoded as UTF-8, when the caller has it."""
    if len(text) < 80:
        return hits
    end = -1
    start = text.find(_SPACES)
    if start != -1:
        end = start + 80
        while end < len(text) and text[end] == " ":
            end += 1
    elif ("\n\n" in text or "\n \n" in text or "\n\t\n" in text) and (
            # A run of blank lines is twelve newlines in a row once blanks are deleted
            # (in C, on the encoded text); only then is it looked for.
            raw is None or _NEWLINES in raw.translate(None, b" \t\r")):
        m = _VERTICAL_RUN.search(text)
        if m:
            start, end = m.start(), m.end()
    if end == -1 and wide and _WIDE_BLANKS.search(text):
        m = _WHITESPACE_RUN.search(text)
        if m:
            start, end = m.start(), m.end()
    if end != -1:
        after = text[end:end + 80].strip()
        if after:
            hits.append(UnicodeHit("E-HU01.padding", L if context else M,
                                   f"a run of {end - start} blank characters pushes the text "
                                   "after it out of view", visible(after)))
    return hits


def _controls(text: str, hits: list[UnicodeHit], context: bool) -> None:
    deceptive = plain = 0
    first = None
    for m in _ANSI.finditer(text):
        first = first or m
        if _ANSI_DECEPTIVE.match(m.group()):
            deceptive += 1
        else:
            plain += 1
    if deceptive:
        sev = M if context and "\x1b[8" not in text and "\x1b]52" not in text else H
        hits.append(UnicodeHit("E-HU01.ansi", sev, f"{deceptive} terminal escape sequence(s) "
                               "that hide, erase or rewrite text on screen; strip them",
                               visible(text[first.start():first.start() + 160]) if first
                               else None))
    elif plain and not context:
        hits.append(UnicodeHit("E-HU01.ansi", M, "terminal colour escapes in metadata; "
                               "strip them", visible(text[first.start():first.start() + 80])
                               if first else None))
    others = _CONTROL.findall(_ANSI.sub("", text))
    if others:
        hits.append(UnicodeHit("E-HU01.control", L if context else M,
                               f"{len(others)} control character(s) "
                               f"({', '.join(sorted({f'U+{ord(c):04X}' for c in others})[:5])})",
                               None))


def _classify(text: str, matches: list[re.Match[str]], hits: list[UnicodeHit],
              classes: set[str], context: bool) -> None:
    counts: dict[str, int] = {}
    evidence: dict[str, str] = {}
    zw_in_word = 0
    has_rtl = bool(_RTL.search(text))
    i = 0
    while i < len(matches):
        m = matches[i]
        pos, cp = m.start(), ord(m.group())
        if _TAG[0] <= cp <= _TAG[1]:
            j = i
            while j + 1 < len(matches) and matches[j + 1].start() == matches[j].start() + 1 \
                    and _TAG[0] <= ord(matches[j + 1].group()) <= _TAG[1]:
                j += 1
            run = text[pos:matches[j].start() + 1]
            if not _is_flag(text, pos, run):
                _tag_hit(run, hits)
            i = j + 1
            continue
        if cp in _VS:
            j = i
            while j + 1 < len(matches) and matches[j + 1].start() == matches[j].start() + 1 \
                    and ord(matches[j + 1].group()) in _VS:
                j += 1
            run = text[pos:matches[j].start() + 1]
            _selector_hit(text, pos, run, hits, context)
            i = j + 1
            continue
        i += 1
        kind = _kind(text, pos, cp, has_rtl)
        if kind is None:
            continue
        if kind == "zero-width" and 0 < pos < len(text) - 1 and text[pos - 1].isascii() \
                and text[pos - 1].isalpha() and text[pos + 1].isascii() \
                and text[pos + 1].isalpha():
            zw_in_word += 1
        counts[kind] = counts.get(kind, 0) + 1
        evidence.setdefault(kind, visible(text[max(0, pos - 20):pos + 40]))
    for kind, n in counts.items():
        classes.add(kind)
        hits.append(_hit_for(kind, n, evidence[kind], context, zw_in_word, has_rtl))


def _kind(text: str, pos: int, cp: int, has_rtl: bool) -> str | None:
    if cp in _ZERO_WIDTH:
        if cp == 0xFEFF and pos == 0:
            return None
        if cp in (0x200C, 0x200D) and _joiner_allowed(text, pos):
            return None
        return "zero-width"
    if cp in _BIDI_OVERRIDE:
        return "bidi-override"
    if cp in _BIDI_EMBED:
        return "bidi-isolate"
    if cp in _BIDI_MARK:
        return "bidi-mark"
    if cp == 0xAD:
        return None  # soft hyphen: honest in prose; normalisation removes it anyway
    if cp in _HANGUL_FILLERS and any(0xAC00 <= ord(c) <= 0xD7A3 for c in text):
        return None
    if cp in _INVISIBLE:
        return "invisible"
    if 0xD800 <= cp <= 0xDFFF:
        return "surrogate"
    if 0xE000 <= cp <= 0xF8FF or cp >= 0xF0000:
        return "private-use"
    if 0x180B <= cp <= 0x180F:
        return None if any(0x1820 <= ord(c) <= 0x18AF for c in text) else "invisible"
    if cp < 0x20 or 0x7F <= cp <= 0x9F:
        return None  # handled with the ANSI escapes
    if 0x2060 <= cp <= 0x206F:
        return "invisible"
    return None


def _joiner_allowed(text: str, pos: int) -> bool:
    before = _base_before(text, pos)
    after = text[pos + 1] if pos + 1 < len(text) else ""
    if before and after and is_emoji(ord(before)) and is_emoji(ord(after)):
        return True  # emoji ZWJ sequence
    return bool(before and after and _needs_joiners(before) and _needs_joiners(after))


def _base_before(text: str, pos: int) -> str:
    """The character before `pos`, skipping VS16 and skin-tone modifiers."""
    k = pos - 1
    while k >= 0 and (text[k] in "\ufe0f\ufe0e\u20e3" or 0x1F3FB <= ord(text[k]) <= 0x1F3FF):
        k -= 1
    return text[k] if k >= 0 else ""


def _is_flag(text: str, pos: int, run: str) -> bool:
    """A subdivision flag: U+1F3F4, tag letters or digits, U+E007F (cancel tag)."""
    return (pos > 0 and text[pos - 1] == "\U0001f3f4" and 2 <= len(run) <= 8
            and run[-1] == "\U000e007f"
            and all(0xE0030 <= ord(c) <= 0xE0039 or 0xE0061 <= ord(c) <= 0xE007A
                    for c in run[:-1]))


def _tag_hit(run: str, hits: list[UnicodeHit]) -> None:
    message = decode_tags(run)
    if len(message.strip()) >= 3:
        hits.append(UnicodeHit("E-HU02", Severity.CRITICAL,
                               f"{len(run)} invisible Tag characters spell a hidden message "
                               "(shown as evidence); remove them and distrust the source",
                               message))
    else:
        hits.append(UnicodeHit("E-HU01.tag", H, f"{len(run)} invisible Tag character(s) "
                               "outside an emoji flag", visible(run)))


def _selector_hit(text: str, pos: int, run: str, hits: list[UnicodeHit],
                  context: bool) -> None:
    base = text[pos - 1] if pos > 0 else ""
    if len(run) == 1 and base and _selector_allowed(base, ord(run), text, pos):
        return
    if len(run) >= 2:
        data = decode_selectors(run)
        shown = data.decode("utf-8", "replace") if data.isascii() and len(data) >= 4 \
            else data.hex(" ")
        hits.append(UnicodeHit("E-HU01.selector", H, f"a run of {len(run)} variation "
                               "selectors after " + (f"U+{ord(base):04X}" if base else
                               "the start") + " smuggles data (bytes shown)", shown[:200]))
    else:
        hits.append(UnicodeHit("E-HU01.selector", L if context else M,
                               f"a variation selector after U+{ord(base or ' '):04X}, which "
                               "takes none", visible(text[max(0, pos - 10):pos + 10])))


def _selector_allowed(base: str, cp: int, text: str, pos: int) -> bool:
    b = ord(base)
    if cp in (0xFE0E, 0xFE0F):
        if is_emoji(b) or (base in "0123456789#*" and text[pos + 1:pos + 2] == "\u20e3"):
            return True
        return b > 0x7F and unicodedata.category(base).startswith("S")
    if cp >= 0xE0100:  # ideographic variation sequences
        return unicodedata.category(base) == "Lo" and b >= 0x3400
    return b > 0x7F and unicodedata.category(base) in ("So", "Sm", "Lo", "Mn")


def _hit_for(kind: str, n: int, evidence: str, context: bool, zw_in_word: int,
             has_rtl: bool) -> UnicodeHit:
    if kind == "zero-width":
        if zw_in_word >= 2 or (zw_in_word and not context):
            return UnicodeHit("E-HU01.zero-width", H, f"{n} zero-width character(s), "
                              f"{zw_in_word} inside words: this splits keywords to slip past "
                              "filters", evidence)
        return UnicodeHit("E-HU01.zero-width", L if context else M,
                          f"{n} zero-width character(s)", evidence)
    if kind == "bidi-override":
        return UnicodeHit("E-HU01.bidi", H, f"{n} bidi override(s): the text is shown in a "
                          "different order than the model reads it (Trojan Source)", evidence)
    if kind == "bidi-isolate":
        return UnicodeHit("E-HU01.bidi", L if has_rtl else H,
                          f"{n} bidi embedding/isolate control(s)"
                          + ("" if has_rtl else " in text with no right-to-left letters"),
                          evidence)
    if kind == "bidi-mark":
        return UnicodeHit("E-HU01.bidi-mark", L if has_rtl or context else M,
                          f"{n} directional mark(s)" + ("" if has_rtl else
                                                        " in left-to-right text"), evidence)
    if kind == "private-use":
        return UnicodeHit("E-HU01.private-use", L if context else M,
                          f"{n} private-use character(s), which render as nothing or as "
                          "a font's own glyph", evidence)
    if kind == "surrogate":
        return UnicodeHit("E-HU01.surrogate", M, f"{n} lone surrogate(s): not valid text",
                          evidence)
    return UnicodeHit("E-HU01.invisible", L if context else M,
                      f"{n} invisible filler or format character(s)", evidence)


def _unassigned(text: str, hits: list[UnicodeHit]) -> None:
    odd = sorted({c for c in set(text) if ord(c) > 0x7F
                  and unicodedata.category(c) == "Cn"})
    if odd:
        hits.append(UnicodeHit("E-HU01.unassigned", M, f"{len(odd)} unassigned or "
                               "non-character code point(s)",
                               " ".join(f"U+{ord(c):04X}" for c in odd[:8])))


# -- the "strip" action --------------------------------------------------------------------

def strip_text(text: str) -> str:
    """`text` without hidden characters; emoji ZWJ sequences, flags and RTL marks in RTL
    text are kept, so honest text reads the same."""
    if text.isascii():
        if text.encode("ascii").translate(None, _ASCII_PRINTABLE):
            text = _ANSI.sub("", text)
            return text.encode("ascii").translate(None, _ASCII_CONTROLS).decode("ascii")
        return text
    if _CONTROL.search(text):
        text = _ANSI.sub("", text)
    matches = list(_SUSPECT.finditer(text))
    if not matches:
        return text
    has_rtl = bool(_RTL.search(text))
    drop: set[int] = set()
    flags: set[int] = set()
    for m in matches:
        pos, cp = m.start(), ord(m.group())
        if pos in flags:
            continue
        if _TAG[0] <= cp <= _TAG[1]:
            end = pos
            while end < len(text) and _TAG[0] <= ord(text[end]) <= _TAG[1]:
                end += 1
            if _is_flag(text, pos, text[pos:end]):
                flags.update(range(pos, end))
                continue
            drop.add(pos)
        elif cp in _VS:
            base = text[pos - 1] if pos > 0 else ""
            lone = not (pos + 1 < len(text) and ord(text[pos + 1]) in _VS) and \
                not (pos > 0 and ord(text[pos - 1]) in _VS)
            if not (lone and base and _selector_allowed(base, cp, text, pos)):
                drop.add(pos)
        elif cp == 0xAD or (cp in _BIDI_MARK and has_rtl):
            continue
        elif (_kind(text, pos, cp, has_rtl) is not None or cp < 0x20
              or 0x7F <= cp <= 0x9F) and cp not in (9, 10, 13):
            drop.add(pos)
    if not drop:
        return text
    return "".join(c for i, c in enumerate(text) if i not in drop)
