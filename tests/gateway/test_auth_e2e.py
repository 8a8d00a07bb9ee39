"""Identity and policy end to end: a running gateway (`auth: {mode: jwt}`) with a real
identity provider (JWKS over HTTP), the demo SOC servers as stdio upstreams, and real clients
(Bastion's in both eras, the official SDK's, raw HTTP for the bad input).

Every bad credential is refused with the right status and no side effect: the refused
request tries to isolate a host, and the EDR upstream must still show every host connected.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import httpx2
import orjson
import pytest
from mcp import Client as SdkClient
from mcp.client.streamable_http import streamable_http_client

from bastion.client import connect_http
from bastion.guard.identity import ApiKeyStore
from bastion.protocol.errors import MCPError
from bastion.protocol.meta import CLIENT_CAPABILITIES, PROTOCOL_VERSION
from bastion.protocol.versions import LATEST_LEGACY, LATEST_MODERN
from tests.gateway.conftest import LiveGateway, make_config
from tests.gateway.test_credentials import RecordingAuthenticator
from tests.identity.conftest import RESOURCE, Idp, key
from tests.identity.helpers import b64, challenge_params, forge

pytestmark = pytest.mark.timeout(60)

SOC = [sys.executable, "-m", "bastion.testing.soc"]
POLICY = {"rules": [
    {"name": "read-only-for-the-soc", "effect": "allow", "roles": ["analyst", "responder"],
     "classes": ["read-only"]},
    {"name": "responders-contain-hosts", "effect": "allow", "roles": ["responder"],
     "tools": ["edr__isolate_host", "edr__release_host"]},
    {"name": "never-isolate-servers", "effect": "deny", "tools": ["edr__isolate_host"],
     "args": {"host": {"pattern": "^srv-"}}},
    {"name": "fixture", "effect": "allow", "roles": ["analyst"], "upstreams": ["up"]},
]}
ISOLATE = {"name": "edr__isolate_host", "arguments": {"host": "ws-017", "reason": "test"}}
ACCEPT = "application/json, text/event-stream"


def secured(idp: Idp, tmp_path, upstreams: dict[str, Any] | None = None, **auth: Any):
    upstreams = upstreams or {
        "siem": {"command": SOC[0], "args": [*SOC[1:], "siem"]},
        "edr": {"command": SOC[0], "args": [*SOC[1:], "edr"]},
    }
    settings = {"mode": "jwt", "resource": RESOURCE, "allow_insecure_loopback": True,
                "issuers": [{"issuer": idp.issuer, "jwks_uri": idp.jwks_uri}],
                "scopes_supported": ["mcp:tools", "edr:write"],
                "scope_rules": [{"tools": ["edr__isolate_host"], "scopes": ["edr:write"]}],
                **auth}
    return make_config(upstreams, auth=settings, policy=POLICY, state_dir=str(tmp_path))


@pytest.fixture
async def live(idp: Idp, tmp_path, gateway_http) -> LiveGateway:
    return await gateway_http(secured(idp, tmp_path))


def modern_call(params: dict[str, Any], method: str = "tools/call") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method,
            "params": {**params, "_meta": {PROTOCOL_VERSION: LATEST_MODERN,
                                           CLIENT_CAPABILITIES: {}}}}


def modern_headers(token: str | None, name: str | None = "edr__isolate_host",
                   method: str = "tools/call") -> dict[str, str]:
    headers = {"accept": ACCEPT, "content-type": "application/json",
               "mcp-protocol-version": LATEST_MODERN, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url, content=orjson.dumps(body), headers=headers)


async def isolated_hosts(live: LiveGateway, idp: Idp) -> set[str]:
    """What the EDR upstream says is isolated (asked with a responder's token)."""
    async with connect_http(live.url, bearer_token=idp.mint(roles=["responder"])) as client:
        result = await client.call_tool("edr__list_hosts", {})
    hosts = orjson.loads(result["content"][0]["text"])
    return {h["host"] for h in (hosts if isinstance(hosts, list) else [hosts]) if h["isolated"]}


# -- the challenge and the metadata ---------------------------------------------------------


async def test_SPEC_AUTH_01_02_missing_token_gets_a_challenge_and_the_metadata(live, idp):
    answer = await post(live.url, modern_call(ISOLATE), modern_headers(None))
    assert answer.status_code == 401
    params = challenge_params(answer.headers["www-authenticate"])
    assert "error" not in params
    metadata_url = params["resource_metadata"]
    # At the origin of the configured resource URL (where clients reach the gateway).
    assert metadata_url == "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
    metadata_url = f"http://127.0.0.1:{live.port}/.well-known/oauth-protected-resource/mcp"
    async with httpx.AsyncClient() as http:
        for url in (metadata_url, metadata_url.removesuffix("/mcp")):
            document = (await http.get(url)).json()
            assert document["resource"] == RESOURCE
            assert document["authorization_servers"] == [idp.issuer]
            assert "offline_access" not in document.get("scopes_supported", [])
        assert (await http.get(f"http://127.0.0.1:{live.port}/elsewhere")).status_code == 404
        foreign = await http.get(metadata_url, headers={"host": "attacker.example"})
        assert foreign.status_code == 403  # the Host check covers every path
    assert await isolated_hosts(live, idp) == set()


def _bad_tokens(idp: Idp) -> dict[str, str]:
    now = int(__import__("time").time())
    public_pem = key("rsa1").as_pem(private=False)
    claims = idp.claims(roles=["responder"], scope="mcp:tools edr:write")
    return {
        "expired (SPEC-TP-03)": idp.mint(exp=now - 600, iat=now - 900),
        "not yet valid": idp.mint(nbf=now + 600),
        "wrong audience (SPEC-TP-01)": idp.mint(aud="https://other.example"),
        "another resource of this host": idp.mint(aud="https://gw.example.com/other"),
        "wrong issuer": idp.mint(iss="https://evil.example"),
        "alg none": forge({"alg": "none", "typ": "at+jwt", "kid": "rsa1"}, claims),
        "HS256 keyed with the RSA public key": forge(
            {"alg": "HS256", "typ": "at+jwt", "kid": "rsa1"}, claims, public_pem),
        "unknown kid": idp.mint(key("rsa9")),
        "bad signature": idp.mint()[:-8] + b64(b"tampered"),
    }


async def test_bad_tokens_are_refused_with_401_and_no_side_effect(live, idp):
    for why, token in _bad_tokens(idp).items():
        answer = await post(live.url, modern_call(ISOLATE), modern_headers(token))
        assert answer.status_code == 401, why
        params = challenge_params(answer.headers["www-authenticate"])
        assert params["error"] == "invalid_token", why
        assert token not in answer.text and token not in answer.headers["www-authenticate"]
    assert await isolated_hosts(live, idp) == set()


async def test_SPEC_TP_04_token_in_the_query_and_malformed_headers(live, idp):
    token = idp.mint(roles=["responder"], scope="mcp:tools edr:write")
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{live.url}?access_token={token}",
                                 content=orjson.dumps(modern_call(ISOLATE)),
                                 headers=modern_headers(None))
    assert answer.status_code == 401
    for header in (f"Basic {token}", f"Bearer {token} {token}", "Bearer", "Bearer a\tb"):
        headers = modern_headers(None) | {"authorization": header}
        answer = await post(live.url, modern_call(ISOLATE), headers)
        assert answer.status_code in (400, 401), header
        assert challenge_params(answer.headers["www-authenticate"])["error"] in (
            "invalid_request", "invalid_token")
    assert await isolated_hosts(live, idp) == set()


