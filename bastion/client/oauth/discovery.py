"""Finding who authorizes an MCP server: RFC 9728 resource metadata, then RFC 8414 / OIDC
authorization server metadata, every URL fetched through the SSRF-safe egress client.

Protected resource metadata (PRM) comes from the `resource_metadata` URL of the server's
challenge when it gave one, else from the path-inserted well-known URL, then the root one.
Its `resource` must name the MCP server (same origin, and a path that is the server's path or
a parent of it), or nothing it says is used (RFC 9728 §3.3): a server cannot send us to
authorize for another resource. `resource` is then sent exactly as published.

Authorization server metadata is tried at the RFC 8414 path-inserted URL, then OIDC
path-inserted, then OIDC path-appended (for an issuer with a path), and its `issuer` must be
the very string the URL was built from, or it is refused at once (SPEC-AUTH-07: a mismatch
is a mix-up attempt, not a reason to try elsewhere). Metadata that does not offer PKCE with
S256 is refused too (SPEC-AUTH-06).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bastion.client.oauth.challenge import BearerChallenge
from bastion.client.oauth.errors import (
    DiscoveryError,
    MetadataIssuerMismatch,
    PKCEUnsupported,
    ResourceMismatch,
)
from bastion.client.oauth.pkce import METHOD as PKCE_METHOD
from bastion.transport.http.egress import (
    EgressClient,
    EgressFailed,
    EgressRefused,
    display_url,
)

logger = logging.getLogger("bastion.client.oauth")

PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
#: List fields longer than this are cut (a metadata document is at most 256 KiB anyway).
MAX_LIST = 256


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """RFC 9728 protected resource metadata, checked against the MCP server's URL."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None
    #: Where it was fetched.
    url: str


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """RFC 8414 authorization server metadata, with the issuer checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    scopes_supported: tuple[str, ...] | None
    token_endpoint_auth_methods: tuple[str, ...]
    #: RFC 9207: the server promises `iss` in every authorization response.
    iss_parameter_supported: bool
    client_id_metadata_document_supported: bool
    #: Where it was fetched.
    url: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """Who authorizes the MCP server, and how."""

    resource: ResourceMetadata
    server: ServerMetadata

    @property
    def issuer(self) -> str:
        return self.server.issuer


# -- URLs ------------------------------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def resource_metadata_urls(server_url: str, hinted: str | None = None) -> list[str]:
    """Where to look for PRM: the challenge's URL, then path-inserted, then root."""
    path = urlsplit(server_url).path.rstrip("/")
    origin = _origin(server_url)
    urls = [hinted] if hinted else []
    if path:
        urls.append(f"{origin}{PRM_WELL_KNOWN}{path}")
    urls.append(f"{origin}{PRM_WELL_KNOWN}")
    return urls


def server_metadata_urls(issuer: str) -> list[str]:
    """Where to look for an issuer's metadata, in the order MCP prescribes."""
    path = urlsplit(issuer).path.rstrip("/")
    origin = _origin(issuer)
    if not path:
        return [f"{origin}{OAUTH_WELL_KNOWN}", f"{origin}{OIDC_WELL_KNOWN}"]
    return [f"{origin}{OAUTH_WELL_KNOWN}{path}", f"{origin}{OIDC_WELL_KNOWN}{path}",
            f"{origin}{path}{OIDC_WELL_KNOWN}"]


def _canonical_origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80 if scheme == "http" else None)
    return scheme, (parts.hostname or "").lower(), port


def resource_matches(resource: str, server_url: str) -> bool:
    """Whether PRM's `resource` names the MCP server at `server_url`: same origin (scheme and
    host compared case-insensitively), and its path the server's path or an ancestor of it."""
    try:
        parts = urlsplit(resource)
        if parts.fragment or parts.query or _canonical_origin(resource) != _canonical_origin(
                server_url):
            return False
    except ValueError:
        return False
    prefix = parts.path.rstrip("/")
    path = urlsplit(server_url).path.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


# -- fetching --------------------------------------------------------------------------------


async def _get_document(egress: EgressClient, url: str, what: str,
                        failures: list[str]) -> dict[str, Any] | None:
    """The JSON object at `url`, or None (the reason added to `failures`) when there is none
    there. A URL the egress policy refuses is an error, not a miss."""
    try:
        response = await egress.fetch("GET", url)
    except EgressRefused as exc:
        raise DiscoveryError(f"{what}: {exc}") from exc
    except EgressFailed as exc:
        failures.append(str(exc))
        return None
    if response.status != 200:
        failures.append(f"{display_url(url)}: HTTP {response.status}")
        return None
    try:
        return response.json()
    except EgressFailed as exc:
        failures.append(str(exc))
        return None


