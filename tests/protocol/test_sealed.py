"""Sealed MRTR state: round trip, opacity, tamper detection, binding, expiry, garbage."""

from __future__ import annotations

import base64

import pytest

from bastion.protocol import sealed as sealed_module
from bastion.protocol.errors import InvalidParams
from bastion.protocol.jsonrpc import error_response
from bastion.protocol.sealed import StateSealer, binding_for
from tests.schema_check import validate_def, validate_message

BINDING = binding_for("tools/call", {"name": "deploy", "arguments": {"env": "prod"}}, "alice")


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _rejected(sealer: StateSealer, token: object, binding: bytes = BINDING) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        sealer.open(token, binding)
    assert type(info.value) is InvalidParams
    assert info.value.code == -32602
    return info.value


@pytest.fixture
def sealer() -> StateSealer:
    return StateSealer()


# --------------------------------------------------------------------------------------------
# Round trip and opacity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [
    {"step": 2, "answers": {"env": "prod"}},
    ["a", 1, None, True, 2.5],
    "plain string",
    0,
    None,
    {"unicode": "żółw 🐢", "nested": {"deep": [[{"x": -1}]]}},
    {},
])
def test_round_trip(sealer, state):
    token = sealer.seal(state, BINDING)
    assert sealer.open(token, BINDING) == state


def test_token_is_url_safe_unpadded_text(sealer):
    token = sealer.seal({"secret": "do-not-show"}, BINDING)
    assert isinstance(token, str)
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert token.isascii()


def test_token_is_opaque(sealer):
    token = sealer.seal({"secret": "do-not-show"}, BINDING)
    raw = _decode(token)
    assert b"do-not-show" not in raw
    assert "do-not-show" not in token
    assert raw[:1] == b"\x01"  # format version


def test_each_seal_uses_a_fresh_nonce(sealer):
    first = sealer.seal({"same": 1}, BINDING)
    second = sealer.seal({"same": 1}, BINDING)
    assert first != second
    assert sealer.open(first, BINDING) == sealer.open(second, BINDING) == {"same": 1}


def test_token_can_be_opened_more_than_once(sealer):
    # Single use needs server-side enforcement; the sealer itself is stateless.
    token = sealer.seal("x", BINDING)
    assert sealer.open(token, BINDING) == "x"
    assert sealer.open(token, BINDING) == "x"


def test_a_shared_key_lets_replicas_open_each_other_s_tokens():
    key = bytes(range(32))
    token = StateSealer(key).seal({"replica": "a"}, BINDING)
    assert StateSealer(key).open(token, BINDING) == {"replica": "a"}


@pytest.mark.parametrize("size", [16, 24, 32])
def test_accepted_key_sizes(size):
    sealer = StateSealer(b"k" * size)
    assert sealer.open(sealer.seal(1, BINDING), BINDING) == 1


@pytest.mark.parametrize("size", [0, 8, 15, 17, 31, 33, 64])
def test_refused_key_sizes(size):
    with pytest.raises(ValueError, match="16, 24 or 32 bytes"):
        StateSealer(b"k" * size)


def test_other_key_is_rejected():
    token = StateSealer().seal("x", BINDING)
    exc = _rejected(StateSealer(), token)
    assert "verification" in exc.message


# --------------------------------------------------------------------------------------------
# Tampering
# --------------------------------------------------------------------------------------------


def test_every_flipped_byte_is_detected(sealer):
    token = sealer.seal({"approved": False, "amount": 10}, BINDING)
    raw = bytearray(_decode(token))
    for index in range(len(raw)):
        for mask in (0x01, 0x80):
            tampered = bytearray(raw)
            tampered[index] ^= mask
            _rejected(sealer, _encode(bytes(tampered)))


def test_truncated_and_extended_tokens_are_rejected(sealer):
    token = sealer.seal({"k": "v"}, BINDING)
    raw = _decode(token)
    for cut in (1, 5, 16, len(raw) - 1):
        _rejected(sealer, _encode(raw[:-cut]))
    _rejected(sealer, _encode(raw + b"\x00"))
    _rejected(sealer, token[:-1])
    _rejected(sealer, token + "A")


def test_changed_version_byte_is_rejected(sealer):
    raw = bytearray(_decode(sealer.seal("x", BINDING)))
    raw[0] = 0x02
    exc = _rejected(sealer, _encode(bytes(raw)))
    assert "not a state this server issued" in exc.message


