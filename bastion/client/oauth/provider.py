"""`OAuthProvider`: the OAuth client as the HTTP channel sees it (`wire.HTTPAuth`).

The channel asks it for the `Authorization` of every request and tells it about every 401
and 403. It answers from what it holds, and otherwise works out what helps:

* an access token about to expire is refreshed before it is sent;
* a 401 re-reads the resource metadata (the server may have moved to another authorization
  server, SPEC-AUTH-09), then tries, in turn: a stored token for that (issuer, resource), a
  refresh at the same issuer, and a full authorization;
* a 403 `insufficient_scope` re-authorizes for the union of the scopes asked before and the
  ones challenged (step-up), unless every challenged scope was asked for already, in which
  case asking again cannot help and the request fails (the conformance `scope-retry-limit`);
* whatever happens, the channel re-sends a request once at most, and renewals forced by the
  server (refreshes and authorizations) are capped at `max_renewals` a minute, so a server
  that never accepts a token cannot keep the client renewing.

A full authorization shows the authorization URL to an `Authorizer`: a callable that takes
the URL and returns the URL the user's browser was redirected to. `HeadlessAuthorizer` is
the one for tests and the conformance suite (authorization servers that approve at once);
the gateway supplies one that sends a URL elicitation and waits for its callback.

A provider serves one MCP server and one user; its lock serializes renewals, so concurrent
requests refused together wait for one authorization and are re-sent with its token.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from urllib.parse import urljoin

from bastion.client.oauth.challenge import BearerChallenge, bearer_challenge
from bastion.client.oauth.discovery import Discovery
from bastion.client.oauth.errors import (
    AuthorizationResponseError,
    AuthorizationUnavailable,
    OAuthError,
)
from bastion.client.oauth.flow import OAuthFlow
from bastion.client.oauth.settings import OAuthClientSettings
from bastion.client.oauth.store import TokenSet, TokenStore
from bastion.transport.http.egress import EgressClient, EgressError, display_url

logger = logging.getLogger("bastion.client.oauth")

#: Takes the authorization URL, returns the URL the user was redirected back to.
Authorizer = Callable[[str], Awaitable[str]]
#: A redirect page is small; anything bigger is not what the headless authorizer expects.
MAX_AUTHORIZE_RESPONSE = 64 * 1024


class HeadlessAuthorizer:
    """An `Authorizer` with no user: GET the authorization URL without following redirects
    and take the redirect from `Location` (authorization servers that approve at once, as
    test and conformance servers do)."""

    def __init__(self, egress: EgressClient) -> None:
        self.egress = egress

    async def __call__(self, authorization_url: str) -> str:
        try:
            response = await self.egress.fetch("GET", authorization_url,
                                               headers={"Accept": "text/html"},
                                               max_size=MAX_AUTHORIZE_RESPONSE)
        except EgressError as exc:
            raise AuthorizationResponseError(f"opening the authorization URL failed: {exc}"
                                             ) from exc
        location = response.location
        if location is None:
            raise AuthorizationUnavailable(
                f"{display_url(authorization_url)} answered HTTP {response.status}, not a "
                "redirect: it wants a user to sign in, which a headless client cannot do")
        return urljoin(authorization_url, location)


class OAuthProvider:
    """OAuth 2.1 credentials for one MCP server (see the module doc)."""

    def __init__(self, server_url: str, settings: OAuthClientSettings, *,
                 authorizer: Authorizer | None = None, store: TokenStore | None = None,
                 egress: EgressClient | None = None, refresh_leeway: float = 30.0,
                 max_renewals: int = 10) -> None:
        self.server_url = server_url
        self.egress = egress if egress is not None else EgressClient()
        self._owns_egress = egress is None
        self.flow = OAuthFlow(settings, self.egress, store)
        self.authorizer = authorizer
        self.refresh_leeway = refresh_leeway
        self.max_renewals = max_renewals
        self._tokens: TokenSet | None = None
        self._header: str | None = None
        self._generation = 0
        self._discovery: Discovery | None = None
        self._lock = asyncio.Lock()
        self._recent: collections.deque[float] = collections.deque()
        #: Full authorizations so far (each one sent a user to the authorization server).
        self.authorizations = 0

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def tokens(self) -> TokenSet | None:
        """The credentials in use (their `repr` shows no secret)."""
        return self._tokens

    @property
    def discovery(self) -> Discovery | None:
        """Who authorizes the server, as last discovered."""
        return self._discovery

    def _use(self, tokens: TokenSet | None) -> None:
        self._tokens = tokens
        self._header = tokens.authorization if tokens is not None else None
        self._generation += 1

    # -- wire.HTTPAuth -----------------------------------------------------------------------

    async def authorization(self) -> str | None:
        tokens = self._tokens
        if tokens is not None and tokens.expires_within(self.refresh_leeway) and (
                tokens.refresh_token is not None or tokens.expires_within(0)):
            await self._renew_expiring(tokens)
        return self._header

    async def challenged(self, status: int, www_authenticate: str | None,
                         generation: int) -> bool:
        challenge = bearer_challenge(www_authenticate)
        async with self._lock:
            if generation != self._generation and self._tokens is not None:
                # Renewed while the request was out: re-send it with the new credentials.
                return True
            if status == 401:
                self._count_renewal()
                await self._after_401(challenge)
                return True
            if status == 403:
                return await self._step_up(challenge)
            return False

    def _count_renewal(self) -> None:
        """The loop guard: at most `max_renewals` server-forced renewals a minute."""
        now = time.monotonic()
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        if len(self._recent) >= self.max_renewals:
            raise AuthorizationUnavailable(
                f"{display_url(self.server_url)} refused fresh credentials {len(self._recent)} "
                "times in a minute; giving up rather than looping")
        self._recent.append(now)

    # -- renewals ------------------------------------------------------------------------------

    async def authorize(self, challenge: BearerChallenge | None = None) -> TokenSet:
        """Authorize now (before any request), from the well-known metadata or `challenge`."""
        async with self._lock:
            discovery = await self._discover(challenge)
            previous = self._tokens.requested_scopes if self._tokens is not None else frozenset()
            return await self._authorize(discovery, challenge, previous)

    async def _discover(self, challenge: BearerChallenge | None) -> Discovery:
        self._discovery = await self.flow.discover(self.server_url, challenge)
        return self._discovery

    async def _renew_expiring(self, tokens: TokenSet) -> None:
        async with self._lock:
            if self._tokens is not tokens:
                return  # renewed meanwhile
            if tokens.refresh_token is not None and self._discovery is not None:
                try:
                    self._use(await self.flow.refresh(tokens, self._discovery))
                    return
                except OAuthError as exc:
                    logger.info("%s: refreshing the token failed (%s)",
                                display_url(self.server_url), exc)
            if tokens.expires_within(0):
                self._use(None)  # expired: send nothing, and let the 401 say what to do
            else:  # the same token to its end, without trying to refresh it again
                self._tokens = dataclasses.replace(tokens, refresh_token=None)

    async def _after_401(self, challenge: BearerChallenge | None) -> None:
        discovery = await self._discover(challenge)
        store = self.flow.store
        issuer, resource = discovery.issuer, discovery.resource.resource
        rejected = self._tokens
        needed = frozenset(challenge.scopes) if challenge is not None else frozenset()
        if rejected is not None:
            self._use(None)
            await store.delete_tokens(rejected.issuer, rejected.resource)
            if await self._refreshed(rejected, discovery):
                return
            previous = rejected.requested_scopes
        else:
            stored = await store.get_tokens(issuer, resource)
            if stored is not None and stored.covers(needed):
                if not stored.expires_within(self.refresh_leeway):
                    self._use(stored)
                    return
                if await self._refreshed(stored, discovery):
                    return
            previous = frozenset()
        await self._authorize(discovery, challenge, previous)

    async def _refreshed(self, tokens: TokenSet, discovery: Discovery) -> bool:
        if (tokens.refresh_token is None or tokens.issuer != discovery.issuer
                or tokens.resource != discovery.resource.resource):
            return False
        try:
            self._use(await self.flow.refresh(tokens, discovery))
        except OAuthError as exc:
            logger.info("%s: refreshing the token failed (%s); authorizing again",
                        display_url(self.server_url), exc)
            return False
        return True

    async def _step_up(self, challenge: BearerChallenge | None) -> bool:
        if challenge is None or not challenge.insufficient_scope:
            return False
        needed = frozenset(challenge.scopes)
        previous = self._tokens.requested_scopes if self._tokens is not None else frozenset()
        if not needed or needed <= previous:
            logger.warning("%s refuses a request for insufficient scope, but every scope it "
                           "names (%s) was asked for already; not authorizing again",
                           display_url(self.server_url), " ".join(sorted(needed)) or "none")
            return False
        self._count_renewal()
        logger.info("%s: stepping up to the scopes %s", display_url(self.server_url),
                    " ".join(sorted(needed | previous)))
        discovery = self._discovery or await self._discover(challenge)
        await self._authorize(discovery, challenge, previous)
        return True

    async def _authorize(self, discovery: Discovery, challenge: BearerChallenge | None,
                         previous: frozenset[str]) -> TokenSet:
        if self.authorizer is None:
            raise AuthorizationUnavailable(
                f"{display_url(self.server_url)} needs an OAuth authorization, and this client "
                "has no authorizer to send a user to the authorization server")
        self.authorizations += 1
        pending = await self.flow.begin(self.server_url, challenge=challenge,
                                        previous_scopes=previous, discovery=discovery)
        redirect = await self.authorizer(pending.authorization_url)
        tokens = await self.flow.complete(pending, redirect)
        self._use(tokens)
        return tokens

    # -- lifetime ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the egress client, if this provider made it."""
        if self._owns_egress:
            await self.egress.aclose()

    async def __aenter__(self) -> OAuthProvider:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


__all__ = ["Authorizer", "HeadlessAuthorizer", "OAuthProvider"]
