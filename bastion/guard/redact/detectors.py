"""The built-in detectors: what each secret and personal-data kind looks like.

Speed decides the shape of a detector. CPython's `re` skips fast (about 0.3 ms per MB) only to
a literal first byte, and `bytes.find` finds an absent byte in 0.01 ms; an alternation whose
branches start with different bytes tests a character set at every position instead (one
alternation per view measured 2.5 times slower than this design, bench/redact_speed.py). So
each detector names an `anchor`, its rarest byte (`J` of `eyJ`, `k` of `token`, `@` of an
email), and a `pattern` for the rest of the token after that byte; lookbehinds check what
comes before the anchor. The scanner merges the detectors that share a view and an anchor into
one regex, and skips it when the anchor byte does not occur (bastion.guard.redact.scanner).

The sources are three views of the same text, byte for byte the same length: `raw` (the text,
non-ASCII characters as `?`), `lower` (ASCII-lowercased, for keywords in any case) and `shape`
(digits as `0`, capitals as `A`, small letters as `a`: digit-heavy PII is found by shape, then
checked on the raw bytes). A detector with `needles` is found differently: card numbers are
runs of digits, which no single anchor byte finds cheaply, so `bytes.find` (which skips ahead
by the needle's length) looks for the shapes every card number must contain and `pattern` is
matched on the raw text where one occurs.

Every candidate is then checked (bastion.guard.redact.checks) before it is redacted: a
checksum, a decodable JWT header, enough randomness. Patterns never match a NUL byte: the
scanner joins the strings of a result with NUL and scans them in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bastion.guard.redact import checks

Source = Literal["raw", "lower", "shape"]
#: Which part of the candidate to redact: its length (a prefix of it), or None to keep it.
Check = Callable[[bytes], int | None]

#: Findings that start at the same place: the lowest rank names the redaction.
SPECIFIC, GENERIC, CUSTOM, PII = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of secret or personal data, as the scanner runs it (see the module doc)."""

    kind: str
    source: Source
    #: The literal byte the detector's pass scans for; empty for a needle detector.
    anchor: bytes
    #: The regex (bytes) for the token from just after the anchor; for a needle detector, the
    #: whole token, matched on the raw text where a needle occurs.
    pattern: bytes
    #: How many bytes of the token come before the anchor.
    back: int = 0
    #: Named groups holding the part to redact (the first that matched); none: the whole token.
    value: tuple[str, ...] = ()
    check: Check | None = None
    #: A regex that must match the raw text just before the token (ending where it starts)
    #: and belongs to it: the local part of an email, the first octet of an address.
    extend: re.Pattern[bytes] | None = None
    #: For digit shapes: substrings of `shape` at least one of which every token contains.
    needles: tuple[bytes, ...] = ()
    rank: int = SPECIFIC


def whole(predicate: Callable[[bytes], bool]) -> Check:
    """A check that keeps all of a candidate that satisfies `predicate`."""
    return lambda value: len(value) if predicate(value) else None


# -- secrets --------------------------------------------------------------------------------

#: Not base64 or an identifier on the left of a token (base64 images must survive).
_LEFT = rb"A-Za-z0-9+/_-"

#: `= value`, `: "value"`, `=> 'value'` after a keyword: the value is group v, w or u.
_ASSIGN = (rb"""\\?["']?[ \t]*(?:=>|:=|[:=])[ \t]*"""
           rb"""(?:\\?"(?P<v>[^"\\\x00\s]{8,16384}+)|'(?P<w>[^'\x00\s]{8,16384}+)"""
           rb"""|(?P<u>[^\s"'\\\x00,;&<>(){}\[\]`]{8,16384}+))""")
_VALUE = ("v", "w", "u")