def test_swapped_ciphertexts_are_rejected(sealer):
    # Splicing the nonce of one token onto another's ciphertext breaks authentication.
    first = _decode(sealer.seal("first", BINDING))
    second = _decode(sealer.seal("second", BINDING))
    spliced = first[:13] + second[13:]
    _rejected(sealer, _encode(spliced))


def test_tamper_error_is_a_schema_valid_invalid_params_response(sealer):
    raw = bytearray(_decode(sealer.seal("x", BINDING)))
    raw[-1] ^= 0xFF
    exc = _rejected(sealer, _encode(bytes(raw)))
    validate_def(exc.to_error(), "2026-07-28", "InvalidParamsError")
    validate_message(error_response(12, exc).to_dict(), "2026-07-28")


# --------------------------------------------------------------------------------------------
# Binding
# --------------------------------------------------------------------------------------------


def test_binding_is_deterministic_and_key_order_insensitive():
    assert binding_for("tools/call", {"a": 1, "b": 2}, "p") == \
        binding_for("tools/call", {"b": 2, "a": 1}, "p")
    assert isinstance(BINDING, bytes)


@pytest.mark.parametrize("other", [
    binding_for("prompts/get", {"name": "deploy", "arguments": {"env": "prod"}}, "alice"),
    binding_for("tools/call", {"name": "deploy", "arguments": {"env": "dev"}}, "alice"),
    binding_for("tools/call", {"name": "deploy", "arguments": {"env": "prod"}}, "mallory"),
    binding_for("tools/call", {"name": "deploy", "arguments": {"env": "prod"}}),
    binding_for("tools/call", {"name": "deploy", "arguments": {"env": "prod"}}, ""),
    b"",
    BINDING + b"x",
])
def test_wrong_binding_is_rejected(sealer, other):
    assert other != BINDING
    token = sealer.seal({"ok": True}, BINDING)
    exc = _rejected(sealer, token, other)
    assert "another request or principal" in exc.message


def test_no_principal_and_empty_principal_bind_alike():
    assert binding_for("m", {}, None) == binding_for("m", {}, "")


def test_binding_fields_cannot_be_shifted():
    # The separator keeps "method|principal" pairs from colliding.
    assert binding_for("a", {}, "bc") != binding_for("ab", {}, "c")


# --------------------------------------------------------------------------------------------
# Expiry
# --------------------------------------------------------------------------------------------


def test_negative_ttl_is_already_expired(sealer):
    token = sealer.seal({"late": True}, BINDING, ttl=-1)
    exc = _rejected(sealer, token)
    assert "expired" in exc.message


def test_default_ttl(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(sealed_module.time, "time", lambda: now[0])
    sealer = StateSealer(default_ttl=60)
    token = sealer.seal("x", BINDING)
    now[0] += 59.9
    assert sealer.open(token, BINDING) == "x"
    now[0] += 0.2
    assert "expired" in _rejected(sealer, token).message


def test_explicit_ttl_overrides_the_default(monkeypatch):
    now = [5_000.0]
    monkeypatch.setattr(sealed_module.time, "time", lambda: now[0])
    sealer = StateSealer(default_ttl=3600)
    token = sealer.seal("x", BINDING, ttl=10)
    now[0] += 11
    _rejected(sealer, token)
    long_lived = sealer.seal("y", BINDING)
    now[0] += 3000
    assert sealer.open(long_lived, BINDING) == "y"


def test_default_ttl_value():
    assert StateSealer().default_ttl == 600.0


# --------------------------------------------------------------------------------------------
# Garbage
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    None, "", 0, 123, 1.5, True, [], {}, b"bytes-token",
])
def test_non_string_or_empty_tokens(sealer, token):
    exc = _rejected(sealer, token)
    assert "non-empty string" in exc.message


@pytest.mark.parametrize("token", [
    "a", "abc", "!!!!", "====", "é", "żółw", "\x00", " " * 40, "A" * 10,
    _encode(b"\x01" + b"\x00" * 28),  # one byte short of nonce + tag
    _encode(b"\x01" + b"\x00" * 29),  # the right length, all zeros
    _encode(b"\x01" + b"\xff" * 200),
    _encode(b"\x00" * 64),
    "A" * 10_000,
])
def test_garbage_tokens(sealer, token):
    _rejected(sealer, token)


def test_garbage_never_raises_anything_else(sealer):
    import random

    rng = random.Random(2024)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        for token in (_encode(raw), raw.decode("latin-1")):
            if not token:
                continue
            _rejected(sealer, token)
