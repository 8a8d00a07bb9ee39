"""The authorization code flow in halves (`OAuthFlow.begin` / `complete` / `refresh`) against a
real mock authorization server: PKCE and `resource` on both legs (SPEC-AUTH-05), the RFC 9207
`iss` table and the mix-up defence (SPEC-AUTH-08), client identity per issuer and in the
specified order (SPEC-AUTH-09, SPEC-AUTH-10), the callback's `state` and shape, token endpoint
client authentication, scope selection, refresh, and bad settings.
"""

from __future__ import annotations

import asyncio
import hashlib
from base64 import urlsafe_b64encode
from urllib.parse import parse_qsl, urlsplit

import pytest

from bastion.client.oauth import (
    AuthorizationDenied,
    AuthorizationExpired,
    AuthorizationResponseError,
    ClientCredentials,
    HeadlessAuthorizer,
    IssuerMismatch,
    MemoryTokenStore,
    OAuthClientSettings,
    OAuthFlow,
    PreRegisteredClient,
    RegistrationError,
    StateMismatch,
    TokenRequestError,
    TokenSet,
    bearer_challenge,
)
from tests.oauth.conftest import REDIRECT_URI, ASOptions, ResourceOptions

pytestmark = pytest.mark.timeout(20)

CIMD_URL = "https://client.example/oauth/metadata.json"


def make_flow(rig, **settings) -> OAuthFlow:
    settings.setdefault("redirect_uri", REDIRECT_URI)
    return OAuthFlow(OAuthClientSettings(**settings), rig.egress())


async def start(rig, flow, mcp, scope_header: str | None = None, **begin):
    challenge = bearer_challenge(mcp.challenge(scope=scope_header))
    return await flow.begin(mcp.url, challenge=challenge, **begin)


async def redirect_of(rig, pending) -> str:
    return await HeadlessAuthorizer(rig.egress())(pending.authorization_url)


def with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[name] = value
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


@pytest.mark.parametrize("prm", ["path", "root"])
async def test_SPEC_AUTH_05_resource_and_pkce_on_both_legs(rig, prm) -> None:
    authority, mcp = await rig.stack(resource_options=ResourceOptions(prm=prm))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    tokens = await flow.complete(pending, await redirect_of(rig, pending))
    (query,) = authority.authorize_requests
    (form, _auth), = authority.token_requests
    assert query["resource"] == form["resource"] == mcp.resource  # as published, both legs
    assert not mcp.resource.endswith("/")
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert query["code_challenge"] == urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["redirect_uri"] == form["redirect_uri"] == REDIRECT_URI
    assert tokens.resource == mcp.resource and tokens.issuer == authority.issuer
    assert authority.tokens[tokens.access_token].resource == mcp.resource
    assert await flow.store.get_tokens(authority.issuer, mcp.resource) == tokens


@pytest.mark.parametrize(("supported", "mode", "accepted"), [
    (True, "correct", True),
    (True, "omit", False),  # promised, missing: rejected
    (True, "wrong", False),
    (True, "normalized", False),  # a trailing slash is a different string
    (False, "correct", True),
    (None, "omit", True),  # not advertised, absent: proceed
    (None, "wrong", False),  # not advertised, present: still compared
    (None, "normalized", False),
])
async def test_SPEC_AUTH_08_iss_checks(rig, supported, mode, accepted) -> None:
    authority, mcp = await rig.stack(ASOptions(iss_supported=supported, iss_mode=mode))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    redirect = await redirect_of(rig, pending)
    if accepted:
        await flow.complete(pending, redirect)
        assert len(authority.token_requests) == 1
    else:
        with pytest.raises(IssuerMismatch):
            await flow.complete(pending, redirect)
        assert authority.token_requests == []  # the code never left


@pytest.mark.parametrize("mode", ["wrong", "omit"])
async def test_SPEC_AUTH_08_error_of_a_mismatched_issuer_is_never_acted_on(rig, mode) -> None:
    _authority, mcp = await rig.stack(ASOptions(iss_mode=mode, deny="access_denied"))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    with pytest.raises(IssuerMismatch) as caught:
        await flow.complete(pending, await redirect_of(rig, pending))
    assert "access_denied" not in str(caught.value) and "said no" not in str(caught.value)


async def test_authorization_denied_with_a_matching_issuer(rig) -> None:
    _authority, mcp = await rig.stack(ASOptions(deny="access_denied"))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    with pytest.raises(AuthorizationDenied) as caught:
        await flow.complete(pending, await redirect_of(rig, pending))
    assert caught.value.error == "access_denied"
    assert caught.value.description == "the user said no"


