"""The OAuth 2.1 authorization code flow with PKCE, in two halves a redirect apart.

`OAuthFlow.begin()` discovers who authorizes the MCP server, gets a client identity there,
picks the scopes and builds the authorization URL; it returns a `PendingAuthorization` that
holds the URL and the request's secrets (state, PKCE verifier, expected issuer). Whoever
shows the URL to the user keeps the pending record until the redirect comes back, then
hands both to `OAuthFlow.complete()`, which checks the redirect and exchanges the code.
`refresh()` renews a token. The halves are separate so a gateway can send the URL through a
URL elicitation and finish when its callback endpoint is hit, minutes later.

Checks at the callback, in order: the redirect goes to our `redirect_uri`; no parameter is
repeated; the pending request has not expired; `state` matches (constant time); RFC 9207
`iss` matches the recorded issuer as a plain string (required when the server advertised
it), and only then is an `error` looked at, so a mix-up attacker's error is never acted on
or shown (SPEC-AUTH-08). `resource` goes on both legs (SPEC-AUTH-05).

Scopes (MCP "Scope Selection Strategy"): the challenge's `scope`, else PRM
`scopes_supported`, else none at all; united with what was asked before (step-up keeps what
was granted), plus `offline_access` when the authorization server lists it and a refresh
token is wanted.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

from bastion.client.oauth import pkce
from bastion.client.oauth.challenge import BearerChallenge
from bastion.client.oauth.discovery import Discovery, discover
from bastion.client.oauth.errors import (
    AuthorizationDenied,
    AuthorizationExpired,
    AuthorizationResponseError,
    DiscoveryError,
    IssuerMismatch,
    StateMismatch,
    TokenRequestError,
)
from bastion.client.oauth.registration import client_for
from bastion.client.oauth.settings import OAuthClientSettings
from bastion.client.oauth.store import ClientCredentials, MemoryTokenStore, TokenSet, TokenStore
from bastion.transport.http.egress import (
    EgressClient,
    EgressError,
    EgressRefused,
    check_browser_url,
    display_url,
)

logger = logging.getLogger("bastion.client.oauth")

OFFLINE_ACCESS = "offline_access"
#: Bounds on what a token endpoint may hand back.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_LIFETIME = 366 * 24 * 3600
MAX_CALLBACK_PARAMS = 32


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """An authorization request sent to the user, waiting for its redirect."""

    #: The URL to open (checked against SPEC-SSRF-08 before it is handed out).
    authorization_url: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    #: The issuer recorded from validated metadata (RFC 9207).
    issuer: str
    iss_required: bool
    token_endpoint: str
    resource: str
    scopes: tuple[str, ...]
    client: ClientCredentials
    #: Epoch seconds after which the redirect is refused.
    expires_at: float

    @property
    def host(self) -> str:
        """The authorization server's host: what to show the user they are sent to."""
        return urlsplit(self.authorization_url).hostname or ""


def _clean(text: object, limit: int = 200) -> str:
    """A server-supplied string made safe to put in a message (printable, bounded)."""
    value = str(text)[:limit]
    return "".join(c if c.isprintable() else "?" for c in value)


