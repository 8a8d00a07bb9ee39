"""Who this client is at an authorization server: pre-registered, CIMD, or registered on the fly.

The order is the one the MCP specification gives (2025-11-25 and 2026-07-28, "Client
Registration"): credentials pre-registered for this very issuer first (an operator set them
up on purpose), then a Client ID Metadata Document URL as `client_id` where the server
supports CIMD, then RFC 7591 Dynamic Client Registration (deprecated, kept for older
servers; `application_type` is always sent). Credentials are keyed by issuer and never
presented to another server (SPEC-AUTH-09); a registration that came from DCR is stored and
reused until its secret expires.

The token endpoint method is the registration's own when it names one, else chosen from the
server's `token_endpoint_auth_methods_supported`: with a secret, `client_secret_basic`, then
`client_secret_post`; without one, `none`.
"""

from __future__ import annotations

import logging
from typing import get_args

import orjson

from bastion.client.oauth.discovery import ServerMetadata
from bastion.client.oauth.errors import RegistrationError
from bastion.client.oauth.settings import OAuthClientSettings, is_loopback_redirect
from bastion.client.oauth.store import ClientCredentials, TokenAuthMethod, TokenStore
from bastion.transport.http.egress import EgressClient, EgressError, display_url

logger = logging.getLogger("bastion.client.oauth")

_METHODS: tuple[str, ...] = get_args(TokenAuthMethod)


def choose_auth_method(server: ServerMetadata, has_secret: bool) -> TokenAuthMethod:
    """The token endpoint method for a client with (or without) a secret at `server`."""
    supported = server.token_endpoint_auth_methods
    if has_secret:
        for method in ("client_secret_basic", "client_secret_post"):
            if method in supported:
                return method  # type: ignore[return-value]
    return "none" if not has_secret or "none" in supported else "client_secret_basic"


async def client_for(egress: EgressClient, server: ServerMetadata,
                     settings: OAuthClientSettings, store: TokenStore) -> ClientCredentials:
    """This client's identity at `server` (see the module doc)."""
    issuer = server.issuer
    pre = settings.clients.get(issuer)
    if pre is not None:
        method = pre.token_endpoint_auth_method or choose_auth_method(
            server, pre.client_secret is not None)
        return ClientCredentials(issuer, pre.client_id, pre.client_secret, method,
                                 "pre-registered")
    if settings.client_metadata_url is not None and server.client_id_metadata_document_supported:
        return ClientCredentials(issuer, settings.client_metadata_url, None, "none", "cimd")
    stored = await store.get_client(issuer)
    if stored is not None and stored.source == "dcr" and stored.usable():
        return stored
    if server.registration_endpoint is None:
        raise RegistrationError(
            f"no client identity for the authorization server {issuer!r}: it supports neither "
            "Client ID Metadata Documents (or no client_metadata_url is configured) nor dynamic "
            "registration; pre-register a client there and configure it for this issuer")
    client = await register(egress, server, settings)
    await store.put_client(client)
    return client


async def register(egress: EgressClient, server: ServerMetadata,
                   settings: OAuthClientSettings) -> ClientCredentials:
    """RFC 7591 dynamic registration at `server` (which must have a registration endpoint)."""
    endpoint = server.registration_endpoint
    assert endpoint is not None
    supported = server.token_endpoint_auth_methods
    requested = "none" if "none" in supported else choose_auth_method(server, True)
    request = {
        "client_name": settings.client_name,
        "redirect_uris": [settings.redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": requested,
        "application_type": "native" if is_loopback_redirect(settings.redirect_uri) else "web",
    }
    where = f"dynamic client registration at {display_url(endpoint)}"
    try:
        response = await egress.fetch("POST", endpoint, body=orjson.dumps(request),
                                      headers={"Content-Type": "application/json"})
    except EgressError as exc:
        raise RegistrationError(f"{where} failed: {exc}") from exc
    if response.status not in (200, 201):
        raise RegistrationError(f"{where} was refused with HTTP {response.status}; the server "
                                "may need a pre-registered client instead")
    try:
        doc = response.json()
    except EgressError as exc:
        raise RegistrationError(f"{where}: {exc}") from exc
    client_id = doc.get("client_id")
    secret = doc.get("client_secret")
    method = doc.get("token_endpoint_auth_method")
    expires = doc.get("client_secret_expires_at")
    if not isinstance(client_id, str) or not client_id or len(client_id) > 1024:
        raise RegistrationError(f"{where} returned no usable client_id")
    if secret is not None and (not isinstance(secret, str) or len(secret) > 4096):
        raise RegistrationError(f"{where} returned a client_secret that is not a string")
    if method is not None and method not in _METHODS:
        raise RegistrationError(f"{where} assigned the token endpoint method {str(method)[:40]!r}"
                                f", which this client does not support ({', '.join(_METHODS)})")
    if method is None:
        method = choose_auth_method(server, secret is not None)
    expires_at = float(expires) if isinstance(expires, int | float) and not isinstance(
        expires, bool) and expires > 0 else None
    logger.info("registered with %s as client %s (%s)", server.issuer, client_id[:64], method)
    return ClientCredentials(server.issuer, client_id, secret, method, "dcr", expires_at)


__all__ = ["choose_auth_method", "client_for", "register"]
