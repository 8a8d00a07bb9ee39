"""Bastion API keys: the SQLite store, and the in-memory verifier the gateway checks them with."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from collections.abc import AsyncIterator

import pytest

from bastion.config.auth import AuthConfig
from bastion.guard.identity import (
    ApiKeyError,
    ApiKeyStore,
    ApiKeyVerifier,
    Authenticator,
    InvalidToken,
    KeysUnavailable,
    build_authenticator,
)
from bastion.guard.identity.api_keys import API_KEY_ISSUER, REFRESH_INTERVAL, parse_api_key
from tests.identity.conftest import RESOURCE
from tests.identity.helpers import refused

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def auth(tmp_path) -> AsyncIterator[Authenticator]:
    config = AuthConfig(mode="dev", resource=RESOURCE)
    authenticator = build_authenticator(config, resource_url=RESOURCE, state_dir=tmp_path)
    assert authenticator is not None
    await authenticator.start()
    yield authenticator
    await authenticator.aclose()


def test_created_key_is_shown_once_and_only_its_hash_is_stored(tmp_path):
    store = ApiKeyStore.in_state_dir(tmp_path / "state")
    key, record = store.create(name="triage-bot", subject="alice", roles=["analyst", "analyst"],
                               scopes=["mcp:tools"])
    key_id, secret = parse_api_key(key)
    assert key_id == record.id and len(secret) == 43
    assert record.roles == ("analyst",) and record.expires_at is None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert secret.encode() not in store.path.read_bytes()
    assert secret not in repr(record) and secret not in repr(store.list())
    rows = sqlite3.connect(store.path).execute("SELECT * FROM api_keys").fetchall()
    assert len(rows) == 1 and all(secret not in str(value) for value in rows[0])
    assert [r.id for r in store.list()] == [record.id]


async def test_valid_key_gives_the_principal_of_its_owner_and_agent(auth, tmp_path):
    key, record = ApiKeyStore.in_state_dir(tmp_path).create(
        name="triage-bot", subject="alice", roles=["analyst"], scopes=["mcp:tools"],
        expires_at=time.time() + 3600)
    assert auth.api_keys is not None
    await auth.api_keys.reload()
    principal = await auth.authenticate({"authorization": f"Bearer {key}"}, b"")
    assert (principal.subject, principal.client_id, principal.method, principal.issuer) == (
        "alice", "triage-bot", "api_key", API_KEY_ISSUER)
    assert principal.roles == {"analyst"} and principal.scopes == {"mcp:tools"}
    assert principal.credential_id == record.id
    assert principal.expires_at == record.expires_at


async def test_SPEC_TP_03_wrong_secret_is_401(auth, tmp_path):
    key, _ = ApiKeyStore.in_state_dir(tmp_path).create(name="bot", subject="alice")
    await auth.api_keys.reload()
    forged = key[:-43] + ("A" * 43)
    _, params = await refused(auth, forged)
    assert params["error_description"] == "the API key is not valid"
    # A real secret under an unknown id, and a malformed key.
    await refused(auth, f"bst_{'0' * 12}_{key[-43:]}")
    _, params = await refused(auth, "bst_short")
    assert "is not one" in params["error_description"]


async def test_SPEC_TP_03_revoked_key_is_401_within_the_refresh_interval(auth, tmp_path):
    store = ApiKeyStore.in_state_dir(tmp_path)
    key, record = store.create(name="bot", subject="alice")
    await auth.api_keys.reload()
    assert await auth.authenticate({"authorization": f"Bearer {key}"}, b"")
    store.revoke(record.id)
    started = time.monotonic()
    while True:  # the background reload, not a forced one
        try:
            await auth.authenticate({"authorization": f"Bearer {key}"}, b"")
        except Exception:
            break
        assert time.monotonic() - started < REFRESH_INTERVAL + 2
        await asyncio.sleep(0.05)
    _, params = await refused(auth, key)
    assert "revoked" in params["error_description"]


async def test_SPEC_TP_03_expired_key_is_401(auth, tmp_path):
    now = time.time()
    key, _ = ApiKeyStore.in_state_dir(tmp_path).create(name="bot", subject="alice",
                                                       now=now - 100, expires_at=now - 1)
    await auth.api_keys.reload()
    _, params = await refused(auth, key)
    assert "expired" in params["error_description"]


async def test_keys_are_refused_when_disabled(tmp_path):
    key, _ = ApiKeyStore.in_state_dir(tmp_path).create(name="bot", subject="alice")
    config = AuthConfig(mode="dev", resource=RESOURCE, api_keys=False)
    authenticator = build_authenticator(config, resource_url=RESOURCE, state_dir=tmp_path)
    await authenticator.start()
    try:
        _, params = await refused(authenticator, key)
        assert "does not accept API keys" in params["error_description"]
    finally:
        await authenticator.aclose()


def test_verifier_fails_closed_before_the_store_was_read(tmp_path):
    store = ApiKeyStore.in_state_dir(tmp_path)
    key, _ = store.create(name="bot", subject="alice")
    with pytest.raises(KeysUnavailable):
        ApiKeyVerifier(store).verify(key)


async def test_an_absent_store_holds_no_keys(tmp_path):
    verifier = ApiKeyVerifier(ApiKeyStore.in_state_dir(tmp_path / "none"))
    await verifier.reload()
    with pytest.raises(InvalidToken):
        verifier.verify(f"bst_{'a' * 12}_{'b' * 43}")
    assert not (tmp_path / "none").exists()


def test_store_rejects_bad_input(tmp_path):
    store = ApiKeyStore.in_state_dir(tmp_path)
    for arguments in [{"name": "", "subject": "a"}, {"name": "bot", "subject": "a b"},
                      {"name": "bot", "subject": "a", "roles": ["x" * 200]},
                      {"name": "bot", "subject": "a", "scopes": ['"quoted"']},
                      {"name": "bot", "subject": "a", "expires_at": time.time() - 5}]:
        with pytest.raises(ApiKeyError):
            store.create(**arguments)
    with pytest.raises(ApiKeyError, match="no API key"):
        store.revoke("123456789abc")
    assert store.list() == []


def test_revoking_twice_keeps_the_first_time(tmp_path):
    store = ApiKeyStore.in_state_dir(tmp_path)
    _, record = store.create(name="bot", subject="alice")
    first = store.revoke(record.id, now=1000.0)
    again = store.revoke(record.id, now=2000.0)
    assert first.revoked_at == again.revoked_at == 1000.0
    assert again.state(time.time()) == "revoked"
