"""What can go wrong while obtaining or renewing an OAuth authorization, as typed exceptions.

Every error says what happened and what to do about it, and carries the facts a caller may
act on (the OAuth `error` code, the URL that failed without its query). None of them ever
holds a token, a code, a verifier or a client secret.
"""

from __future__ import annotations


class OAuthError(Exception):
    """Authorization for an MCP server could not be obtained or renewed."""


class DiscoveryError(OAuthError):
    """The protected resource or authorization server metadata is missing or unusable."""


class ResourceMismatch(DiscoveryError):
    """The protected resource metadata describes another resource than the MCP server."""


class MetadataIssuerMismatch(DiscoveryError):
    """Authorization server metadata names another issuer than the one it was fetched for
    (RFC 8414 §3.3): it may be a mix-up attack, so it is never used."""


class PKCEUnsupported(DiscoveryError):
    """The authorization server does not advertise PKCE with S256, which MCP requires."""


class RegistrationError(OAuthError):
    """No client identity could be had for the authorization server."""


class AuthorizationResponseError(OAuthError):
    """The redirect back from the authorization server is not acceptable."""


class StateMismatch(AuthorizationResponseError):
    """The redirect's `state` is missing or is not the one this request sent."""


class IssuerMismatch(AuthorizationResponseError):
    """RFC 9207: the redirect's `iss` is not the issuer the request was sent to (or is
    missing when the server promised it). Its `error` parameters, if any, are ignored."""


class AuthorizationDenied(AuthorizationResponseError):
    """The authorization server answered with an error (the user declined, say)."""

    def __init__(self, message: str, error: str, description: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.description = description


class AuthorizationExpired(AuthorizationResponseError):
    """The pending authorization waited longer than its time to live."""


class TokenRequestError(OAuthError):
    """The token endpoint refused or failed the request (`error` is the OAuth code)."""

    def __init__(self, message: str, *, error: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class AuthorizationUnavailable(OAuthError):
    """Authorization is needed but this client has no way to ask a user for it."""


__all__ = [
    "AuthorizationDenied",
    "AuthorizationExpired",
    "AuthorizationResponseError",
    "AuthorizationUnavailable",
    "DiscoveryError",
    "IssuerMismatch",
    "MetadataIssuerMismatch",
    "OAuthError",
    "PKCEUnsupported",
    "RegistrationError",
    "ResourceMismatch",
    "StateMismatch",
    "TokenRequestError",
]