class OAuthFlow:
    """Authorization for MCP servers under one client identity (see the module doc)."""

    def __init__(self, settings: OAuthClientSettings, egress: EgressClient,
                 store: TokenStore | None = None) -> None:
        self.settings = settings
        self.egress = egress
        self.store: TokenStore = store if store is not None else MemoryTokenStore()

    async def discover(self, server_url: str,
                       challenge: BearerChallenge | None = None) -> Discovery:
        return await discover(self.egress, server_url, challenge)

    def select_scopes(self, discovery: Discovery, challenged: Iterable[str] = (),
                      previous: Iterable[str] = ()) -> tuple[str, ...]:
        """The scopes to ask for (see the module doc), in a stable order."""
        base = list(challenged) or list(discovery.resource.scopes_supported or ())
        scopes = list(dict.fromkeys([*base, *previous]))
        if (scopes and self.settings.offline_access and OFFLINE_ACCESS not in scopes
                and OFFLINE_ACCESS in (discovery.server.scopes_supported or ())):
            scopes.append(OFFLINE_ACCESS)
        return tuple(scopes)

    async def begin(self, server_url: str, *, challenge: BearerChallenge | None = None,
                    previous_scopes: Iterable[str] = (),
                    discovery: Discovery | None = None) -> PendingAuthorization:
        """Discover (unless `discovery` is given), register, and build the request."""
        if discovery is None:
            discovery = await self.discover(server_url, challenge)
        server = discovery.server
        client = await client_for(self.egress, server, self.settings, self.store)
        scopes = self.select_scopes(discovery, challenge.scopes if challenge else (),
                                    previous_scopes)
        verifier, state = pkce.new_verifier(), pkce.new_state()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "state": state,
            "code_challenge": pkce.challenge_for(verifier),
            "code_challenge_method": pkce.METHOD,
            "resource": discovery.resource.resource,
        }
        if scopes:
            params["scope"] = " ".join(scopes)
        endpoint = server.authorization_endpoint
        separator = "&" if urlsplit(endpoint).query else "?"
        url = f"{endpoint}{separator}{urlencode(params, quote_via=quote_plus)}"
        try:
            check_browser_url(url)  # SPEC-SSRF-08: it is about to be shown to someone
        except EgressRefused as exc:
            raise DiscoveryError(f"the authorization endpoint of {server.issuer!r} is refused: "
                                 f"{exc}") from exc
        logger.info("authorization for %s: sending the user to %s (scopes: %s)",
                    display_url(server_url), display_url(endpoint), " ".join(scopes) or "-")
        return PendingAuthorization(
            authorization_url=url, state=state, code_verifier=verifier,
            redirect_uri=self.settings.redirect_uri, issuer=server.issuer,
            iss_required=server.iss_parameter_supported, token_endpoint=server.token_endpoint,
            resource=discovery.resource.resource, scopes=scopes, client=client,
            expires_at=time.time() + self.settings.pending_ttl)

    async def complete(self, pending: PendingAuthorization,
                       redirect: str | Mapping[str, str]) -> TokenSet:
        """Check the redirect (a URL, or its query parameters) and exchange the code."""
        params = _callback_params(pending, redirect)
        if time.time() > pending.expires_at:
            raise AuthorizationExpired("the authorization took too long and expired; start "
                                       "again")
        state = params.get("state")
        if state is None or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise StateMismatch("the redirect's state is missing or does not match the request; "
                                "it is not ours (or was replayed) and is ignored")
        iss = params.get("iss")
        if iss is None and pending.iss_required:
            raise IssuerMismatch(f"{pending.issuer!r} promises an iss parameter in its redirects "
                                 "(RFC 9207), but this redirect has none; it is ignored")
        if iss is not None and iss != pending.issuer:
            raise IssuerMismatch(f"the redirect comes from the issuer {_clean(iss)!r}, not "
                                 f"{pending.issuer!r} (RFC 9207 mix-up defence); it is ignored")
        error = params.get("error")
        if error is not None:
            description = params.get("error_description")
            raise AuthorizationDenied(
                f"the authorization server refused: {_clean(error, 64)}"
                + (f" ({_clean(description)})" if description else ""),
                _clean(error, 64), _clean(description) if description else None)
        code = params.get("code")
        if not code:
            raise AuthorizationResponseError("the redirect carries neither a code nor an error")
        tokens = await self._token_request(pending.token_endpoint, pending.client, {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
            "resource": pending.resource,
        }, resource=pending.resource, requested=frozenset(pending.scopes))
        await self.store.put_tokens(tokens)
        return tokens

    async def refresh(self, tokens: TokenSet, discovery: Discovery) -> TokenSet:
        """A new access token from `tokens.refresh_token`, at the server that issued it."""
        if tokens.refresh_token is None:
            raise TokenRequestError("there is no refresh token; authorize again")
        if tokens.issuer != discovery.issuer:
            raise TokenRequestError(f"the token comes from {tokens.issuer!r}, but the server is "
                                    f"now authorized by {discovery.issuer!r}; authorize again")
        client = await client_for(self.egress, discovery.server, self.settings, self.store)
        if client.client_id != tokens.client_id:
            raise TokenRequestError("the client identity changed since the token was issued; "
                                    "authorize again")
        refreshed = await self._token_request(discovery.server.token_endpoint, client, {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "resource": tokens.resource,
        }, resource=tokens.resource, requested=tokens.requested_scopes,
            previous_refresh=tokens.refresh_token)
        await self.store.put_tokens(refreshed)
        return refreshed

    async def _token_request(self, endpoint: str, client: ClientCredentials,
                             form: dict[str, str], *, resource: str, requested: frozenset[str],
                             previous_refresh: str | None = None) -> TokenSet:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        body = dict(form)
        if client.auth_method == "client_secret_basic" and client.client_secret is not None:
            pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            body["client_id"] = client.client_id
            if client.auth_method == "client_secret_post" and client.client_secret is not None:
                body["client_secret"] = client.client_secret
        where = f"the token endpoint {display_url(endpoint)}"
        try:
            response = await self.egress.fetch("POST", endpoint, headers=headers,
                                               body=urlencode(body).encode("ascii"))
        except EgressError as exc:
            raise TokenRequestError(f"{where} failed: {exc}") from exc
        try:
            doc = response.json()
        except EgressError:
            doc = {}
        if response.status != 200:
            error = doc.get("error")
            description = doc.get("error_description")
            raise TokenRequestError(
                f"{where} refused with HTTP {response.status}"
                + (f": {_clean(error, 64)}" if error else "")
                + (f" ({_clean(description)})" if description else ""),
                error=_clean(error, 64) if error else None, status=response.status)
        return _token_set(doc, where, client, resource, requested, previous_refresh)


