"""The OAuth client behind the HTTP channel (`connect_http(url, oauth=OAuthProvider(...))`),
end to end against a real authorization server and Bastion's fixture MCP server behind a
bearer check, in both eras: first authorization, step-up and its limit, refresh before
expiry and after a 401, a change of authorization server (SPEC-AUTH-09), stored tokens,
concurrency, the loop guard, and that no secret reaches a log line (SPEC-AUTH-12).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bastion.client import connect_http
from bastion.client.oauth import MemoryTokenStore, OAuthClientSettings, PreRegisteredClient
from bastion.protocol.errors import MCPError
from tests.oauth.conftest import REDIRECT_URI, ASOptions, MockAS, ResourceOptions

pytestmark = pytest.mark.timeout(30)

TOOL = "test_simple_text"


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_first_request_authorizes_and_every_request_carries_the_token(rig, mode) -> None:
    authority, mcp = await rig.stack()
    provider = rig.provider(mcp.url)
    async with connect_http(mcp.url, mode=mode, oauth=provider) as client:
        assert await client.list_tools()
        result = await client.call_tool(TOOL, {})
    assert result["content"][0]["text"].startswith("This is a simple text")
    assert provider.authorizations == 1
    first, *rest = mcp.seen
    assert first[1] is None  # the unauthenticated attempt that was challenged
    token = provider.tokens.access_token
    assert {authorization for _method, authorization in rest} == {f"Bearer {token}"}
    assert authority.tokens[token].resource == mcp.resource


@pytest.mark.parametrize("mode", ["legacy", "modern"])
async def test_step_up_unites_scopes_and_then_stops(rig, mode) -> None:
    authority, mcp = await rig.stack(
        ASOptions(withhold=["mcp:admin"]),
        ResourceOptions(challenge_scope="mcp:basic", call_scopes=["mcp:write"]))
    provider = rig.provider(mcp.url)
    async with connect_http(mcp.url, mode=mode, oauth=provider) as client:
        await client.call_tool(TOOL, {})  # 403 insufficient_scope -> step-up -> success
        assert [q.get("scope") for q in authority.authorize_requests] == [
            "mcp:basic", "mcp:write mcp:basic"]
        mcp.options.call_scopes = ["mcp:admin"]  # a scope the server will never grant
        calls_before = sum(method == "tools/call" for method, _ in mcp.seen)
        with pytest.raises(MCPError, match="HTTP 403"):
            await client.call_tool(TOOL, {})
        assert provider.authorizations == 3  # one step-up attempt for mcp:admin, no more
        with pytest.raises(MCPError, match="HTTP 403"):
            await client.call_tool(TOOL, {})  # already asked for: no new authorization
        assert provider.authorizations == 3
    calls = sum(method == "tools/call" for method, _ in mcp.seen) - calls_before
    assert calls == 3  # 403, the re-sent request after the step-up, and the next call


async def test_token_is_refreshed_before_it_expires(rig) -> None:
    authority, mcp = await rig.stack(ASOptions(expires_in=5))
    provider = rig.provider(mcp.url, refresh_leeway=10)
    async with connect_http(mcp.url, mode="modern", oauth=provider) as client:
        first = provider.tokens.access_token
        await client.list_tools()
        assert provider.tokens.access_token != first
        assert authority.token_requests[-1][0]["grant_type"] == "refresh_token"
        assert mcp.seen[-1][1] == f"Bearer {provider.tokens.access_token}"
    assert provider.authorizations == 1


async def test_an_expiring_token_without_renewal_is_used_to_its_end(rig) -> None:
    """A failed refresh is not retried on every request, the token is sent until it expires,
    and an expired token is not sent at all (the 401 leads to a new authorization)."""
    authority, mcp = await rig.stack(ASOptions(expires_in=2, refresh_fails=True))
    provider = rig.provider(mcp.url, refresh_leeway=10)
    async with connect_http(mcp.url, mode="modern", oauth=provider) as client:
        token = provider.tokens.access_token
        await client.list_tools()
        await client.list_tools()
        assert [form["grant_type"] for form, _ in authority.token_requests] == [
            "authorization_code", "refresh_token"]
        assert mcp.seen[-1][1] == f"Bearer {token}"
        await asyncio.sleep(2.1)
        await client.list_tools()
        assert mcp.seen[-2][1] is None  # expired: nothing sent, and challenged
        assert provider.authorizations == 2


async def test_a_rejected_token_is_refreshed_then_reauthorized(rig) -> None:
    authority, mcp = await rig.stack()
    provider = rig.provider(mcp.url)
    async with connect_http(mcp.url, mode="modern", oauth=provider) as client:
        authority.tokens.clear()  # the server forgets every token: 401 invalid_token
        await client.list_tools()
        assert provider.authorizations == 1
        assert authority.token_requests[-1][0]["grant_type"] == "refresh_token"
        authority.tokens.clear()
        authority.options.refresh_fails = True
        await client.list_tools()
        assert provider.authorizations == 2


async def test_SPEC_AUTH_09_new_authorization_server_means_new_registration(rig) -> None:
    first, mcp = await rig.stack(ASOptions(name="first"))
    second = MockAS(ASOptions(name="second"))
    await rig.serve(second)
    store = MemoryTokenStore()
    provider = rig.provider(mcp.url, store=store)
    async with connect_http(mcp.url, mode="legacy", oauth=provider) as client:
        await client.list_tools()
        mcp.authority = second  # PRM now names another issuer; first's tokens are refused
        await client.call_tool(TOOL, {})
    assert len(first.registrations) == 1 and len(second.registrations) == 1
    assert (await store.get_client(first.issuer)).client_id == "dcr-first-1"
    assert (await store.get_client(second.issuer)).client_id == "dcr-second-1"
    presented = [query["client_id"] for query in second.authorize_requests]
    presented += [form.get("client_id") or second.basic_client_id(basic)
                  for form, basic in second.token_requests]
    assert presented == ["dcr-second-1", "dcr-second-1"]  # never the first server's id
    assert provider.tokens.issuer == second.issuer and provider.tokens.client_id == presented[0]


async def test_SPEC_AUTH_09_client_ids_never_cross_issuers(rig) -> None:
    """Pre-registered credentials are for their issuer only; another issuer gets DCR."""
    first, mcp = await rig.stack(ASOptions(registration=False))
    settings = OAuthClientSettings(redirect_uri=REDIRECT_URI, clients={
        "https://someone-else.example": PreRegisteredClient("someone-elses-id")})
    provider = rig.provider(mcp.url, settings)
    with pytest.raises(MCPError, match="no client identity"):
        async with connect_http(mcp.url, mode="legacy", oauth=provider):
            pass
    assert first.authorize_requests == []


async def test_stored_tokens_serve_a_new_connection(rig) -> None:
    authority, mcp = await rig.stack()
    store = MemoryTokenStore()
    async with connect_http(mcp.url, mode="modern", oauth=rig.provider(mcp.url, store=store)):
        pass
    again = rig.provider(mcp.url, store=store)
    async with connect_http(mcp.url, mode="modern", oauth=again) as client:
        await client.list_tools()
    assert again.authorizations == 0 and len(authority.authorize_requests) == 1


async def test_concurrent_refusals_share_one_renewal(rig) -> None:
    authority, mcp = await rig.stack()
    provider = rig.provider(mcp.url)
    async with connect_http(mcp.url, mode="modern", oauth=provider) as client:
        authority.tokens.clear()
        before = len(authority.token_requests)
        results = await asyncio.gather(*(client.call_tool(TOOL, {}) for _ in range(5)))
    assert len(results) == 5
    assert len(authority.token_requests) == before + 1  # one refresh for all five


async def test_a_server_that_refuses_every_token_stops_the_loop(rig) -> None:
    """Each refused request is re-sent once after a renewal (the first an authorization,
    then refreshes); after `max_renewals` in a minute the provider gives up at once."""
    authority, mcp = await rig.stack(resource_options=ResourceOptions(reject_all=True))
    provider = rig.provider(mcp.url, max_renewals=3)
    errors = []
    for _ in range(5):
        with pytest.raises(MCPError) as caught:
            async with connect_http(mcp.url, mode="legacy", oauth=provider):
                pass
        errors.append(str(caught.value))
    assert provider.authorizations == 1
    assert [form["grant_type"] for form, _ in authority.token_requests] == [
        "authorization_code", "refresh_token", "refresh_token"]
    assert all("giving up rather than looping" in error for error in errors[3:])
    assert len([m for m, _ in mcp.seen if m == "initialize"]) == 3 * 2 + 2


async def test_without_an_authorizer_the_request_fails_with_the_reason(rig) -> None:
    authority, mcp = await rig.stack()
    with pytest.raises(MCPError, match="no authorizer"):
        async with connect_http(mcp.url, mode="legacy",
                                oauth=rig.provider(mcp.url, authorizer=None)):
            pass
    login, login_mcp = await rig.stack(ASOptions(login_page=True))
    with pytest.raises(MCPError, match="headless client cannot"):
        async with connect_http(login_mcp.url, mode="legacy", oauth=rig.provider(login_mcp.url)):
            pass
    assert authority.authorize_requests == [] and len(login.authorize_requests) == 1


async def test_static_credentials_give_way_to_the_provider(rig) -> None:
    _authority, mcp = await rig.stack()
    async with connect_http(mcp.url, mode="modern", auth={"authorization": "Bearer static"},
                            oauth=rig.provider(mcp.url)) as client:
        await client.list_tools()
    assert all(authorization != "Bearer static" for _method, authorization in mcp.seen)


async def test_SPEC_AUTH_12_no_secret_reaches_a_log_line(rig, caplog) -> None:
    authority, mcp = await rig.stack(ASOptions(auth_methods=["client_secret_post"],
                                               dcr_method="client_secret_post",
                                               dcr_secret="dcr-secret-canary", expires_in=5))
    caplog.set_level(logging.DEBUG)
    provider = rig.provider(mcp.url, refresh_leeway=10)
    async with connect_http(mcp.url, mode="modern", oauth=provider) as client:
        await client.list_tools()
        authority.tokens.clear()
        await client.call_tool(TOOL, {})
    forms = [form for form, _auth in authority.token_requests]
    secrets = {form.get(key) for form in forms
               for key in ("code", "code_verifier", "refresh_token", "client_secret")}
    secrets |= set(authority.tokens) | {"dcr-secret-canary"}
    secrets.discard(None)
    assert len(secrets) > 5
    logged = caplog.text + repr(provider.tokens) + repr(await provider.flow.store.get_client(
        authority.issuer))
    assert "authorization" in caplog.text.lower()  # the flow did log, just not its secrets
    leaked = [secret for secret in secrets if secret in logged]
    assert leaked == []
