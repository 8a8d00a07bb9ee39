"""The secret detectors: each fake canary is redacted in context, and look-alikes survive.

Security requirements §7: API keys, tokens, private keys, passwords in URLs and assignments
are redacted; UUIDs, git SHAs, SHA-256 digests, base64 images and prose are not.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from bastion.config.redaction import RedactionConfig
from bastion.guard.redact import Redactor
from tests.redact import canaries as c

REDACTOR = Redactor(RedactionConfig(pii=[]))


def redact(text: str) -> tuple[str, dict[str, int]]:
    out, report = REDACTOR.redact_text(text)
    return out, dict(report.counts)


POSITIVES = [
    ("aws_access_key_id", c.AWS_KEY_ID, "aws_access_key_id={}"),
    ("aws_access_key_id", c.AWS_TEMP_KEY_ID, '{{"AccessKeyId": "{}"}}'),
    ("github_token", c.GITHUB_CLASSIC, "git clone https://x:{}@github.com/o/r"),
    ("github_token", c.GITHUB_OAUTH, "token {} expires"),
    ("github_token", c.GITHUB_FINE_GRAINED, "GH={}"),
    ("slack_token", c.SLACK, "slack bot {}."),
    ("stripe_key", c.STRIPE, "stripe.api_key = {}"),
    ("stripe_key", c.STRIPE_RESTRICTED, "key: {}"),
    ("openai_key", c.OPENAI, "OPENAI_API_KEY={}"),
    ("google_api_key", c.GOOGLE, "https://maps.example/api?key={}&q=x"),
    ("jwt", c.JWT, "session {} ok"),
    ("private_key", c.PEM, "key file:\n{}\nend of file"),
]


@pytest.mark.parametrize(("kind", "canary", "context"), POSITIVES,
                         ids=[f"{kind}-{index}" for index, (kind, _, _) in enumerate(POSITIVES)])
def test_specific_secret_is_redacted_in_context(kind: str, canary: str, context: str) -> None:
    text = context.format(canary)
    out, counts = redact(text)
    assert canary not in out
    assert f"[REDACTED:{kind}]" in out
    assert counts.get(kind) == 1
    # The surrounding text is untouched (a token in a URL's password names the token).
    assert out == text.replace(canary, f"[REDACTED:{kind}]")


def test_url_password_keeps_user_and_host() -> None:
    out, counts = redact("db: postgres://admin:" + c.PASSWORD + "@db.internal:5432/app?x=1")
    assert out == "db: postgres://admin:[REDACTED:url_password]@db.internal:5432/app?x=1"
    assert counts == {"url_password": 1}
    out, _ = redact("redis://:pw0rd-Fake@cache:6379/0")
    assert out == "redis://:[REDACTED:url_password]@cache:6379/0"


@pytest.mark.parametrize("text", [
    "https://example.com:8443/path?a=b", "http://user@host.example/x", "ssh://git@github.com/o/r",
    "see http://localhost:8080/@admin", "mailto:someone@example.com",
])
def test_urls_without_a_password_survive(text: str) -> None:
    assert redact(text) == (text, {})


def test_bearer_and_basic_keep_the_scheme() -> None:
    out, counts = redact(f"Authorization: Bearer {c.OPAQUE}\nProxy-Authorization: Basic {c.BASIC}")
    assert out == ("Authorization: Bearer [REDACTED:bearer_token]\n"
                   "Proxy-Authorization: Basic [REDACTED:basic_auth]")
    assert counts == {"bearer_token": 1, "basic_auth": 1}


def test_a_jwt_bearer_counts_once_as_a_jwt() -> None:
    out, counts = redact(f"Authorization: Bearer {c.JWT}")
    assert out == "Authorization: Bearer [REDACTED:jwt]"
    assert counts == {"jwt": 1}


def test_raw_authorization_header_and_cookie_values() -> None:
    out, counts = redact(f"authorization: {c.OPAQUE}\nCookie: session={c.OPAQUE}")
    assert c.OPAQUE not in out
    assert counts == {"authorization": 1, "cookie": 1}


@pytest.mark.parametrize(("text", "kind"), [
    (f'password = "{c.PASSWORD}"', "password"),
    (f"DB_PASSWD={c.PASSWORD}", "password"),
    (f"client_secret: '{c.PASSWORD}'", "secret"),
    (f'{{"access_token":"{c.OPAQUE}"}}', "token"),
    (f"X-Api-Key => {c.OPAQUE}", "api_key"),
    (f"aws_secret_access_key = {c.AWS_SECRET}", "aws_secret_access_key"),
    (f'{{"SecretAccessKey": "{c.AWS_SECRET}"}}', "aws_secret_access_key"),
    # A JSON document inside a string: escaped quotes.
    (f'{{\\"password\\": \\"{c.PASSWORD}\\"}}', "password"),
])
def test_generic_assignment_with_a_random_value(text: str, kind: str) -> None:
    out, counts = redact(text)
    secret = c.AWS_SECRET if "aws" in kind else c.OPAQUE if kind in ("token", "api_key") \
        else c.PASSWORD
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "password: ********", "password = ${DB_PASSWORD}", "api_key: <your key here>",
    'token: "{{ secrets.TOKEN }}"', "token = os.environ['GITHUB_TOKEN']",
    "secret=getSecretFromVault()", "password_reset_url = https://example.com/reset",
    '{"max_tokens": 4096, "token_type": "Bearer", "nextPageToken": "CAESBggDEAEYAQ"}',
    "password = changeme", "token: null", "secret: required", "secret: [REDACTED:secret]",
    f"token = {uuid.UUID(int=7)}", f"api_key = {hashlib.sha256(b'x').hexdigest()}",
    "Rotate the API key every 90 days; the secret is never returned.",
    "The bearer of this letter is trusted. Basic understanding of networks helps.",
    "Use sk-learn for the risk-assessment-framework-overview-document.",
    "The ASIA-PACIFIC region; AKIAKIAKIA; AIza is a prefix.",
    "Basic " + base64.b64encode(b"no colon in here at all").decode(),
])
def test_look_alikes_survive(text: str) -> None:
    assert redact(text) == (text, {})


@pytest.mark.parametrize("text", [
    "SK-" + c.OPENAI[3:], "GHP_" + c.GITHUB_CLASSIC[4:], "XOXB-" + c.SLACK[5:],
    "x" + c.AWS_KEY_ID, c.AWS_KEY_ID + "Z", "k" + c.GITHUB_CLASSIC,
])
def test_wrong_case_or_glued_prefix_is_not_a_token(text: str) -> None:
    assert redact(text) == (text, {})


def test_jwt_needs_a_header_naming_an_algorithm() -> None:
    assert redact(f"id {c.NOT_A_JWT} x") == (f"id {c.NOT_A_JWT} x", {})


def test_private_key_block_goes_whole_in_every_layout() -> None:
    flattened = c.PEM.replace("\n", " ")
    escaped = c.PEM.replace("\n", "\\n")
    truncated = c.PEM.split("-----END")[0]
    for layout in (c.PEM, flattened, escaped, truncated):
        out, counts = redact(f"before {layout} after")
        assert "MIIFake" not in out and "Fake0Tail" not in out, layout
        assert out.startswith("before [REDACTED:private_key]")
        assert counts == {"private_key": 1}
    assert redact(f"before {c.PEM} after")[0] == "before [REDACTED:private_key] after"
    # A public key is not a secret.
    public = c.PEM.replace("RSA PRIVATE KEY", "PUBLIC KEY")
    assert redact(public) == (public, {})


@pytest.mark.parametrize("text", [
    str(uuid.UUID(int=0x4111111111111111_1111111111111111)),
    "12345678-1234-5678-1234-567812345678",
    hashlib.sha1(b"commit").hexdigest(),
    hashlib.sha256(b"file").hexdigest(),
    "data:image/png;base64," + base64.b64encode(
        b"\x89PNG" + (c.AWS_KEY_ID + c.GOOGLE + c.JWT + c.OPENAI).encode() * 4).decode(),
    "iVBORw0KGgo" + c.AWS_KEY_ID + "x" + c.GITHUB_CLASSIC + "AAAA==",
])
def test_uuids_digests_and_base64_survive(text: str) -> None:
    assert redact(text) == (text, {})


def test_redaction_is_idempotent() -> None:
    text = (f"url https://u:{c.PASSWORD}@h/ {c.JWT} password={c.PASSWORD} "
            f"Authorization: Bearer {c.OPAQUE} {c.PEM}")
    once, counts = redact(text)
    assert counts
    assert redact(once) == (once, {})


def test_offsets_hold_around_non_ascii_text() -> None:
    text = f"Grüße 😀 ✓ {c.GITHUB_CLASSIC} — ünïcödé {c.AWS_KEY_ID}!"
    out, counts = redact(text)
    assert out == "Grüße 😀 ✓ [REDACTED:github_token] — ünïcödé [REDACTED:aws_access_key_id]!"
    assert counts == {"github_token": 1, "aws_access_key_id": 1}


def test_secrets_off_finds_nothing() -> None:
    quiet = Redactor(RedactionConfig(secrets=False, pii=[]))
    assert not quiet.active
    text = f"{c.AWS_KEY_ID} {c.JWT}"
    out, report = quiet.redact_text(text)
    assert out is text and not report
