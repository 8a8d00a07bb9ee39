"""The development issuer: its key file, its tokens, and a gateway in `mode: dev`."""

from __future__ import annotations

import os
import stat
import threading

import orjson
import pytest

from bastion.config.auth import AuthConfig
from bastion.guard.identity import (
    DEV_ISSUER,
    build_authenticator,
    load_or_create_dev_key,
    mint_dev_token,
)
from bastion.guard.identity.dev_issuer import DEV_KEY_FILE, DevIssuerError
from tests.identity.conftest import RESOURCE
from tests.identity.helpers import refused

pytestmark = pytest.mark.timeout(20)


def test_key_is_created_once_private_and_reused(tmp_path):
    state = tmp_path / "state"
    key = load_or_create_dev_key(state)
    file = state / DEV_KEY_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert orjson.loads(file.read_bytes())["crv"] == "Ed25519"
    assert load_or_create_dev_key(state).kid == key.kid


def test_concurrent_first_use_shares_one_key(tmp_path):
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(load_or_create_dev_key(tmp_path).kid))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1 and len(kids) == 8


def test_unsafe_or_corrupt_key_file_is_refused(tmp_path):
    load_or_create_dev_key(tmp_path)
    file = tmp_path / DEV_KEY_FILE
    os.chmod(file, 0o644)
    with pytest.raises(DevIssuerError, match="chmod 600"):
        load_or_create_dev_key(tmp_path)
    os.chmod(file, 0o600)
    file.write_text('{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}')
    with pytest.raises(DevIssuerError, match="not a private Ed25519 JWK"):
        load_or_create_dev_key(tmp_path)
    file.write_text("garbage")
    with pytest.raises(DevIssuerError):
        load_or_create_dev_key(tmp_path)


def test_mint_rejects_bad_input(tmp_path):
    key = load_or_create_dev_key(tmp_path)
    with pytest.raises(ValueError):
        mint_dev_token(key, audience=RESOURCE, subject="")
    for ttl in (0, -5, 8 * 86400):
        with pytest.raises(ValueError):
            mint_dev_token(key, audience=RESOURCE, subject="alice", ttl=ttl)


async def test_dev_gateway_accepts_its_own_tokens_and_nothing_else(tmp_path):
    authenticator = build_authenticator(AuthConfig(mode="dev"), resource_url=RESOURCE,
                                        state_dir=tmp_path)
    assert authenticator is not None
    await authenticator.start()
    try:
        token = mint_dev_token(load_or_create_dev_key(tmp_path), audience=RESOURCE,
                               subject="alice", roles=["analyst"], groups=["soc"],
                               scopes=["mcp:tools", "edr:write"], client_id="claude", ttl=60)
        principal = await authenticator.authenticate({"authorization": f"Bearer {token}"}, b"")
        assert (principal.subject, principal.issuer, principal.method) == (
            "alice", DEV_ISSUER, "dev")
        assert principal.roles == {"analyst"} and principal.groups == {"soc"}
        assert principal.scopes == {"mcp:tools", "edr:write"} and principal.client_id == "claude"
        assert principal.credential_id

        # Another state directory's key: same issuer name, different key.
        stranger = mint_dev_token(load_or_create_dev_key(tmp_path / "other"),
                                  audience=RESOURCE, subject="mallory")
        _, params = await refused(authenticator, stranger)
        assert "dev-token" in params["error_description"]
        # SPEC-TP-01: a dev token for another gateway.
        elsewhere = mint_dev_token(load_or_create_dev_key(tmp_path),
                                   audience="http://127.0.0.1:9999/mcp", subject="alice")
        await refused(authenticator, elsewhere)
        metadata = authenticator.protected_resource_metadata()
        assert metadata["authorization_servers"] == [DEV_ISSUER]
    finally:
        await authenticator.aclose()
