"""Discovery (`bastion.client.oauth.discovery`) against real loopback servers: where protected
resource and authorization server metadata are looked for and in which order, and what makes
them unusable (SPEC-AUTH-06, SPEC-AUTH-07, resource mismatch, hostile endpoints), plus the
`WWW-Authenticate` reader.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.client.oauth import (
    DiscoveryError,
    MetadataIssuerMismatch,
    PKCEUnsupported,
    ResourceMismatch,
    bearer_challenge,
    discover,
)
from bastion.client.oauth.challenge import MAX_HEADER, parse_challenges
from bastion.client.oauth.discovery import resource_matches, server_metadata_urls
from tests.oauth.conftest import ASOptions, ResourceOptions

pytestmark = pytest.mark.timeout(20)

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"
PRM_ROOT = "/.well-known/oauth-protected-resource"


async def challenge_of(rig, mcp) -> Any:
    """The real challenge of an unauthenticated request."""
    response = await rig.egress().fetch("POST", mcp.url, body=b"{}",
                                        headers={"Content-Type": "application/json"})
    assert response.status == 401
    return bearer_challenge(response.headers.get("www-authenticate"))


@pytest.mark.parametrize(("prm", "in_header", "expected"), [
    ("path", True, [PRM_PATH]),
    ("path", False, [PRM_PATH]),
    ("root", False, [PRM_PATH, PRM_ROOT]),
    ("custom", True, ["/custom/prm.json"]),
])
async def test_SPEC_AUTH_07_resource_metadata_order(rig, prm, in_header, expected) -> None:
    authority, mcp = await rig.stack(resource_options=ResourceOptions(prm=prm,
                                                                      in_header=in_header))
    found = await discover(rig.egress(), mcp.url, await challenge_of(rig, mcp))
    assert mcp.prm_hits == expected
    assert found.resource.resource == mcp.resource  # exactly as published
    assert found.issuer == authority.issuer


@pytest.mark.parametrize(("prefix", "metadata", "expected"), [
    ("", "oauth-insert", ["/.well-known/oauth-authorization-server"]),
    ("", "oidc-insert", ["/.well-known/oauth-authorization-server",
                         "/.well-known/openid-configuration"]),
    ("/tenant1", "oauth-insert", ["/.well-known/oauth-authorization-server/tenant1"]),
    ("/tenant1", "oidc-insert", ["/.well-known/oauth-authorization-server/tenant1",
                                 "/.well-known/openid-configuration/tenant1"]),
    ("/tenant1", "oidc-append", ["/.well-known/oauth-authorization-server/tenant1",
                                 "/.well-known/openid-configuration/tenant1",
                                 "/tenant1/.well-known/openid-configuration"]),
])
async def test_SPEC_AUTH_07_server_metadata_order(rig, prefix, metadata, expected) -> None:
    authority, mcp = await rig.stack(ASOptions(prefix=prefix, metadata=metadata))
    found = await discover(rig.egress(), mcp.url, await challenge_of(rig, mcp))
    assert authority.hits == expected
    assert found.server.token_endpoint == f"{authority.issuer}/token"
    assert found.server.iss_parameter_supported


@pytest.mark.parametrize("claimed", ["https://honest.example", "{issuer}/", "{upper}"])
async def test_SPEC_AUTH_07_metadata_issuer_mismatch(rig, claimed) -> None:
    """An issuer that differs in any way (another host, a trailing slash, the scheme's case)
    is refused at once: the other well-known locations are not tried."""
    authority, mcp = await rig.stack()
    authority.options.issuer_override = claimed.format(
        issuer=authority.issuer, upper=authority.issuer.replace("http", "HTTP", 1))
    with pytest.raises(MetadataIssuerMismatch, match="mix-up"):
        await discover(rig.egress(), mcp.url, await challenge_of(rig, mcp))
    assert authority.hits == ["/.well-known/oauth-authorization-server"]


@pytest.mark.parametrize("methods", [None, ["plain"], []])
async def test_SPEC_AUTH_06_refuses_without_s256(rig, methods) -> None:
    _authority, mcp = await rig.stack(ASOptions(pkce=methods))
    with pytest.raises(PKCEUnsupported, match="S256"):
        await discover(rig.egress(), mcp.url, await challenge_of(rig, mcp))


@pytest.mark.parametrize("resource", [
    "https://evil.example.com/mcp", "http://127.0.0.1:1/mcp", "{base}/other", "{base}/mcp2",
    "{base}/mcp#frag",
])
async def test_resource_mismatch_is_refused_before_any_authorization(rig, resource) -> None:
    authority, mcp = await rig.stack()
    mcp.options.resource_override = resource.format(base=mcp.base)
    with pytest.raises(ResourceMismatch, match="refusing"):
        await discover(rig.egress(), mcp.url, await challenge_of(rig, mcp))
    assert authority.hits == []


def test_resource_matching_rules() -> None:
    assert resource_matches("https://mcp.example.com/mcp", "https://mcp.example.com/mcp")
    assert resource_matches("https://MCP.example.com", "https://mcp.example.com/mcp")
    assert resource_matches("https://mcp.example.com:443/", "https://mcp.example.com/a/mcp")
    assert resource_matches("https://mcp.example.com/a", "https://mcp.example.com/a/mcp")
    assert not resource_matches("https://mcp.example.com/a", "https://mcp.example.com/ab")
    assert not resource_matches("http://mcp.example.com/mcp", "https://mcp.example.com/mcp")
    assert not resource_matches("https://mcp.example.com:8443", "https://mcp.example.com/mcp")
    assert not resource_matches("https://mcp.example.com/mcp?x=1", "https://mcp.example.com/mcp")
    assert not resource_matches("https://[::1", "https://mcp.example.com/mcp")
    assert server_metadata_urls("https://as.example/t/") == [
        "https://as.example/.well-known/oauth-authorization-server/t",
        "https://as.example/.well-known/openid-configuration/t",
        "https://as.example/t/.well-known/openid-configuration"]


def documents_app(documents: dict[str, Any]) -> Starlette:
    async def serve(request: Request) -> Response:
        doc = documents.get(request.url.path)
        if doc is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        if isinstance(doc, bytes):
            return Response(doc, media_type="application/json")
        return JSONResponse(doc)

    return Starlette(routes=[Route("/{path:path}", serve)])


@pytest.mark.parametrize(("prm", "as_doc", "error"), [
    ({"authorization_servers": ["{base}"]}, None, "`resource` is missing"),
    ({"resource": "{base}/mcp"}, None, "names no authorization_servers"),
    ({"resource": "{base}/mcp", "authorization_servers": "{base}"}, None, "list of strings"),
    ({"resource": "{base}/mcp", "authorization_servers": ["http://169.254.169.254"]}, None,
     "refused"),
    ({"resource": "{base}/mcp", "authorization_servers": ["{base}?tenant=1"]}, None,
     "no query"),
    (b"not json", None, "no protected resource metadata"),
    ({"resource": "{base}/mcp", "authorization_servers": ["{base}"]},
     {"issuer": "{base}", "authorization_endpoint": "{base}/a",
      "token_endpoint": "http://internal.example/token",
      "code_challenge_methods_supported": ["S256"]}, "token_endpoint` is refused"),
    ({"resource": "{base}/mcp", "authorization_servers": ["{base}"]},
     {"issuer": "{base}", "authorization_endpoint": "{base}/a",
      "code_challenge_methods_supported": ["S256"]}, "token_endpoint` is missing"),
    ({"resource": "{base}/mcp", "authorization_servers": ["{base}"]},
     {"issuer": "{base}", "authorization_endpoint": "{base}/a", "token_endpoint": "{base}/t",
      "response_types_supported": ["token"], "code_challenge_methods_supported": ["S256"]},
     "authorization code flow"),
])
async def test_unusable_metadata_is_refused(rig, prm, as_doc, error) -> None:
    documents: dict[str, Any] = {}
    base = await rig.serve(documents_app(documents))

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(base=base)
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    documents[PRM_PATH] = fill(prm)
    if as_doc is not None:
        documents["/.well-known/oauth-authorization-server"] = fill(as_doc)
    with pytest.raises(DiscoveryError, match=error):
        await discover(rig.egress(), f"{base}/mcp")


async def test_hostile_resource_metadata_url_is_refused(rig) -> None:
    _authority, mcp = await rig.stack()
    challenge = bearer_challenge(
        'Bearer resource_metadata="http://169.254.169.254/latest/meta-data/"')
    with pytest.raises(DiscoveryError, match="refused"):
        await discover(rig.egress(), mcp.url, challenge)


def test_www_authenticate_reader_bad_input() -> None:
    assert bearer_challenge(None) is None
    assert bearer_challenge("") is None
    assert bearer_challenge("Basic realm=x") is None
    assert bearer_challenge("Bearer " + "x" * MAX_HEADER) is None  # too long to read
    assert parse_challenges('=,=,"" \t,,') == []
    challenge = bearer_challenge('Bearer scope="' + " ".join(f"s{i}" for i in range(500)) + '"')
    assert challenge is not None and len(challenge.scopes) == 64
    challenge = bearer_challenge('DPoP algs="ES256", Bearer error="insufficient_scope", '
                                 'scope="a b", resource_metadata="https://x/prm"')
    assert challenge is not None and challenge.insufficient_scope
    assert challenge.scopes == ("a", "b") and challenge.resource_metadata == "https://x/prm"