def _text(doc: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise DiscoveryError(f"{where}: `{key}` is missing or not a string")
    return value


def _texts(doc: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DiscoveryError(f"{where}: `{key}` must be a list of strings")
    return tuple(value[:MAX_LIST])


def _endpoint(egress: EgressClient, doc: dict[str, Any], key: str, where: str, *,
              required: bool = True) -> str | None:
    value = _text(doc, key, where, required=required)
    if value is not None:
        try:
            egress.policy.check_url(value)
        except EgressRefused as exc:
            raise DiscoveryError(f"{where}: `{key}` is refused: {exc}") from exc
    return value


async def fetch_resource_metadata(egress: EgressClient, server_url: str,
                                  hinted: str | None = None) -> ResourceMetadata:
    """PRM for the MCP server at `server_url` (see the module doc)."""
    failures: list[str] = []
    for url in resource_metadata_urls(server_url, hinted):
        where = f"protected resource metadata at {display_url(url)}"
        doc = await _get_document(egress, url, where, failures)
        if doc is None:
            continue
        resource = _text(doc, "resource", where, required=True)
        assert resource is not None
        if not resource_matches(resource, server_url):
            raise ResourceMismatch(
                f"{where} describes the resource {resource!r}, not the MCP server at "
                f"{display_url(server_url)}; refusing to authorize for it")
        servers = _texts(doc, "authorization_servers", where)
        if not servers:
            raise DiscoveryError(f"{where} names no authorization_servers")
        return ResourceMetadata(resource, servers, _texts(doc, "scopes_supported", where), url)
    raise DiscoveryError(
        f"no protected resource metadata for {display_url(server_url)} "
        f"({'; '.join(failures)}); the server does not say who authorizes it")


async def fetch_server_metadata(egress: EgressClient, issuer: str) -> ServerMetadata:
    """The metadata of the authorization server `issuer` (see the module doc)."""
    try:
        parts = egress.policy.check_url(issuer)
    except EgressRefused as exc:
        raise DiscoveryError(f"authorization server {issuer!r} is refused: {exc}") from exc
    if parts.query or parts.fragment:
        raise DiscoveryError(f"authorization server {issuer!r}: an issuer has no query or "
                             "fragment (RFC 8414)")
    failures: list[str] = []
    for url in server_metadata_urls(issuer):
        where = f"authorization server metadata at {display_url(url)}"
        doc = await _get_document(egress, url, where, failures)
        if doc is None:
            continue
        claimed = doc.get("issuer")
        if claimed != issuer:  # a plain string comparison, no normalisation
            raise MetadataIssuerMismatch(
                f"{where} claims the issuer {str(claimed)[:200]!r}, but was fetched for "
                f"{issuer!r}; it is not used (a possible mix-up attack)")
        return _server_metadata(egress, doc, issuer, url, where)
    raise DiscoveryError(f"no metadata for the authorization server {issuer!r} "
                         f"({'; '.join(failures)})")


def _server_metadata(egress: EgressClient, doc: dict[str, Any], issuer: str, url: str,
                     where: str) -> ServerMetadata:
    methods = _texts(doc, "code_challenge_methods_supported", where)
    if not methods or PKCE_METHOD not in methods:
        raise PKCEUnsupported(
            f"{where} does not list {PKCE_METHOD} in code_challenge_methods_supported "
            f"(it lists {list(methods or [])}); MCP requires PKCE with S256, so this "
            "authorization server is not used")
    response_types = _texts(doc, "response_types_supported", where)
    if response_types is not None and "code" not in response_types:
        raise DiscoveryError(f"{where} does not support the authorization code flow")
    authorization = _endpoint(egress, doc, "authorization_endpoint", where)
    token = _endpoint(egress, doc, "token_endpoint", where)
    assert authorization is not None and token is not None
    return ServerMetadata(
        issuer=issuer,
        authorization_endpoint=authorization,
        token_endpoint=token,
        registration_endpoint=_endpoint(egress, doc, "registration_endpoint", where,
                                        required=False),
        scopes_supported=_texts(doc, "scopes_supported", where),
        # RFC 8414 §2: absent means client_secret_basic.
        token_endpoint_auth_methods=_texts(doc, "token_endpoint_auth_methods_supported", where)
        or ("client_secret_basic",),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
        client_id_metadata_document_supported=doc.get(
            "client_id_metadata_document_supported") is True,
        url=url,
    )


async def discover(egress: EgressClient, server_url: str,
                   challenge: BearerChallenge | None = None) -> Discovery:
    """PRM, then the metadata of the first of its authorization servers that has usable
    metadata. A refused or mismatched server stops the search (fail closed)."""
    hinted = challenge.resource_metadata if challenge is not None else None
    resource = await fetch_resource_metadata(egress, server_url, hinted)
    failures: list[str] = []
    for issuer in resource.authorization_servers:
        try:
            server = await fetch_server_metadata(egress, issuer)
        except (MetadataIssuerMismatch, PKCEUnsupported):
            raise
        except DiscoveryError as exc:
            failures.append(str(exc))
            continue
        logger.debug("%s is authorized by %s", display_url(server_url), issuer)
        return Discovery(resource, server)
    raise DiscoveryError(f"none of the authorization servers of {display_url(server_url)} is "
                         f"usable: {'; '.join(failures)}")


__all__ = [
    "Discovery",
    "ResourceMetadata",
    "ServerMetadata",
    "discover",
    "fetch_resource_metadata",
    "fetch_server_metadata",
    "resource_matches",
    "resource_metadata_urls",
    "server_metadata_urls",
]
