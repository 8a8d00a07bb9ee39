"""The normalised copy the rule layers read, and the encoded payloads hidden in text.

Forensics look at the raw text; the phrasing rules look at what the model effectively
reads: hidden characters removed (so `i\u200bgnore` is `ignore`), compatibility forms
folded by NFKC (full-width and mathematical letters), look-alike letters inside
mixed-script words folded to ASCII, lower case. Identifiers (`content_from_reading_ssh`,
`IGNORE_ALL_PREVIOUS`) are turned into words. Base64, hex, URL-encoding and HTML entities
in long tokens are decoded so their content is scanned too.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote

from bastion.guard.scan.confusables import fold_confusables
from bastion.guard.scan.unicode import strip_text

#: Beyond this many characters, encoded tokens are not searched for (the cost is linear,
#: but a multi-megabyte result is data, not a place where a model follows base64).
DECODE_LIMIT = 200_000
_MAX_ROUNDS = 3
_FORMAT_CHARS = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff\u034f\u061c]")


def normalize(text: str) -> str:
    """The lower-cased, de-obfuscated copy of `text` that phrasing rules match against."""
    return fold(text).lower()


_JSON_ESCAPES = re.compile(r"\\[nrt]")


def fold(text: str) -> str:
    """`text` without hidden characters, NFKC-folded, look-alikes folded, JSON escapes of
    white space read as white space (results are often JSON text); case kept."""
    if "\\" in text:
        text = _JSON_ESCAPES.sub(" ", text)
    if text.isascii():
        return strip_text(text)
    for _ in range(_MAX_ROUNDS):
        folded = fold_confusables(unicodedata.normalize(
            "NFKC", _FORMAT_CHARS.sub("", strip_text(text))))
        if folded == text:
            break
        text = folded
    return text


_IDENT_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_\-.\s/]+")


@lru_cache(maxsize=4096)
def words_of_identifier(name: str) -> str:
    """An identifier as words: `content_from_readingSSH-id` -> "content from reading ssh id"."""
    return " ".join(p for p in _IDENT_SPLIT.split(fold(name)) if p).lower()


_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){16,}(?![0-9A-Fa-f])")
_PERCENT = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){6,}")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{20}")
_ENTITY = re.compile(r"(?:&#x?[0-9A-Fa-f]{1,6};|&[a-zA-Z]{2,8};)")


def may_be_encoded(text: str) -> bool:
    """Whether `decoded_payloads` could find anything (a cheap pre-check)."""
    return len(text) <= DECODE_LIMIT and (
        "%" in text or "&" in text or _LONG_TOKEN.search(text) is not None)


def decoded_payloads(text: str, limit: int = 8) -> list[tuple[str, str]]:
    """Readable text hidden in encoded tokens of `text`: (encoding, decoded) pairs."""
    if len(text) > DECODE_LIMIT:
        return []
    found: list[tuple[str, str]] = []
    if not _LONG_TOKEN.search(text):  # base64 and hex tokens both need 20 such characters
        return _escaped(text, found)
    for m in _B64.finditer(text):
        if len(found) >= limit:
            break
        token = m.group()
        if token.isalpha() and (token.islower() or token.isupper()):
            continue  # a long word or identifier, not base64
        decoded = _b64(token)
        if decoded:
            found.append(("base64", decoded))
    for m in _HEX.finditer(text):
        if len(found) >= limit:
            break
        decoded = _readable(binascii.unhexlify(m.group()))
        if decoded:
            found.append(("hex", decoded))
    return _escaped(text, found)


def _escaped(text: str, found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """URL-encoded and HTML-entity text, added to `found`."""
    if "%" in text:
        for m in _PERCENT.finditer(text):
            decoded = unquote(m.group())
            if decoded != m.group():
                found.append(("url", decoded))
                break
    if "&" in text and len(_ENTITY.findall(text[:20_000])) >= 3:
        decoded = html.unescape(text)
        if decoded != text:
            found.append(("html", decoded))
    return found


def _b64(token: str) -> str | None:
    raw = token.replace("-", "+").replace("_", "/")
    raw += "=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(data)


def _readable(data: bytes) -> str | None:
    """`data` as text when it is mostly printable words (not a hash, an image, a key)."""
    if len(data) < 12:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t")
    if printable < 0.95 * len(text) or len(text.split()) < 3:
        return None
    letters = sum(1 for c in text if c.isalpha())
    return text if letters >= 0.5 * len(text.replace(" ", "")) else None
