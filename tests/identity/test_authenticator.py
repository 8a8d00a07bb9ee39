"""The authenticator's own duties: protected resource metadata, challenges, scope step-up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.config.auth import AuthConfig
from bastion.guard.identity import Authenticator, build_authenticator, mint_dev_token
from bastion.guard.identity.dev_issuer import load_or_create_dev_key
from bastion.protocol.principal import Principal
from bastion.transport.http.auth import AuthChallenge, HttpAuthenticator
from tests.identity.helpers import challenge_params

pytestmark = pytest.mark.timeout(20)
RESOURCE = "https://gw.example.com/mcp"

RULES = [
    {"tools": ["edr__*"], "scopes": ["edr:write"]},
    {"tools": ["edr__isolate_host"], "scopes": ["edr:isolate"]},
    {"prompts": ["incident_*"], "scopes": ["ir:read"]},
    {"resources": ["file:///secrets/*"], "scopes": ["secrets:read"]},
    {"methods": ["logging/setLevel"], "scopes": ["mcp:admin"]},
]


def config(**overrides) -> AuthConfig:
    return AuthConfig.model_validate({
        "mode": "jwt", "resource": RESOURCE,
        "issuers": [{"issuer": "https://idp.example.com"},
                    {"issuer": "https://login.example.org/tenant",
                     "jwks_uri": "https://login.example.org/keys"}],
        "required_scopes": ["mcp:tools"], "scope_rules": RULES, **overrides})


@pytest.fixture
async def auth(tmp_path) -> AsyncIterator[Authenticator]:
    authenticator = build_authenticator(config(), resource_url=RESOURCE, state_dir=tmp_path)
    assert authenticator is not None
    yield authenticator
    await authenticator.aclose()


def who(*scopes: str) -> Principal:
    return Principal(subject="alice", issuer="https://idp.example.com", method="jwt",
                     scopes=frozenset(scopes))


def test_SPEC_AUTH_01_protected_resource_metadata_has_its_required_fields(auth):
    document = auth.protected_resource_metadata()
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"] == ["https://idp.example.com",
                                                 "https://login.example.org/tenant"]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["resource_name"] == "Bastion"
    assert document["scopes_supported"] == ["mcp:tools", "edr:write", "edr:isolate", "ir:read",
                                            "secrets:read", "mcp:admin"]
    assert auth.metadata_paths() == ["/.well-known/oauth-protected-resource/mcp",
                                     "/.well-known/oauth-protected-resource"]


def test_SPEC_AUTH_04_metadata_publishes_no_wildcard_or_offline_scope(tmp_path):
    for document in [config().model_dump(),
                     config(scopes_supported=["mcp:tools", "edr:write", "edr:isolate",
                                              "ir:read", "secrets:read", "mcp:admin",
                                              "mcp:extra"]).model_dump()]:
        authenticator = build_authenticator(AuthConfig.model_validate(document),
                                            resource_url=RESOURCE, state_dir=tmp_path)
        scopes = authenticator.protected_resource_metadata()["scopes_supported"]
        assert scopes and not any("*" in s or s.lower() in ("all", "offline_access")
                                  for s in scopes)


def test_SPEC_AUTH_01_metadata_of_a_root_resource(tmp_path):
    authenticator = build_authenticator(config(resource="https://GW.example.com/"),
                                        resource_url="ignored", state_dir=tmp_path)
    assert authenticator.resource_url == "https://gw.example.com"
    assert authenticator.metadata_paths() == ["/.well-known/oauth-protected-resource"]
    assert authenticator.metadata_url == "https://gw.example.com/.well-known/oauth-protected-resource"


def test_SPEC_AUTH_03_insufficient_scope_lists_every_scope_the_operation_needs(auth):
    with pytest.raises(AuthChallenge) as caught:
        auth.check_access(who("mcp:tools", "edr:write"), "tools/call",
                          {"name": "edr__isolate_host", "arguments": {}})
    challenge = caught.value
    params = challenge_params(challenge.www_authenticate)
    assert (challenge.status, challenge.error) == (403, "insufficient_scope")
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "edr:isolate edr:write mcp:tools"
    assert params["resource_metadata"] == (
        "https://gw.example.com/.well-known/oauth-protected-resource/mcp")
    auth.check_access(who("mcp:tools", "edr:write", "edr:isolate"), "tools/call",
                      {"name": "edr__isolate_host"})


@pytest.mark.parametrize(("method", "params", "needs"), [
    ("tools/call", {"name": "edr__list_hosts"}, "edr:write"),
    ("prompts/get", {"name": "incident_summary"}, "ir:read"),
    ("resources/read", {"uri": "file:///secrets/db.txt"}, "secrets:read"),
    ("resources/subscribe", {"uri": "file:///secrets/db.txt"}, "secrets:read"),
    ("completion/complete", {"ref": {"type": "ref/prompt", "name": "incident_x"}}, "ir:read"),
    ("completion/complete", {"ref": {"type": "ref/resource", "uri": "file:///secrets/a"}},
     "secrets:read"),
    ("logging/setLevel", {"level": "debug"}, "mcp:admin"),
])
def test_SPEC_SCOPE_01_scope_rules_step_up(auth, method, params, needs):
    with pytest.raises(AuthChallenge) as caught:
        auth.check_access(who("mcp:tools"), method, params)
    assert needs in challenge_params(caught.value.www_authenticate)["scope"].split()
    auth.check_access(who("mcp:tools", needs), method, params)


@pytest.mark.parametrize(("method", "params"), [
    ("tools/call", {"name": "siem__search"}),
    ("tools/call", {"name": "EDR__upper"}),  # globs are case-sensitive, as names are
    ("tools/list", {}),
    ("prompts/get", {"name": "weekly_report"}),
    ("resources/read", {"uri": "file:///public/readme"}),
    ("tools/call", {"name": ["edr__x"]}),  # not a string: matches no rule
    ("completion/complete", {"ref": "bad"}),
])
def test_SPEC_SCOPE_02_requests_outside_the_rules_need_only_the_required_scopes(
        auth, method, params):
    auth.check_access(who("mcp:tools"), method, params)
    with pytest.raises(AuthChallenge):
        auth.check_access(who(), method, params)


def test_challenge_values_are_quoted(tmp_path):
    authenticator = build_authenticator(config(resource='https://gw.example.com/a"b\\c'),
                                        resource_url=RESOURCE, state_dir=tmp_path)
    with pytest.raises(AuthChallenge) as caught:
        authenticator.check_access(who(), "tools/list", {})
    header = caught.value.www_authenticate
    assert 'resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource' \
           '/a\\"b\\\\c"' in header
    assert challenge_params(header)["resource_metadata"].endswith('/a"b\\c')


async def test_none_mode_builds_nothing_and_the_local_user_gets_local_roles(tmp_path):
    assert build_authenticator(AuthConfig(), resource_url=RESOURCE, state_dir=tmp_path) is None
    authenticator = build_authenticator(
        AuthConfig(mode="dev", local_roles=["admin"]), resource_url=RESOURCE,
        state_dir=tmp_path)
    local = authenticator.local_principal()
    assert (local.method, local.issuer, local.roles) == ("local", "bastion:local", {"admin"})


async def test_authenticator_satisfies_the_http_endpoint_protocol(tmp_path):
    authenticator: HttpAuthenticator = build_authenticator(
        AuthConfig(mode="dev"), resource_url="http://127.0.0.1:8848/mcp", state_dir=tmp_path)
    token = mint_dev_token(load_or_create_dev_key(tmp_path),
                           audience="http://127.0.0.1:8848/mcp", subject="alice")
    principal = await authenticator.authenticate({"authorization": f"Bearer {token}"}, b"")
    authenticator.check_access(principal, "tools/list", {})
    await authenticator.aclose()