#: Keyword families of the generic rule, on the lowercased text: (kind, anchor, keywords,
#: names that end with a keyword but hold no secret). A keyword must end the name.
KEYWORDS: tuple[tuple[str, bytes, tuple[bytes, ...], tuple[bytes, ...]], ...] = (
    ("aws_secret_access_key", b"k",
     (b"aws_secret_access_key", b"secret_access_key", b"secretaccesskey", b"aws_secret_key"), ()),
    ("private_key", b"k", (b"private_key", b"private-key", b"privatekey"), ()),
    ("api_key", b"k",
     (b"api_key", b"api-key", b"apikey", b"access_key", b"access-key", b"accesskey",
      b"secret_key", b"secret-key", b"secretkey", b"signing_key", b"client_key"), ()),
    ("token", b"k", (b"token",),
     (b"pagetoken", b"page_token", b"page-token", b"nexttoken", b"next_token", b"synctoken",
      b"sync_token")),
    ("cookie", b"k", (b"cookie",), ()),
    ("secret", b"c", (b"secret",), ()),
    ("password", b"w", (b"password", b"passwd"), ()),
    ("authorization", b"z", (b"authorization",), ()),
)


def _keyword_pattern(anchor: bytes, keywords: tuple[bytes, ...],
                     excluded: tuple[bytes, ...]) -> bytes:
    # After the anchor (a keyword's last `anchor` byte) match the rest of the keyword, then
    # look behind for the whole of it: the cheap test first, since most anchors are prose.
    by_rest: dict[bytes, list[bytes]] = {}
    for keyword in keywords:
        by_rest.setdefault(keyword[keyword.rindex(anchor) + 1:], []).append(keyword)
    branches = [re.escape(rest) + b"(?:" + b"|".join(
        b"(?<=" + re.escape(keyword) + b")" for keyword in group) + b")"
        for rest, group in by_rest.items()]
    guards = b"".join(b"(?<!" + re.escape(name) + b")" for name in excluded)
    return b"(?:" + b"|".join(branches) + b")" + guards + _ASSIGN


def _openai_ok(token: bytes) -> bool:
    return checks.random_token_ok(token[3:])


SECRETS: tuple[Detector, ...] = (
    Detector("private_key", "raw", b"B", back=5, pattern=(
        rb"(?<=-----B)EGIN (?P<label>(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----"
        # The body runs to the next five dashes (possessive: no backtracking), which must
        # open the matching END line.
        rb"(?:(?:(?!-----)[^\x00]){0,16384}+-----END (?P=label)-----"
        # No END line (a truncated result): take the lines that look like key material.
        rb"|(?:[ \t]*(?:\\r)?(?:\\n|\r?\n)[ \t]*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+:[^\r\n\x00]{0,200})"
        rb"|[ \t]+[A-Za-z0-9+/=]{16,}){0,512})")),
    Detector("jwt", "raw", b"J", back=2, check=whole(checks.jwt_ok), pattern=(
        rb"(?<=eyJ)(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{2,4096}+\.[A-Za-z0-9_-]{2,65536}+"
        rb"\.[A-Za-z0-9_-]{0,4096}+(?![A-Za-z0-9_-])")),
    Detector("aws_access_key_id", "raw", b"A", pattern=(
        rb"[KS]IA(?<![" + _LEFT + rb"]A..A)[A-Z0-9]{16}(?![" + _LEFT + rb"])")),
    Detector("google_api_key", "raw", b"A", pattern=(
        rb"Iza(?<![" + _LEFT + rb"]AIza)[0-9A-Za-z_-]{35}(?![" + _LEFT + rb"])")),
    Detector("github_token", "raw", b"_", back=3, pattern=(
        rb"(?<=gh[pousr]_)(?<![A-Za-z0-9_]gh[pousr]_)[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])")),
    Detector("github_token", "raw", b"_", back=6, pattern=(
        rb"(?<=github_)(?<![A-Za-z0-9_]github_)pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])")),
    Detector("stripe_key", "raw", b"_", back=2, pattern=(
        rb"(?<=[sr]k_)(?<![A-Za-z0-9_][sr]k_)(?:live|test)_[A-Za-z0-9]{16,247}(?![A-Za-z0-9_])")),
    Detector("slack_token", "raw", b"x", check=whole(checks.slack_ok), pattern=(
        rb"ox(?<![A-Za-z0-9_-]xox)[abeprs]-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9_-])")),
    Detector("url_password", "raw", b":", value=("v",), rank=GENERIC, pattern=(
        rb"""//[^\s/?#@:\x00"'<>\[\]\\]{0,256}:(?P<v>[^\s/?#@\x00"'<>\[\]\\]{1,256})@""")),
    # On the raw text: in the lowercased view's `k` pass a keyword before it (`API_KEY=sk-...`)
    # would hide it, the pass resuming after the keyword's value.
    Detector("openai_key", "raw", b"k", back=1, check=whole(_openai_ok), pattern=(
        rb"-(?<=sk-)(?<![A-Za-z0-9_-]sk-)[A-Za-z0-9_-]{20,512}(?![A-Za-z0-9_-])")),
    *(Detector(kind, "lower", anchor, _keyword_pattern(anchor, keywords, excluded),
               value=_VALUE, check=whole(checks.looks_secret), rank=GENERIC)
      for kind, anchor, keywords, excluded in KEYWORDS),
    Detector("bearer_token", "lower", b"b", value=("v",), rank=GENERIC,
             check=whole(checks.random_token_ok), pattern=(
                 rb"earer(?<![a-z0-9_-]bearer)[ \t]+(?P<v>[a-z0-9._~+/-]{16,16384}+=*)"
                 rb"(?![a-z0-9._~+/=-])")),
    Detector("basic_auth", "lower", b"b", value=("v",), rank=GENERIC,
             check=whole(checks.basic_auth_ok), pattern=(
                 rb"asic(?<![a-z0-9_-]basic)[ \t]+(?P<v>[a-z0-9+/]{8,1024}={0,2})(?![a-z0-9+/=])")),
)