async def test_SPEC_AUTH_03_insufficient_scope_is_403_with_every_needed_scope(live, idp):
    token = idp.mint(roles=["responder"], scope="mcp:tools")
    answer = await post(live.url, modern_call(ISOLATE), modern_headers(token))
    assert answer.status_code == 403
    params = challenge_params(answer.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert "edr:write" in params["scope"].split()
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
    assert await isolated_hosts(live, idp) == set()


# -- the policy through real clients ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_analyst_sees_and_calls_only_read_only_tools(live, idp, mode):
    # Even with the scope the step-up rule asks for, the policy is the authority
    # (SPEC-SCOPE-04): a claimed scope is never enough by itself.
    token = idp.mint(scope="mcp:tools edr:write")
    async with connect_http(live.url, mode=mode, bearer_token=token) as client:
        names = {tool["name"] for tool in await client.list_tools()}
        assert names == {"siem__search", "siem__get_alert", "edr__list_hosts"}
        found = await client.call_tool("siem__search", {"query": "ws-017"})
        assert "credential dumping" in found["content"][0]["text"]
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("edr__isolate_host", ISOLATE["arguments"])
        # Exactly what an unknown tool gets: nothing says the tool exists.
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("edr__no_such_tool", {})
        assert hidden.value.code == unknown.value.code == -32602
        assert hidden.value.message.replace("edr__isolate_host", "X") == \
            unknown.value.message.replace("edr__no_such_tool", "X")
    assert await isolated_hosts(live, idp) == set()


async def test_responder_contains_a_workstation_but_never_a_server(live, idp):
    token = idp.mint(sub="bob", roles=["responder"], scope="mcp:tools edr:write")
    async with connect_http(live.url, bearer_token=token) as client:
        done = await client.call_tool("edr__isolate_host", ISOLATE["arguments"])
        assert "ws-017 isolated" in done["content"][0]["text"]
        with pytest.raises(MCPError) as denied:
            await client.call_tool("edr__isolate_host", {"host": "srv-db-02", "reason": "x"})
    assert denied.value.code == -32003
    assert "never-isolate-servers" in denied.value.message
    assert "siem__" not in denied.value.message  # names no other tool
    assert await isolated_hosts(live, idp) == {"ws-017"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_official_sdk_client_with_a_bearer_token(live, idp, mode):
    headers = {"Authorization": f"Bearer {idp.mint()}"}
    async with httpx2.AsyncClient(headers=headers) as http, SdkClient(
            streamable_http_client(live.url, http_client=http), mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"siem__search", "siem__get_alert", "edr__list_hosts"}
        result = await client.call_tool("siem__get_alert", {"alert_id": "A-1001"})
        assert "ws-017" in result.content[0].text


# -- sessions, headers, passthrough ----------------------------------------------------------


async def test_SPEC_SESS_01_02_a_session_belongs_to_its_principal(live, idp):
    alice, mallory = idp.mint(), idp.mint(sub="mallory")
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LATEST_LEGACY, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    base = {"accept": ACCEPT, "content-type": "application/json"}
    opened = await post(live.url, init, base | {"authorization": f"Bearer {alice}"})
    assert opened.status_code == 200
    session = {"mcp-session-id": opened.headers["mcp-session-id"],
               "mcp-protocol-version": LATEST_LEGACY}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    stolen = await post(live.url, listing, base | session | {"authorization": f"Bearer {mallory}"})
    assert stolen.status_code == 404  # as if the session did not exist
    anonymous = await post(live.url, listing, base | session)
    assert anonymous.status_code == 401
    own = await post(live.url, listing, base | session | {"authorization": f"Bearer {alice}"})
    assert own.status_code == 200


async def test_SPEC_HDR_01_headers_that_disagree_with_the_body(live, idp):
    token = idp.mint(sub="bob", roles=["responder"], scope="mcp:tools edr:write")
    answer = await post(live.url, modern_call(ISOLATE), modern_headers(token, "edr__list_hosts"))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32020
    assert await isolated_hosts(live, idp) == set()


async def test_SPEC_TP_02_the_client_token_never_reaches_an_upstream(
        idp, tmp_path, gateway_http, serve):
    recorder = RecordingAuthenticator()
    upstream = await serve(authenticator=recorder)
    config = secured(idp, tmp_path, {"up": {"url": upstream.url}})
    live = await gateway_http(config)
    token = idp.mint()
    async with connect_http(live.url, bearer_token=token) as client:
        result = await client.call_tool("up__test_simple_text", {})
    assert result["content"][0]["text"]
    assert recorder.seen and all(seen is None for seen in recorder.seen)
    assert not any(token in (seen or "") for seen in recorder.seen)


async def test_api_keys_work_until_revoked(idp, tmp_path, gateway_http):
    live = await gateway_http(secured(idp, tmp_path))
    store = ApiKeyStore.in_state_dir(tmp_path)
    api_key, record = store.create(name="soar-bot", subject="alice", roles=["analyst"],
                                   scopes=["mcp:tools"])
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # the gateway reloads its key snapshot every few seconds
        answer = await post(live.url, modern_call({}, "tools/list"),
                            modern_headers(api_key, None, "tools/list"))
        if answer.status_code == 200 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert answer.status_code == 200
    assert {t["name"] for t in answer.json()["result"]["tools"]} >= {"siem__search"}
    store.revoke(record.id)
    deadline = asyncio.get_running_loop().time() + 5
    while answer.status_code == 200 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        answer = await post(live.url, modern_call({}, "tools/list"),
                            modern_headers(api_key, None, "tools/list"))
    assert answer.status_code == 401
    wrong = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
    answer = await post(live.url, modern_call({}, "tools/list"),
                        modern_headers(wrong, None, "tools/list"))
    assert answer.status_code == 401


def test_only_real_authentication_opens_a_non_loopback_listener():
    from bastion.gateway.serve import UnsafeListener, check_listener

    for mode in ("none", "dev"):
        check_listener("127.0.0.1", auth_mode=mode)
        check_listener("::1", auth_mode=mode)
        with pytest.raises(UnsafeListener, match="mode: jwt") as refused:
            check_listener("0.0.0.0", auth_mode=mode)
        assert ("development issuer" in str(refused.value)) == (mode == "dev")
    check_listener("0.0.0.0", auth_mode="jwt")
