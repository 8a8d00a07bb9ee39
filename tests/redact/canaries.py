"""Fake secrets and personal data for the redaction tests, built by code.

Nothing here is a real credential: each value is assembled from obviously fake pieces
(`Fake`, `0000`) at import time, so no secret-shaped literal sits in the repository.
"""

from __future__ import annotations

import base64
import json


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the Luhn check digit."""
    total = 0
    for index, char in enumerate(reversed(prefix)):
        value = int(char)
        if index % 2 == 0:  # doubled: every second digit from the right, the check digit aside
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return prefix + str((10 - total % 10) % 10)


def iban(country: str, bban: str) -> str:
    """An IBAN with valid check digits for `bban`."""
    digits = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def grouped(value: str, separator: str = " ") -> str:
    return separator.join(value[index:index + 4] for index in range(0, len(value), 4))


AWS_KEY_ID = "AKIA" + "FAKE" + "0123456789AB"
AWS_TEMP_KEY_ID = "ASIA" + "FAKE" + "0123456789CD"
AWS_SECRET = "Fake" + "0aB1/cD2+eF3" * 3
GITHUB_CLASSIC = "ghp_" + "Fake0" * 7 + "1"
GITHUB_OAUTH = "gho_" + "Fake1" * 7 + "2"
GITHUB_FINE_GRAINED = "github_pat_" + "11FAKE0000" + "0" * 12 + "_" + "Fake0" * 11 + "Fake"
SLACK = "xoxb-" + "1234567890" + "-" + "1234567890123" + "-" + "Fake" * 5
STRIPE = "sk_" + "live_" + "Fake0" * 5
STRIPE_RESTRICTED = "rk_" + "live_" + "Fake1" * 5
OPENAI = "sk-" + "proj-" + "FaKe0TeSt1KeY2" * 4
GOOGLE = "AIza" + "Sy" + "Fake0_-xYz" * 3 + "123"
JWT = ".".join([b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
                b64url(json.dumps({"sub": "fake-user", "iat": 0}).encode()),
                b64url(b"fake-signature-bytes")])
#: Shaped like a JWT, but the header names no algorithm.
NOT_A_JWT = ".".join([b64url(b'{"kid":"fake"}'), b64url(b'{"sub":"x"}'), "c2ln"])
PEM_BODY = "\n".join(["MIIFake" + "Key0" * 14 + "AAAA"] * 3 + ["Fake0Tail=="])
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
OPAQUE = "Fake0" + "aB1cD2eF3gH4" * 2  # an opaque bearer token
PASSWORD = "S3cr3t-Fake-Passw0rd"
BASIC = base64.b64encode(b"fake-user:" + PASSWORD.encode()).decode()

VISA = luhn_complete("411111111111111")
MASTERCARD = luhn_complete("555555555555444")
AMEX = luhn_complete("37828224631000")
VISA_BAD_LUHN = VISA[:-1] + str((int(VISA[-1]) + 1) % 10)
IBAN_DE = iban("DE", "370400440532013000")
IBAN_GB = iban("GB", "NWBK60161331926819")
EMAIL = "jane.fake@example.com"
PHONE = "+1 415 555 0132"
