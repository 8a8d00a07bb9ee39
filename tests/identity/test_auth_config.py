"""The `auth:` configuration section: its shape, its defaults and its lint (SPEC-AUTH-04)."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from bastion.config.auth import AuthConfig, canonical_resource, listener_resource_url

EXAMPLE = """
mode: jwt
resource: https://GW.example.com:443/mcp/
issuers:
  - issuer: https://idp.example.com
    jwks_uri: https://idp.example.com/jwks
    algorithms: [RS256, ES256, EdDSA]
    audiences: [api://bastion]
leeway: 30
scopes_supported: [mcp:tools, mcp:admin, edr:write]
required_scopes: [mcp:tools]
scope_rules:
  - {tools: ["edr__*"], scopes: [edr:write]}
claims: {roles: realm_access.roles, groups: groups, scope: [scope, scp],
         client_id: [azp, client_id]}
api_keys: true
allow_insecure_loopback: false
local_roles: [admin]
dev: {token_ttl: 600}
"""


def valid(**changes) -> dict:
    document = yaml.safe_load(EXAMPLE)
    document.update(changes)
    return document


def refused(document: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AuthConfig.model_validate(document)


def test_the_documented_shape_validates():
    config = AuthConfig.model_validate(valid())
    assert config.resource == "https://gw.example.com/mcp"
    assert config.issuers[0].algorithms == ["RS256", "ES256", "EdDSA"]
    assert config.claims.paths("roles") == ("realm_access.roles",)
    assert config.claims.paths("client_id") == ("azp", "client_id")
    assert config.published_scopes() == ["mcp:tools", "mcp:admin", "edr:write"]
    assert config.dev.token_ttl == 600


def test_defaults_authenticate_nobody():
    config = AuthConfig()
    assert (config.mode, config.api_keys, config.leeway) == ("none", True, 30)
    assert config.issuers == [] and config.published_scopes() == []


@pytest.mark.parametrize(("given", "canonical"), [
    ("HTTPS://GW.Example.COM/MCP/", "https://gw.example.com/MCP"),
    ("https://gw.example.com:443/mcp#frag", "https://gw.example.com/mcp"),
    ("http://127.0.0.1:80/", "http://127.0.0.1"),
    ("http://[::1]:8848/mcp", "http://[::1]:8848/mcp"),
])
def test_SPEC_AUTH_05_resource_urls_are_canonical(given, canonical):
    assert canonical_resource(given) == canonical
    assert AuthConfig().resource_url(given) == canonical


def test_resource_url_prefers_the_configured_resource_and_derives_from_the_listener():
    config = AuthConfig(resource="https://gw.example.com/mcp")
    assert config.resource_url("http://127.0.0.1:8848/mcp") == "https://gw.example.com/mcp"
    assert listener_resource_url("127.0.0.1", 8848, "/mcp") == "http://127.0.0.1:8848/mcp"
    assert listener_resource_url("::1", 80, "/mcp/") == "http://[::1]/mcp"


@pytest.mark.parametrize("url", ["ftp://gw.example.com/mcp", "https:///mcp", "gw.example.com",
                                 "https://user:pw@gw.example.com/mcp", "https://gw:99999/"])
def test_bad_resource_urls_are_refused(url):
    with pytest.raises(ValueError):
        canonical_resource(url)
    refused(valid(resource=url), "resource")


@pytest.mark.parametrize("scope", ["*", "all", "ALL", "offline_access", "admin:*", "mcp:*",
                                   "two words", 'quo"te', ""])
def test_SPEC_AUTH_04_wildcard_omnibus_and_malformed_scopes_are_refused(scope):
    refused(valid(scopes_supported=[scope]), "scope")
    refused(valid(scopes_supported=[], required_scopes=[scope]), "scope")
    refused(valid(scopes_supported=[], scope_rules=[{"tools": ["x"], "scopes": [scope]}]),
            "scope")


@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS512", "RSA1_5", "ES256K"])
def test_SPEC_TP_03_symmetric_and_unsafe_algorithms_are_refused(algorithm):
    document = valid()
    document["issuers"][0]["algorithms"] = [algorithm]
    refused(document, "not accepted")


def test_inconsistent_settings_are_refused():
    refused(valid(issuers=[]), "at least one entry under `issuers`")
    refused(valid(issuers=[{"issuer": "https://a.example"}, {"issuer": "https://a.example"}]),
            "listed twice")
    refused(valid(required_scopes=["mcp:other"]), "missing from scopes_supported")
    refused(valid(scope_rules=[{"scopes": ["edr:write"]}]), "at least one of")
    refused(valid(leeway=301), "leeway")
    refused(valid(mode="oauth"), "mode")
    refused(valid(claims={"roles": "bad path!"}), "claim path")
    refused(valid(claims={"roles": []}), "at least one claim")
    refused(valid(dev={"token_ttl": 10}), "token_ttl")
    refused(valid(unknown_key=1), "unknown_key")


def test_SPEC_SSRF_01_issuer_urls_must_be_https_unless_loopback_is_opted_in():
    refused(valid(issuers=[{"issuer": "http://idp.example.com"}]), "https")
    refused(valid(issuers=[{"issuer": "http://127.0.0.1:8080"}]), "allow_insecure_loopback")
    refused(valid(issuers=[{"issuer": "https://idp.example.com",
                            "jwks_uri": "http://10.0.0.5/jwks"}], allow_insecure_loopback=True),
            "https")
    config = AuthConfig.model_validate(valid(
        issuers=[{"issuer": "http://127.0.0.1:8080", "jwks_uri": "http://localhost:8080/k"}],
        allow_insecure_loopback=True))
    assert config.issuers[0].issuer == "http://127.0.0.1:8080"
