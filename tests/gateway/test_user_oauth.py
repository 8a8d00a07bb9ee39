"""Per-user OAuth toward upstreams: the encrypted token store (SPEC-AUTH-12), pending
authorizations and the `/oauth/callback` route, against a real authorization server and
a real protected MCP server (tests/oauth/conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette

from bastion.client import connect_http
from bastion.client.oauth import (
    ClientCredentials,
    OAuthClientSettings,
    OAuthFlow,
    PendingAuthorization,
    TokenSet,
)
from bastion.config.models import UpstreamAuth
from bastion.gateway.authorizations import CALLBACK_PATH, Authorizations
from bastion.gateway.serve import callback_url
from bastion.gateway.user_tokens import EncryptedTokenStore, TokenStoreError
from bastion.gateway.user_upstreams import UserUpstreams
from bastion.protocol.errors import URL_ELICITATION_REQUIRED, MCPError
from tests.gateway.conftest import make_config
from tests.gateway.test_auth_e2e import secured
from tests.oauth.conftest import REDIRECT_URI, Rig

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(name="rig")
async def _rig() -> AsyncIterator[Rig]:
    """A real authorization server and protected MCP server (tests/oauth/conftest.py)."""
    running = Rig()
    yield running
    await running.close()

KEY = bytes(range(32))
ISSUER = "https://as.example.com"
RESOURCE = "https://mcp.example.com/mcp"


def _tokens(access: str = "access-SECRETVALUE-1", resource: str = RESOURCE) -> TokenSet:
    return TokenSet(access_token=access, issuer=ISSUER, resource=resource, client_id="c1",
                    requested_scopes=frozenset({"mcp"}), scopes=frozenset({"mcp"}),
                    expires_at=2e9, refresh_token="refresh-SECRETVALUE-1")


# -- the store (SPEC-AUTH-12) --------------------------------------------------------------------


async def test_spec_auth_12_tokens_and_clients_round_trip_per_user(tmp_path) -> None:
    store = EncryptedTokenStore.in_state_dir(tmp_path, KEY)
    alice = store.for_user("alice-binding")
    await alice.put_tokens(_tokens())
    client = ClientCredentials(ISSUER, "c1", "client-SECRETVALUE", "client_secret_post")
    await alice.put_client(client)
    store.close()
    reopened = EncryptedTokenStore.in_state_dir(tmp_path, KEY).for_user("alice-binding")
    assert await reopened.get_tokens(ISSUER, RESOURCE) == _tokens()
    assert await reopened.get_client(ISSUER) == client
    assert await reopened.get_tokens(ISSUER, "https://other.example.com/mcp") is None
    await reopened.delete_tokens(ISSUER, RESOURCE)
    await reopened.delete_client(ISSUER)
    assert await reopened.get_tokens(ISSUER, RESOURCE) is None
    assert await reopened.get_client(ISSUER) is None


async def test_spec_auth_12_another_user_sees_nothing(tmp_path) -> None:
    store = EncryptedTokenStore.in_state_dir(tmp_path, KEY)
    await store.for_user("alice").put_tokens(_tokens())
    await store.for_user("alice").put_client(ClientCredentials(ISSUER, "c1"))
    bob = store.for_user("bob")
    assert await bob.get_tokens(ISSUER, RESOURCE) is None
    assert await bob.get_client(ISSUER) is None


async def test_spec_auth_12_file_is_private_and_holds_no_plaintext(tmp_path) -> None:
    store = EncryptedTokenStore.in_state_dir(tmp_path, KEY)
    await store.for_user("alice-binding").put_tokens(_tokens())
    await store.for_user("alice-binding").put_client(
        ClientCredentials(ISSUER, "c1", "client-SECRETVALUE", "client_secret_post"))
    store.close()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (b"SECRETVALUE", b"alice-binding", b"mcp.example.com/mcp\x00"):
        assert secret not in raw
    assert "SECRET" not in repr(store) + repr(store.for_user("alice-binding"))


async def test_spec_auth_12_a_moved_or_tampered_row_is_refused(tmp_path) -> None:
    store = EncryptedTokenStore.in_state_dir(tmp_path, KEY)
    await store.for_user("alice").put_tokens(_tokens())
    await store.for_user("bob").put_tokens(_tokens("bob-token"))
    store.close()
    db = sqlite3.connect(store.path)
    rows = dict(db.execute("SELECT user, sealed FROM tokens").fetchall())
    alice_user, bob_user = EncryptedTokenStore(store.path, KEY)._user("alice"), \
        EncryptedTokenStore(store.path, KEY)._user("bob")
    # Alice's sealed row copied over Bob's: it does not open as Bob's.
    db.execute("UPDATE tokens SET sealed=? WHERE user=?", (rows[alice_user], bob_user))
    flipped = bytearray(rows[alice_user])
    flipped[-1] ^= 1
    db.execute("UPDATE tokens SET sealed=? WHERE user=?", (bytes(flipped), alice_user))
    db.commit()
    db.close()
    reopened = EncryptedTokenStore(store.path, KEY)
    assert await reopened.for_user("bob").get_tokens(ISSUER, RESOURCE) is None
    assert await reopened.for_user("alice").get_tokens(ISSUER, RESOURCE) is None
    # And a different session key opens nothing.
    other = EncryptedTokenStore(tmp_path / "x.sqlite3", KEY)
    await other.for_user("alice").put_tokens(_tokens())
    other.close()
    assert await EncryptedTokenStore(tmp_path / "x.sqlite3", bytes(32)).for_user(
        "alice").get_tokens(ISSUER, RESOURCE) is None


def test_store_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="session key"):
        EncryptedTokenStore(tmp_path / "t.sqlite3", b"short")
    store = EncryptedTokenStore(tmp_path / "t.sqlite3", KEY)
    with pytest.raises(ValueError, match="binding"):
        store.for_user("")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TokenStoreError, match="cannot open"):
        EncryptedTokenStore(tmp_path / "file" / "t.sqlite3", KEY)


# -- the gateway end to end ------------------------------------------------------------------------

TOOL = "up__test_simple_text"


def _gateway_config(idp, tmp_path, mcp, **oauth: Any):
    upstream = {"url": mcp.url, "auth": {"oauth": {"allow_insecure_loopback": True, **oauth}}}
    return secured(idp, tmp_path, upstreams={"up": upstream})


async def _raw_call(live, token: str, **extra: Any) -> dict[str, Any]:
    async with connect_http(live.url, bearer_token=token, mode="modern") as client:
        return await client.request("tools/call", {"name": TOOL, "arguments": {}, **extra})


async def _browser(url: str, live) -> httpx.Response:
    """The user's browser: open the authorization URL (the mock AS approves at once), then
    follow its redirect to the gateway's callback (at the listener, whatever the origin)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        approved = await browser.get(url)
        assert approved.status_code == 302
        location = urlsplit(approved.headers["location"])
        assert location.path == CALLBACK_PATH
        return await browser.get(f"http://127.0.0.1:{live.port}{CALLBACK_PATH}?"
                                 f"{location.query}")