async def test_SPEC_AUTH_08_mix_up_between_two_authorization_servers(rig) -> None:
    """A response from authorization server B (its code, its iss) presented for a request
    sent to A, even with A's state, is refused: neither token endpoint sees B's code."""
    honest, honest_mcp = await rig.stack()
    attacker, attacker_mcp = await rig.stack()
    flow = make_flow(rig)
    pending_honest = await start(rig, flow, honest_mcp)
    pending_attacker = await start(rig, flow, attacker_mcp)
    forged = with_param(await redirect_of(rig, pending_attacker), "state", pending_honest.state)
    with pytest.raises(IssuerMismatch, match="mix-up"):
        await flow.complete(pending_honest, forged)
    assert honest.token_requests == [] and attacker.token_requests == []


async def test_callback_state_and_shape(rig) -> None:
    authority, mcp = await rig.stack()
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    redirect = await redirect_of(rig, pending)
    with pytest.raises(StateMismatch):
        await flow.complete(pending, with_param(redirect, "state", "forged"))
    params = dict(parse_qsl(urlsplit(redirect).query))
    with pytest.raises(StateMismatch):
        await flow.complete(pending, {k: v for k, v in params.items() if k != "state"})
    with pytest.raises(AuthorizationResponseError, match="repeats"):
        await flow.complete(pending, redirect + "&code=other")
    with pytest.raises(AuthorizationResponseError, match="not to the redirect URI"):
        await flow.complete(pending, redirect.replace("/callback", "/elsewhere"))
    with pytest.raises(AuthorizationResponseError, match="too many"):
        await flow.complete(pending, {f"p{i}": "x" for i in range(40)})
    with pytest.raises(AuthorizationResponseError, match="neither a code"):
        await flow.complete(pending, {k: v for k, v in params.items() if k != "code"})
    assert authority.token_requests == []
    await flow.complete(pending, params)  # the query parameters alone are accepted too
    with pytest.raises(TokenRequestError, match="invalid_grant"):  # a code works once
        await flow.complete(pending, redirect)


async def test_pending_authorization_expires(rig) -> None:
    _authority, mcp = await rig.stack()
    flow = make_flow(rig, pending_ttl=0.05)
    pending = await start(rig, flow, mcp)
    redirect = await redirect_of(rig, pending)
    await asyncio.sleep(0.1)
    with pytest.raises(AuthorizationExpired):
        await flow.complete(pending, redirect)


@pytest.mark.parametrize(("case", "expected"), [
    ("pre-registered", "pre-id"),
    ("cimd", CIMD_URL),
    ("cimd-unsupported", "dcr-client-1"),
    ("pre-registered-elsewhere", "dcr-client-1"),
    ("nothing", None),
])
async def test_SPEC_AUTH_10_registration_order(rig, case, expected) -> None:
    authority, mcp = await rig.stack(ASOptions(
        cimd=case != "cimd-unsupported", registration=case != "nothing"))
    settings: dict = {}
    if case in ("cimd", "cimd-unsupported", "pre-registered"):
        settings["client_metadata_url"] = CIMD_URL
    if case == "pre-registered":
        settings["clients"] = {authority.issuer: PreRegisteredClient("pre-id", "pre-secret")}
    if case == "pre-registered-elsewhere":
        settings["clients"] = {"https://other-as.example": PreRegisteredClient("pre-id", "s")}
    flow = make_flow(rig, **settings)
    if expected is None:
        with pytest.raises(RegistrationError, match="pre-register"):
            await start(rig, flow, mcp)
        return
    pending = await start(rig, flow, mcp)
    assert pending.client.client_id == expected
    await flow.complete(pending, await redirect_of(rig, pending))
    (form, basic), = authority.token_requests
    assert (form.get("client_id") or authority.basic_client_id(basic)) == expected
    if expected.startswith("dcr"):
        (registration,) = authority.registrations
        assert registration["application_type"] == "native"
        assert "refresh_token" in registration["grant_types"]
        assert registration["redirect_uris"] == [REDIRECT_URI]
        await start(rig, flow, mcp)  # SPEC-AUTH-09: the issuer's registration is reused
        assert len(authority.registrations) == 1
    else:
        assert authority.registrations == []


@pytest.mark.parametrize(("methods", "dcr_method", "secret", "expected"), [
    (["client_secret_basic"], "client_secret_basic", "s3cret", "basic"),
    (["client_secret_post"], "client_secret_post", "s3cret", "post"),
    (["none"], "none", None, "none"),
    (["none"], None, "s3cret", "none"),  # a secret the server does not want is not sent
    (["client_secret_post", "client_secret_basic"], None, "s3cret", "basic"),
])
async def test_token_endpoint_client_authentication(rig, methods, dcr_method, secret,
                                                    expected) -> None:
    authority, mcp = await rig.stack(ASOptions(auth_methods=methods, dcr_method=dcr_method,
                                               dcr_secret=secret))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    await flow.complete(pending, await redirect_of(rig, pending))
    (form, basic), = authority.token_requests
    used = "basic" if basic else "post" if "client_secret" in form else "none"
    assert used == expected
    if basic:
        assert authority.basic_client_id(basic) == "dcr-client-1"
        assert "client_id" not in form


