"""The personal-data detectors: checksums (Luhn, mod 97), conservative shapes, defaults."""

from __future__ import annotations

import uuid

import pytest

from bastion.config.redaction import PII_KINDS, RedactionConfig
from bastion.guard.redact import Redactor
from bastion.guard.redact.checks import card_ok, iban_length, luhn_ok
from tests.redact import canaries as c

ALL_PII = Redactor(RedactionConfig(secrets=False, pii=list(PII_KINDS)))


def redact(text: str, redactor: Redactor = ALL_PII) -> tuple[str, dict[str, int]]:
    out, report = redactor.redact_text(text)
    return out, dict(report.counts)


# -- validity ------------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "valid"), [
    (c.VISA, True), (c.MASTERCARD, True), (c.AMEX, True), (c.VISA_BAD_LUHN, False),
    ("0000000000000", True), ("1234567812345678", False), ("79927398713", True),
])
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_ok(number.encode()) is valid


@pytest.mark.parametrize(("token", "valid"), [
    (c.VISA, True), (c.grouped(c.VISA), True), (c.grouped(c.MASTERCARD, "-"), True),
    (c.AMEX, True),
    (c.VISA_BAD_LUHN, False),
    # Luhn-valid, but no network issues numbers with this prefix or length.
    (c.luhn_complete("123456789012345"), False), (c.luhn_complete("41111111111111"), False),
    # Mixed separators.
    ("4111 1111-1111 1111", False),
])
def test_card_ok_wants_luhn_network_and_one_separator(token: str, valid: bool) -> None:
    assert card_ok(token.encode()) is valid


@pytest.mark.parametrize(("token", "length"), [
    (c.IBAN_DE, 22), (c.IBAN_GB, 22), (c.grouped(c.IBAN_DE), 27),
    # The pattern may run into a following group: the country's length ends the IBAN.
    (c.IBAN_DE + " ABCD", 22), (c.grouped(c.IBAN_DE) + " 1234", 27),
    (c.IBAN_DE[:2] + "00" + c.IBAN_DE[4:], None),   # wrong check digits
    ("ZZ89370400440532013000", None),                # no such country
    (c.IBAN_DE[:-1], None),                          # too short for DE
])
def test_iban_length_checks_country_length_and_mod97(token: str, length: int | None) -> None:
    assert iban_length(token.encode()) == length


# -- in text -------------------------------------------------------------------------------

@pytest.mark.parametrize("card", [
    c.VISA, c.grouped(c.VISA), c.grouped(c.MASTERCARD, "-"), c.AMEX,
    f"{c.AMEX[:4]} {c.AMEX[4:10]} {c.AMEX[10:]}",
])
def test_card_numbers_are_redacted(card: str) -> None:
    out, counts = redact(f"paid with {card}, thanks")
    assert out == "paid with [REDACTED:credit_card], thanks"
    assert counts == {"credit_card": 1}


@pytest.mark.parametrize("text", [
    f"order {c.VISA_BAD_LUHN}",                       # Luhn fails
    "ts 1714567890123 and id 1790000000000000000",   # timestamps and snowflake ids
    f"{c.VISA}0",                                     # a longer run of digits
    f"x{c.VISA}", f"{c.VISA}abc", f"v1.{c.VISA}",      # glued to other text
    f"{c.grouped(c.VISA)} 1111",                      # part of a longer group sequence
    f"1111 {c.grouped(c.VISA)}",
    str(uuid.UUID(int=int(c.VISA + c.VISA))),         # a UUID of digits
    "2024-05-01 12:00:00 4111",
])
def test_card_look_alikes_survive(text: str) -> None:
    assert redact(text) == (text, {})


@pytest.mark.parametrize("value", [c.IBAN_DE, c.IBAN_GB, c.grouped(c.IBAN_DE)])
def test_iban_is_redacted(value: str) -> None:
    out, counts = redact(f"IBAN: {value}.")
    assert out == "IBAN: [REDACTED:iban]."
    assert counts == {"iban": 1}


def test_iban_stops_at_the_country_length() -> None:
    out, _ = redact(f"to {c.grouped(c.IBAN_DE)} REF1 today")
    assert out == "to [REDACTED:iban] REF1 today"


@pytest.mark.parametrize("text", [
    c.IBAN_DE[:2] + "00" + c.IBAN_DE[4:], "ISO8601 DE89 is not an account", "AB12 CDEF GHIJ KLMN",
])
def test_iban_look_alikes_survive(text: str) -> None:
    assert redact(text) == (text, {})


@pytest.mark.parametrize("text", [
    c.EMAIL, "x.y+tag@sub.example.co.uk", "mailto:" + c.EMAIL,
])
def test_email_is_redacted(text: str) -> None:
    out, counts = redact(f"contact <{text}> now")
    assert "example" not in out
    assert counts == {"email": 1}


@pytest.mark.parametrize("text", [
    "git@github.com:org/repo.git", "user@localhost", "@decorator.call", "a @ b.com",
    "postgres://user:pw@db.example.com/x",
])
def test_email_look_alikes_survive(text: str) -> None:
    out, counts = redact(text)
    assert "email" not in counts, out


@pytest.mark.parametrize("phone", [c.PHONE, "+14155550132", "+44 (20) 7946 0958", "+49-30-1234567"])
def test_phone_numbers_are_redacted(phone: str) -> None:
    out, counts = redact(f"call {phone} today")
    assert out == "call [REDACTED:phone] today"
    assert counts == {"phone": 1}


@pytest.mark.parametrize("text", [
    "+20240501", "2024-05-01T12:00:00+02:00", "C++ and +44", "+1 2", "a+14155550132",
    "x +1  415  555", "415 555 0132",
])
def test_phone_look_alikes_survive(text: str) -> None:
    assert redact(text) == (text, {})


def test_ipv4_addresses_are_redacted_when_enabled() -> None:
    out, counts = redact("from 10.0.0.1 and 192.168.255.254:443.")
    assert out == "from [REDACTED:ipv4] and [REDACTED:ipv4]:443."
    assert counts == {"ipv4": 2}


@pytest.mark.parametrize("text", ["999.1.1.1", "1.2.3.4.5", "v1.2.3.4", "3.14159", "1.2.3"])
def test_ipv4_look_alikes_survive(text: str) -> None:
    assert redact(text) == (text, {})


def test_default_pii_is_cards_and_ibans_only() -> None:
    default = Redactor()
    text = f"{c.EMAIL} {c.PHONE} 10.0.0.1 {c.VISA} {c.IBAN_DE}"
    out, counts = redact(text, default)
    assert out == f"{c.EMAIL} {c.PHONE} 10.0.0.1 [REDACTED:credit_card] [REDACTED:iban]"
    assert counts == {"credit_card": 1, "iban": 1}


def test_only_the_listed_pii_kinds_run() -> None:
    emails = Redactor(RedactionConfig(secrets=False, pii=["email"]))
    out, counts = redact(f"{c.EMAIL} {c.VISA}", emails)
    assert out == f"[REDACTED:email] {c.VISA}"
    assert counts == {"email": 1}
