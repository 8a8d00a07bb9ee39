"""The checks a candidate must pass before it is redacted: checksums, structure, randomness.

Regular expressions find things shaped like a secret; these functions decide whether the thing
is one. Each takes the raw bytes of the candidate (ASCII; other characters arrive as `?`) and
is cheap, because it runs only on the rare spans the patterns let through.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

import orjson

#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_DIGEST = re.compile(rb"(?:0x)?[0-9a-fA-F]{32,128}")
#: Values that stand for a secret without being one: variables, templates, masks, our own
#: replacement (so redacting twice changes nothing).
_PLACEHOLDER = re.compile(rb"""[$%<\[{*(]|.*(?:\{\{|\$\{|\*\*\*|xxxx|XXXX|\.\.\.|://)""")
_STOP_WORDS = frozenset({
    b"changeme", b"password", b"redacted", b"required", b"optional", b"undefined",
    b"null", b"none", b"true", b"false", b"string", b"example", b"placeholder",
})


def luhn_ok(digits: bytes) -> bool:
    """The Luhn (mod 10) checksum of card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = char - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_network_ok(digits: bytes) -> bool:
    """Whether the number's prefix (IIN) belongs to a card network issuing this length.
    Random 13-19 digit numbers pass Luhn one time in ten; the IIN check rejects most of those."""
    length = len(digits)
    two, four, six = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[:1] == b"4":
        return length in (13, 16, 19)                    # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16                              # Mastercard
    if 2200 <= four <= 2204:
        return length == 16                              # Mir
    if two in (34, 37):
        return length == 15                              # American Express
    if 3528 <= four <= 3589:
        return 16 <= length <= 19                        # JCB
    if 300 <= six // 1000 <= 305 or two in (36, 38, 39) or four == 3095:
        return 14 <= length <= 19                        # Diners Club
    if four == 6011 or 644 <= six // 1000 <= 649 or two == 65 or 622126 <= six <= 622925:
        return 16 <= length <= 19                        # Discover
    if two == 62:
        return 16 <= length <= 19                        # UnionPay
    if two in (50, 56, 57, 58, 67) or four in (6304, 6759, 6761, 6762, 6763):
        return 13 <= length <= 19                        # Maestro
    return False


def card_ok(token: bytes) -> bool:
    """A payment card number: one kind of separator at most, a network prefix and length that
    fit, and a valid Luhn checksum."""
    if b" " in token and b"-" in token:
        return False
    digits = token.replace(b" ", b"").replace(b"-", b"")
    return 13 <= len(digits) <= 19 and _card_network_ok(digits) and luhn_ok(digits)


#: Letters as the two-digit numbers of the IBAN checksum, A = 10 ... Z = 35.
_IBAN_LETTERS = {65 + index: str(10 + index) for index in range(26)}


def iban_length(token: bytes) -> int | None:
    """How many bytes of `token` are an IBAN with a valid mod-97 checksum, or None.

    The pattern may run past the end of the IBAN into a following group of capitals or digits,
    so the country's registered length decides where it ends."""
    expected = IBAN_LENGTHS.get(token[:2].decode("ascii", "replace"))
    if expected is None:
        return None
    # Printed IBANs group by spaces (some by dashes).
    compact = token.replace(b" ", b"").replace(b"-", b"")[:expected]
    if len(compact) != expected:
        return None
    rearranged = (compact[4:] + compact[:4]).decode("ascii").translate(_IBAN_LETTERS)
    if int(rearranged) % 97 != 1:
        return None
    seen = 0
    for end, char in enumerate(token, 1):
        seen += char not in (32, 45)
        if seen == expected:
            return end
    return None  # pragma: no cover - compact has `expected` bytes, so the loop returns


def _b64decode(data: bytes, *, url: bool) -> bytes | None:
    padded = data + b"=" * (-len(data) % 4)
    try:
        if url:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def jwt_ok(token: bytes) -> bool:
    """Three base64url parts whose first decodes to a JSON object naming an `alg`."""
    header = _b64decode(token.partition(b".")[0], url=True)
    if header is None:
        return False
    try:
        parsed = orjson.loads(header)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("alg"), str)


def basic_auth_ok(value: bytes) -> bool:
    """HTTP Basic credentials: base64 of printable `user:password`."""
    decoded = _b64decode(value.rstrip(b"="), url=False)
    return (decoded is not None and b":" in decoded
            and all(32 <= char < 127 for char in decoded))


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character."""
    length = len(value)
    return -sum(count / length * math.log2(count / length)
                for count in Counter(value).values())


def _classes(value: bytes) -> tuple[bool, bool, bool, bool]:
    lower = upper = digit = other = False
    for char in value:
        if 97 <= char <= 122:
            lower = True
        elif 65 <= char <= 90:
            upper = True
        elif 48 <= char <= 57:
            digit = True
        else:
            other = True
    return lower, upper, digit, other


def _not_a_secret(value: bytes) -> bool:
    """Placeholders, identifiers and digests that often sit where a secret could."""
    return (len(value) < 8 or len(set(value)) < 4 or value.lower() in _STOP_WORDS
            or _PLACEHOLDER.match(value) is not None or _UUID.fullmatch(value) is not None
            or _HEX_DIGEST.fullmatch(value) is not None or value.isdigit())


def looks_secret(value: bytes) -> bool:
    """The generic rule for `password = ...`, `token: ...` in text: a value that is random
    enough to be a credential (letters and digits, or three character classes, and at least
    2.5 bits of entropy per character), and is not a UUID, a hex digest, a number or a
    placeholder (`${VAR}`, `{{x}}`, `****`, `<secret>`)."""
    if _not_a_secret(value):
        return False
    lower, upper, digit, other = _classes(value)
    mixed = (digit and (lower or upper)) or lower + upper + digit + other >= 3
    return mixed and entropy(value) >= 2.5


def field_looks_secret(value: bytes) -> bool:
    """The rule for a structured field whose name says it holds a secret (`"password": ...`):
    the name is strong evidence, so any value that is not a placeholder, digest or number and
    is not repetitive (2.5 bits per character) counts, passphrases with spaces included."""
    return not _not_a_secret(value) and entropy(value) >= 2.5


def random_token_ok(value: bytes) -> bool:
    """Opaque tokens after a weak prefix (`sk-`, `Bearer`): letters and digits, 3 bits of
    entropy per character."""
    lower, upper, digit, _other = _classes(value)
    return digit and (lower or upper) and entropy(value) >= 3.0


def slack_ok(token: bytes) -> bool:
    """Slack tokens carry numeric workspace and user ids."""
    return any(48 <= char <= 57 for char in token)


def phone_ok(token: bytes) -> bool:
    """E.164 numbers have 8 to 15 digits (country code included); separators stay single.
    Without separators it takes 10 digits, so `+20240501` (a date) is not a number."""
    digits = sum(48 <= char <= 57 for char in token)
    separated = digits < len(token) - 1  # the `+` aside
    if not (8 if separated else 10) <= digits <= 15:
        return False
    if token.count(b"(") != token.count(b")") or token.count(b"(") > 1:
        return False
    return re.search(rb"[ .-][ .-]|\(\)|[ .-]\)|\([ .-]", token) is None


def ipv4_ok(token: bytes) -> bool:
    """Four decimal octets, each at most 255."""
    return all(int(octet) <= 255 for octet in token.split(b"."))