# -- personal data --------------------------------------------------------------------------

_EMAIL_LOCAL = re.compile(
    # Not after `scheme://user:` (that is a URL password), but after `mailto:`.
    rb"(?:(?<=mailto:)|(?<![:/A-Za-z0-9._%+-]))[A-Za-z0-9._%+-]{1,64}\Z")
_FIRST_OCTET = re.compile(rb"(?<![0-9A-Za-z.])[0-9]{1,3}\Z")

PII_DETECTORS: dict[str, Detector] = {
    "email": Detector("email", "raw", b"@", extend=_EMAIL_LOCAL, rank=PII, pattern=(
        rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}"
        # Not `git@host:path` (scp syntax), nor the middle of a longer host name.
        rb"(?![A-Za-z0-9-]|\.[A-Za-z0-9]|:[A-Za-z0-9~/])")),
    "phone": Detector("phone", "raw", b"+", check=whole(checks.phone_ok), rank=PII, pattern=(
        rb"[1-9](?<![A-Za-z0-9+/=_]\+.)[0-9 ().-]{6,24}[0-9](?![0-9])")),
    "credit_card": Detector(
        "credit_card", "shape", b"", check=whole(checks.card_ok), rank=PII,
        needles=(b"0" * 13, b"0000 0000 0000", b"0000 000000 0000"), pattern=(
            # Contiguous, 4-4-4-4(-1..3), or 4-6-4/5 (Amex, Diners); not inside a longer
            # run of digits or groups (UUIDs, dates, phone numbers).
            rb"(?<![0-9A-Za-z_.-])"
            rb"(?:[2-6][0-9]{12,18}(?![0-9A-Za-z_])"
            rb"|(?<![0-9][ -])[2-6][0-9]{3}([ -])[0-9]{4}(?:\1[0-9]{4}){2}(?:\1[0-9]{1,3})?"
            rb"(?![0-9A-Za-z_]|[ -][0-9])"
            rb"|(?<![0-9][ -])[2-6][0-9]{3}([ -])[0-9]{6}\2[0-9]{4,5}"
            rb"(?![0-9A-Za-z_]|[ -][0-9]))")),
    "iban": Detector("iban", "shape", b"A", check=checks.iban_length, rank=PII, pattern=(
        rb"A00(?<![0aA_]AA00)(?: ?[A0]{4}){2,7}(?: ?[A0]{1,3})?(?![0aA])")),
    "ipv4": Detector("ipv4", "shape", b".", extend=_FIRST_OCTET, check=whole(checks.ipv4_ok),
                     rank=PII, pattern=rb"(?<=0\.)0{1,3}\.0{1,3}\.0{1,3}(?!0|\.0)"),
}
