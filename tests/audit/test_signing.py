"""SPEC-AUDIT: the checkpoint signing key (created 0600 once, reused, refused when unsafe),
its public key's export formats, canonical JSON and the genesis value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bastion.audit import (
    SIGNING_KEY_FILE,
    AuditKeyError,
    AuditRecordError,
    Checkpoint,
    canonical,
    genesis,
    load_or_create_signing_key,
    parse_public_key,
    public_key_pem,
    public_key_raw_b64,
)
from bastion.audit.signing import read_signing_key


def test_spec_audit_key_created_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_or_create_signing_key(state)
    file = state / SIGNING_KEY_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    again = load_or_create_signing_key(state)
    assert public_key_raw_b64(again.public_key()) == public_key_raw_b64(key.public_key())


def test_spec_audit_unsafe_or_broken_key_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path)
    file = tmp_path / SIGNING_KEY_FILE
    os.chmod(file, 0o644)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        load_or_create_signing_key(tmp_path)
    os.chmod(file, 0o600)
    file.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(AuditKeyError, match="not an Ed25519 private key"):
        load_or_create_signing_key(tmp_path)
    with pytest.raises(AuditKeyError, match="no audit signing key yet"):
        read_signing_key(tmp_path / "elsewhere" / SIGNING_KEY_FILE)


def test_spec_audit_public_key_formats_round_trip(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    point = Checkpoint("gw", 3, bytes(32), 3, 1.5)
    signature = point.sign(key)
    for text in (public_key_pem(key.public_key()), public_key_raw_b64(key.public_key())):
        public = parse_public_key(text.encode())
        assert point.verify(public, signature)
        assert not Checkpoint("gw", 3, bytes(32), 4, 1.5).verify(public, signature)


@pytest.mark.parametrize("data", [b"", b"not base64!", b"QUJD", b"-----BEGIN PUBLIC KEY-----\nx"])
def test_spec_audit_bad_public_key(data: bytes) -> None:
    with pytest.raises(AuditKeyError):
        parse_public_key(data)


def test_spec_audit_canonical_json_and_genesis() -> None:
    assert canonical({"b": 1, "a": {"d": 2, "c": [1.5, "é"]}}) == \
        '{"a":{"c":[1.5,"é"],"d":2},"b":1}'.encode()
    with pytest.raises(AuditRecordError):
        canonical({"x": object()})
    assert genesis("a") != genesis("b") and len(genesis("a")) == 32