def _elicitation(result: dict[str, Any]) -> tuple[str, str]:
    assert result["resultType"] == "input_required"
    ((elicitation_id, ask),) = result["inputRequests"].items()
    assert ask["method"] == "elicitation/create" and ask["params"]["mode"] == "url"
    return elicitation_id, ask["params"]["url"]


async def test_spec_tp_02_alice_authorizes_then_calls_with_her_upstream_token(
        rig, idp, tmp_path, gateway_http, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    authority, mcp = await rig.stack()
    live = await gateway_http(_gateway_config(idp, tmp_path, mcp))
    alice = idp.mint(sub="alice")
    async with connect_http(live.url, bearer_token=alice) as client:
        assert await client.list_tools() == []  # no user connected yet: nothing learnt
    first = await _raw_call(live, alice)
    elicitation_id, url = _elicitation(first)
    assert url.startswith(f"{authority.issuer}/authorize?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["redirect_uri"] == f"https://gw.example.com{CALLBACK_PATH}"
    assert query["resource"] == mcp.resource
    # A retry before the browser step asks again, with the same link.
    again = await _raw_call(live, alice)
    assert _elicitation(again) == (elicitation_id, url)

    page = await _browser(url, live)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "access-" not in page.text and "Authorized" in page.text

    done = await _raw_call(live, alice, requestState=first["requestState"],
                           inputResponses={elicitation_id: {"action": "accept"}})
    assert done["content"][0]["text"].startswith("This is a simple text")
    # The upstream saw the upstream token only: never alice's inbound token.
    sent = {authorization for _method, authorization in mcp.seen if authorization}
    assert sent and all(a[7:] in authority.tokens for a in sent)
    assert f"Bearer {alice}" not in sent
    # The catalogue was learnt from alice's connection.
    async with connect_http(live.url, bearer_token=alice) as client:
        assert TOOL in {tool["name"] for tool in await client.list_tools()}
    # Tokens are on disk, sealed.
    raw = (tmp_path / "upstream_tokens.sqlite3").read_bytes()
    assert not any(token.encode() in raw for token in authority.tokens)
    # SPEC-AUTH-12: no token, code or secret in a log line.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bastion"))
    assert "upstream up" in ours  # the gateway's own lines are there
    for secret in [*authority.tokens, alice, "refresh-", "dcr-secret-value", "code-"]:
        assert secret not in ours


async def test_spec_auth_12_bob_authorizes_separately_and_replay_is_refused(
        rig, idp, tmp_path, gateway_http) -> None:
    authority, mcp = await rig.stack()
    live = await gateway_http(_gateway_config(idp, tmp_path, mcp))
    users = live.gateway.user_upstreams
    users.max_connections = 1  # the LRU bound: bob's connection evicts alice's
    alice, bob = idp.mint(sub="alice"), idp.mint(sub="bob")
    _id, url = _elicitation(await _raw_call(live, alice))
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        location = urlsplit((await browser.get(url)).headers["location"])
        callback = f"http://127.0.0.1:{live.port}{CALLBACK_PATH}?{location.query}"
        assert (await browser.get(callback)).status_code == 200
        tokens_before = len(authority.tokens)
        replay = await browser.get(callback)
        assert replay.status_code == 400 and replay.headers["cache-control"] == "no-store"
        assert len(authority.tokens) == tokens_before  # no second exchange
        for bad in ("", "?state=", "?state=unknown&code=x", "?state=a&state=b"):
            answer = await browser.get(f"http://127.0.0.1:{live.port}{CALLBACK_PATH}{bad}")
            assert answer.status_code == 400
    assert (await _raw_call(live, alice))["content"]
    # Bob has no token of his own: he is asked to authorize, with his own link.
    _bob_id, bob_url = _elicitation(await _raw_call(live, bob))
    assert bob_url != url
    assert (await _browser(bob_url, live)).status_code == 200
    assert (await _raw_call(live, bob))["content"]
    clients = {authority.tokens[a[7:]].client_id for _m, a in mcp.seen if a}
    assert len(clients) == 2  # each user's registration and token are their own
    assert len(users) == 1
    users.idle_timeout = 0  # idle connections are closed at the next use
    assert (await _raw_call(live, alice))["content"]
    assert len(users) == 1


async def test_legacy_client_gets_url_elicitation_required(rig, idp, tmp_path,
                                                           gateway_http) -> None:
    _authority, mcp = await rig.stack()
    live = await gateway_http(_gateway_config(idp, tmp_path, mcp))
    alice = idp.mint(sub="alice")
    async with connect_http(live.url, bearer_token=alice, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.request("tools/call", {"name": TOOL, "arguments": {}})
        assert caught.value.code == URL_ELICITATION_REQUIRED
        (elicitation,) = caught.value.data["elicitations"]
        assert elicitation["mode"] == "url" and elicitation["elicitationId"]
        assert (await _browser(elicitation["url"], live)).status_code == 200
        result = await client.request("tools/call", {"name": TOOL, "arguments": {}})
    assert result["content"][0]["text"].startswith("This is a simple text")


# -- pending authorizations and the callback (SPEC-CD-05) -----------------------------------------


def _pending(state: str, ttl: float = 600.0) -> PendingAuthorization:
    return PendingAuthorization(
        authorization_url=f"{ISSUER}/authorize?state={state}", state=state,
        code_verifier="v" * 43, redirect_uri=REDIRECT_URI, issuer=ISSUER, iss_required=True,
        token_endpoint=f"{ISSUER}/token", resource=RESOURCE, scopes=(),
        client=ClientCredentials(ISSUER, "c1"), expires_at=time.time() + ttl)


def test_authorizations_are_single_use_and_bounded(rig) -> None:
    flow = OAuthFlow(OAuthClientSettings(redirect_uri=REDIRECT_URI), rig.egress())
    pending = Authorizations(max_pending=3, max_per_user=2)
    first = pending.add("alice", "up", flow, _pending("s1"))
    pending.add("alice", "up", flow, _pending("s2"))
    pending.add("alice", "up", flow, _pending("s3"))  # alice's oldest goes
    assert len(pending) == 2 and pending.take("s1") is None
    assert pending.waiting("alice", "up").pending.state == "s3"
    assert pending.waiting("bob", "up") is None
    pending.add("bob", "up", flow, _pending("b1"))
    pending.add("carol", "up", flow, _pending("c1"))  # over max_pending: the oldest goes
    assert len(pending) == 3 and pending.take("s2") is None
    record = pending.take("s3")
    assert record is not None and record.binding == "alice" and record.upstream == "up"
    assert pending.take("s3") is None  # single use
    assert pending.take(None) is None  # type: ignore[arg-type]
    assert "alice" not in repr(first) and "v" * 43 not in repr(first)
    assert pending.add("x", "up", flow, _pending("old", ttl=-1)).expires_at < time.time()
    assert pending.take("old") is None  # expired
    with pytest.raises(ValueError, match="ttl"):
        Authorizations(ttl=601)
    with pytest.raises(ValueError, match="at least 1"):
        Authorizations(max_pending=0)


async def test_spec_cd_05_expired_state_is_400_without_side_effect(rig) -> None:
    authority, _mcp = await rig.stack()
    flow = OAuthFlow(OAuthClientSettings(redirect_uri=REDIRECT_URI), rig.egress())
    completed: list[tuple[str, str]] = []

    async def on_completed(binding: str, upstream: str) -> None:
        completed.append((binding, upstream))

    pending = Authorizations(ttl=0.2, on_completed=on_completed)
    pending.add("alice", "up", flow, _pending("late"))
    base = await rig.serve(Starlette(routes=pending.routes()))
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.get(f"{base}{CALLBACK_PATH}?state=late&code=c")
        assert answer.status_code == 400 and "expired" in answer.text
        assert answer.headers["x-frame-options"] == "DENY"
        huge = await browser.get(f"{base}{CALLBACK_PATH}?state={'x' * 9000}")
        assert huge.status_code == 400
    assert completed == [] and authority.token_requests == []


# -- configuration --------------------------------------------------------------------------------


def test_upstream_oauth_config_exactly_one_source_and_checked_fields() -> None:
    auth = UpstreamAuth(oauth={"scopes": ["mcp"], "allowed_networks": ["10.1.2.0/24"],
                               "clients": {ISSUER: {"client_id": "gw",
                                                    "client_secret": "s3cr3t-value"}}})
    assert auth.oauth is not None and "s3cr3t-value" not in repr(auth)
    for bad, match in [
        ({"oauth": {}, "bearer": "x"}, "exactly one"),
        ({}, "exactly one"),
        ({"oauth": {"allowed_networks": ["10.1.2.0/33"]}}, "CIDR"),
        ({"oauth": {"client_metadata_url": "http://gw.example.com/cimd"}}, "https"),
        ({"oauth": {"clients": {ISSUER: {"client_id": ""}}}}, "client_id"),
        ({"oauth": {"scope": ["typo"]}}, "scope"),
    ]:
        with pytest.raises(ValidationError, match=match):
            UpstreamAuth.model_validate(bad)


def test_callback_url_is_at_the_public_origin(idp, tmp_path) -> None:
    config = make_config({"up": {"url": "https://mcp.example.com/mcp",
                                 "auth": {"oauth": {}}}})
    assert callback_url(config, "127.0.0.1", 8080) == f"http://127.0.0.1:8080{CALLBACK_PATH}"
    secured_config = secured(idp, tmp_path)
    assert callback_url(secured_config, "127.0.0.1", 8080) == \
        f"https://gw.example.com{CALLBACK_PATH}"


def test_oauth_needs_an_http_upstream() -> None:
    with pytest.raises(ValidationError, match="for HTTP upstreams"):
        make_config({"up": {"command": "true", "auth": {"oauth": {}}}})


async def test_user_upstreams_get_bad_input(tmp_path) -> None:
    store = EncryptedTokenStore.in_state_dir(tmp_path, KEY)
    config = make_config({"up": {"url": "https://mcp.example.com/mcp",
                                 "auth": {"oauth": {}}},
                          "plain": {"url": "https://plain.example.com/mcp"}})
    users = UserUpstreams(config.upstreams, store=store, authorizations=Authorizations(),
                          redirect_uri=REDIRECT_URI)
    assert users.handles("up") and not users.handles("plain") and not users.handles(None)
    with pytest.raises(KeyError, match="per-user OAuth"):
        await users.get("alice", "plain")
    with pytest.raises(ValueError, match="binding"):
        await users.get("", "up")
    await users.aclose()


async def test_a_principal_the_policy_refuses_starts_no_authorization(
        rig, idp, tmp_path, gateway_http) -> None:
    authority, mcp = await rig.stack()
    live = await gateway_http(_gateway_config(idp, tmp_path, mcp))
    visitor = idp.mint(sub="visitor", roles=["visitor"])
    async with connect_http(live.url, bearer_token=visitor, mode="modern") as client:
        with pytest.raises(MCPError) as refused:
            await client.request("tools/call", {"name": TOOL, "arguments": {}})
    assert refused.value.code == -32602 and "unknown tool" in refused.value.message
    assert not mcp.seen and not authority.tokens
    principal = await live.authenticator.authenticate(
        {"authorization": f"Bearer {visitor}"}, b"")
    assert live.gateway.authorizations.waiting(principal.binding, "up") is None
