"""Bastion's OAuth 2.1 client for MCP servers that require authorization.

PKCE S256, RFC 9728 resource metadata, RFC 8414 / OIDC authorization server metadata with
the issuer checked, RFC 8707 `resource` on both legs, RFC 9207 `iss` checking, client
identity by pre-registration, CIMD or dynamic registration (keyed per issuer), scope step-up
and refresh, every server-supplied URL fetched under the SSRF egress policy
(`bastion.transport.http.egress`).

* `OAuthFlow`: the flow in halves: `begin()` (discover, register, build the authorization
  URL; returns a `PendingAuthorization`), `complete()` (check the redirect, exchange the code),
  `refresh()`.
* `OAuthProvider`: the flow behind the HTTP channel (`connect_http(url, oauth=provider)`),
  with an `Authorizer` that turns an authorization URL into the redirect URL
  (`HeadlessAuthorizer` for servers that approve at once).
* `TokenStore` / `MemoryTokenStore`: tokens by (issuer, resource), clients by issuer.
"""

from bastion.client.oauth.challenge import BearerChallenge, bearer_challenge
from bastion.client.oauth.discovery import (
    Discovery,
    ResourceMetadata,
    ServerMetadata,
    discover,
)
from bastion.client.oauth.errors import (
    AuthorizationDenied,
    AuthorizationExpired,
    AuthorizationResponseError,
    AuthorizationUnavailable,
    DiscoveryError,
    IssuerMismatch,
    MetadataIssuerMismatch,
    OAuthError,
    PKCEUnsupported,
    RegistrationError,
    ResourceMismatch,
    StateMismatch,
    TokenRequestError,
)
from bastion.client.oauth.flow import OAuthFlow, PendingAuthorization
from bastion.client.oauth.provider import Authorizer, HeadlessAuthorizer, OAuthProvider
from bastion.client.oauth.settings import OAuthClientSettings, PreRegisteredClient
from bastion.client.oauth.store import ClientCredentials, MemoryTokenStore, TokenSet, TokenStore

__all__ = [
    "AuthorizationDenied",
    "AuthorizationExpired",
    "AuthorizationResponseError",
    "AuthorizationUnavailable",
    "Authorizer",
    "BearerChallenge",
    "ClientCredentials",
    "Discovery",
    "DiscoveryError",
    "HeadlessAuthorizer",
    "IssuerMismatch",
    "MemoryTokenStore",
    "MetadataIssuerMismatch",
    "OAuthClientSettings",
    "OAuthError",
    "OAuthFlow",
    "OAuthProvider",
    "PKCEUnsupported",
    "PendingAuthorization",
    "PreRegisteredClient",
    "RegistrationError",
    "ResourceMetadata",
    "ResourceMismatch",
    "ServerMetadata",
    "StateMismatch",
    "TokenRequestError",
    "TokenSet",
    "TokenStore",
    "bearer_challenge",
    "discover",
]