def _callback_params(pending: PendingAuthorization,
                     redirect: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(redirect, str):
        parts, expected = urlsplit(redirect), urlsplit(pending.redirect_uri)
        if (parts.scheme.lower(), parts.netloc.lower(), parts.path) != (
                expected.scheme.lower(), expected.netloc.lower(), expected.path):
            raise AuthorizationResponseError(
                f"the redirect goes to {display_url(redirect)}, not to the redirect URI "
                f"{pending.redirect_uri}; it is ignored")
        try:
            pairs = parse_qsl(parts.query, keep_blank_values=True,
                              max_num_fields=MAX_CALLBACK_PARAMS)
        except ValueError as exc:
            raise AuthorizationResponseError(f"the redirect's query is unusable: {exc}") from None
    else:
        pairs = list(redirect.items())[:MAX_CALLBACK_PARAMS + 1]
        if len(pairs) > MAX_CALLBACK_PARAMS:
            raise AuthorizationResponseError("the redirect carries too many parameters")
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:  # RFC 6749 §3.1: parameters MUST NOT be repeated
            raise AuthorizationResponseError(f"the redirect repeats the parameter "
                                             f"{_clean(name, 40)!r}; it is ignored")
        params[name] = value
    return params


def _token_set(doc: dict[str, object], where: str, client: ClientCredentials, resource: str,
               requested: frozenset[str], previous_refresh: str | None) -> TokenSet:
    access = doc.get("access_token")
    token_type = doc.get("token_type")
    if not isinstance(access, str) or not 0 < len(access) <= MAX_TOKEN_LENGTH:
        raise TokenRequestError(f"{where} returned no usable access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenRequestError(f"{where} issued a {_clean(token_type, 20)!r} token; only Bearer "
                                "tokens are supported")
    lifetime = doc.get("expires_in")
    expires_at = None
    if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
        expires_at = time.time() + min(float(lifetime), MAX_LIFETIME)
    refresh = doc.get("refresh_token")
    if not isinstance(refresh, str) or not 0 < len(refresh) <= MAX_TOKEN_LENGTH:
        refresh = previous_refresh  # the server kept the old one (no rotation)
    granted = doc.get("scope")
    scopes = frozenset(granted.split()) if isinstance(granted, str) else requested
    return TokenSet(access_token=access, issuer=client.issuer, resource=resource,
                    client_id=client.client_id, requested_scopes=requested, scopes=scopes,
                    expires_at=expires_at, refresh_token=refresh)


__all__ = ["OFFLINE_ACCESS", "OAuthFlow", "PendingAuthorization"]
