"""Confusable identifiers and look-alike words (UTS #39).

A tool or parameter name that mixes Latin letters with Cyrillic or Greek look-alikes, or
with Latin look-alikes such as the IPA alpha, is squatting on another name; whole-script
names (Cyrillic, CJK) are not. The skeleton (NFKC, look-alikes folded to ASCII, case and
separators dropped) compares names; the UTS #39 data ships in `confusable-homoglyphs`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache

from bastion.guard.scan.unicode import strip_text

_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE",
                                 "COPTIC", "GEORGIAN", "LISU", "CANADIAN", "OLD", "NKO"})


def script_of(ch: str) -> str:
    """The script of a letter from its Unicode name ("LATIN", "CYRILLIC" ...); "" if none."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else ""
    if not ch.isalpha():
        return ""
    name = unicodedata.name(ch, "")
    word = name.split(" ", 1)[0]
    if word in ("MATHEMATICAL", "FULLWIDTH", "HALFWIDTH"):
        return "COMPAT"
    return word


def mixed_scripts(word: str) -> set[str]:
    """The confusable scripts mixed in one identifier or word (empty when it is not mixed).

    Whole-script text (Cyrillic, CJK) is not an attack; Latin letters next to Cyrillic or
    Greek look-alikes inside one word are. Compatibility forms (full-width, mathematical
    letters) mixed with anything count too.
    """
    if word.isascii():
        return set()
    scripts = {s for s in map(script_of, word) if s}
    if "COMPAT" in scripts and len(scripts) >= 2:
        return scripts
    confusable = scripts & _CONFUSABLE_SCRIPTS
    if len(confusable) >= 2:
        return confusable
    if scripts == {"LATIN"} and not word.isascii() and any(c.isascii() and c.isalpha()
                                                            for c in word):
        # Latin look-alikes of ASCII letters (IPA alpha, script g), but not the letters of
        # a language's alphabet (Turkish dotless i) nor accented letters.
        table = _skeleton_map()
        if any(not c.isascii() and c in table and "DOTLESS" not in unicodedata.name(c, "")
               for c in word):
            return {"LATIN", "LATIN LOOK-ALIKE"}
    return set()


@cache
def _skeleton_map() -> dict[str, str]:
    """Non-ASCII characters that look like one ASCII letter or digit (UTS #39 data shipped
    by `confusable-homoglyphs`); empty if that package is missing."""
    try:
        from confusable_homoglyphs.confusables import confusables_data
    except ImportError:  # pragma: no cover - the package is a dependency
        return {}
    table: dict[str, str] = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            target = glyph.get("c", "")
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[char] = target
                break
    return table


def skeleton(text: str) -> str:
    """A comparison form of an identifier: NFKC, look-alikes folded to ASCII, lower case,
    invisible characters and separators dropped (so `s\u0435nd_email` ~ `Send-Email`)."""
    text = strip_text(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        table = _skeleton_map()
        text = "".join(table.get(c, c) for c in text)
    return re.sub(r"[\s_.\-]+", "", text.lower())


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_MIXED_CORE = re.compile(r"[A-Za-z][^\x00-\x7f\W]|[^\x00-\x7f\W][A-Za-z]")
_WORD_CHARS = re.compile(r"\w*")


def _cores(text: str) -> Iterator[re.Match[str]]:
    """`_MIXED_CORE` matches, looked for only next to runs of non-ASCII characters (each
    match holds one), which a mostly-ASCII text has few of."""
    for run in _NON_ASCII_RUN.finditer(text):
        yield from _MIXED_CORE.finditer(text, max(0, run.start() - 1), run.end() + 1)


def _words_around(text: str, limit: int) -> list[str]:
    """The words holding an ASCII letter next to a non-ASCII letter (found by a cheap
    core pattern, then widened to the whole word)."""
    found: list[str] = []
    last_end = -1
    for m in _cores(text):
        if m.start() < last_end:
            continue
        start = m.start()
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            start -= 1
        end = _WORD_CHARS.match(text, m.start()).end()
        last_end = end
        found.append(text[start:end])
        if len(found) >= limit:
            break
    return found


def fold_confusables(text: str) -> str:
    """Fold look-alike letters inside mixed-script words to ASCII (for the phrasing rules);
    words wholly in one script stay as they are."""
    if text.isascii():
        return text
    table = _skeleton_map()
    for word in set(_words_around(text, 10_000)):
        if mixed_scripts(word):
            text = text.replace(word, "".join(table.get(c, c) for c in word))
    return text


def mixed_words(text: str, limit: int = 20) -> list[str]:
    """Words of prose that mix confusable scripts (`j\u0430ilbre\u0430k` with Cyrillic \u0430)."""
    if text.isascii():
        return []
    found = []
    for word in _words_around(text, 2000):
        if mixed_scripts(word):
            found.append(word)
            if len(found) >= limit:
                break
    return found