@pytest.mark.parametrize(("header", "supported", "as_scopes", "expected"), [
    ("mcp:basic", ["mcp:read", "mcp:write"], None, "mcp:basic"),
    (None, ["mcp:read", "mcp:write"], None, "mcp:read mcp:write"),
    (None, None, None, None),
    (None, ["mcp:read"], ["mcp:read", "offline_access"], "mcp:read offline_access"),
    (None, None, ["offline_access"], None),  # nothing asked for: no offline_access alone
])
async def test_scope_selection(rig, header, supported, as_scopes, expected) -> None:
    authority, mcp = await rig.stack(ASOptions(scopes_supported=as_scopes),
                                     ResourceOptions(scopes_supported=supported))
    pending = await start(rig, make_flow(rig), mcp, header)
    await redirect_of(rig, pending)
    assert authority.authorize_requests[0].get("scope") == expected
    without = await start(rig, make_flow(rig, offline_access=False), mcp, header)
    assert "offline_access" not in without.scopes


async def test_step_up_scopes_are_a_union(rig) -> None:
    _authority, mcp = await rig.stack()
    pending = await start(rig, make_flow(rig), mcp, "mcp:write",
                          previous_scopes=("mcp:basic", "mcp:write"))
    assert pending.scopes == ("mcp:write", "mcp:basic")


async def test_refresh_rotates_and_fails_cleanly(rig) -> None:
    authority, mcp = await rig.stack()
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    tokens = await flow.complete(pending, await redirect_of(rig, pending))
    discovery = await flow.discover(mcp.url, bearer_challenge(mcp.challenge()))
    renewed = await flow.refresh(tokens, discovery)
    assert renewed.access_token != tokens.access_token
    assert renewed.refresh_token not in (None, tokens.refresh_token)
    form, _ = authority.token_requests[-1]
    assert form["grant_type"] == "refresh_token" and form["resource"] == mcp.resource
    with pytest.raises(TokenRequestError, match="invalid_grant") as caught:
        await flow.refresh(tokens, discovery)  # the rotated-out refresh token
    assert caught.value.error == "invalid_grant" and caught.value.status == 400
    other_authority, other_mcp = await rig.stack()
    elsewhere = await flow.discover(other_mcp.url, bearer_challenge(other_mcp.challenge()))
    with pytest.raises(TokenRequestError, match="authorize again"):
        await flow.refresh(renewed, elsewhere)  # never sent to another issuer
    assert other_authority.token_requests == []


async def test_only_bearer_tokens_are_accepted(rig) -> None:
    _authority, mcp = await rig.stack(ASOptions(token_type="DPoP"))
    flow = make_flow(rig)
    pending = await start(rig, flow, mcp)
    with pytest.raises(TokenRequestError, match="only Bearer"):
        await flow.complete(pending, await redirect_of(rig, pending))


@pytest.mark.parametrize("options", [
    {"redirect_uri": "http://evil.example/callback"},
    {"redirect_uri": "javascript:alert(1)"},
    {"redirect_uri": "https://ok.example/cb#frag"},
    {"redirect_uri": "https://"},
    {"redirect_uri": REDIRECT_URI, "client_metadata_url": "http://client.example/m.json"},
    {"redirect_uri": REDIRECT_URI, "client_metadata_url": "https://client.example/"},
    {"redirect_uri": REDIRECT_URI, "pending_ttl": 0},
])
def test_settings_bad_input(options) -> None:
    with pytest.raises(ValueError):
        OAuthClientSettings(**options)


@pytest.mark.parametrize(("client_id", "secret", "method"), [
    ("", None, None), ("id", None, "client_secret_basic"), ("id", "s", "private_key_jwt"),
])
def test_pre_registered_client_bad_input(client_id, secret, method) -> None:
    with pytest.raises(ValueError):
        PreRegisteredClient(client_id, secret, method)
    assert "s3cret" not in repr(PreRegisteredClient("id", "s3cret"))


async def test_memory_store_is_bounded_and_keyed_per_issuer_and_resource() -> None:
    store = MemoryTokenStore(max_entries=2)
    for n in range(3):
        await store.put_tokens(TokenSet(f"token-{n}", "https://as", f"https://rs/{n}", "c"))
    assert await store.get_tokens("https://as", "https://rs/0") is None  # the oldest went
    assert (await store.get_tokens("https://as", "https://rs/2")).access_token == "token-2"
    assert await store.get_tokens("https://other-as", "https://rs/2") is None
    await store.put_client(ClientCredentials("https://as", "id", "client-secret-canary"))
    assert await store.get_client("https://other-as") is None
    await store.delete_client("https://as")
    await store.delete_tokens("https://as", "https://rs/2")
    assert await store.get_client("https://as") is None
    assert await store.get_tokens("https://as", "https://rs/2") is None
    shown = repr(TokenSet("token-canary", "i", "r", "c", refresh_token="refresh-canary"))
    assert "canary" not in shown + repr(ClientCredentials("i", "c", "client-secret-canary"))
