"""Users' pending upstream authorizations, and the `/oauth/callback` that completes them.

When a user's call needs an upstream token they do not have, the gateway starts the OAuth
flow (`OAuthFlow.begin`) and sends them the authorization URL (a URL elicitation). The
`PendingAuthorization` (state, PKCE verifier, expected issuer) waits here, keyed by its
`state`, bound to the (user binding, upstream) it was made for, for at most `ttl` seconds
(10 minutes at most), and at most `max_pending` at once (oldest go first) and `max_per_user`
per user.

The browser comes back to `GET /oauth/callback?code=..&state=..`. The state is taken out
once (single use); the flow checks the rest (issuer, parameters, expiry) and exchanges the
code, which stores the tokens in that user's token store. Missing, unknown, replayed or
expired state is a 400 with no side effect (SPEC-CD-05): nothing is stored and no other
user's pending authorization is touched. The page says what happened and holds no token;
it is `no-store` and may not be framed.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.client.oauth import OAuthError, OAuthFlow, PendingAuthorization

logger = logging.getLogger("bastion.gateway.authorizations")

CALLBACK_PATH = "/oauth/callback"
MAX_TTL = 600.0
#: A callback's query beyond this is not an authorization response.
MAX_QUERY = 8 * 1024
_HEADERS = {"cache-control": "no-store", "x-frame-options": "DENY",
            "content-security-policy": "default-src 'none'",
            "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}

#: Called after a user's tokens for an upstream were stored: (binding, upstream).
Completed = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class UserAuthorization:
    """One user's authorization request for one upstream, waiting for the browser."""

    pending: PendingAuthorization
    binding: str = field(repr=False)
    upstream: str
    #: Completes the flow in the user's own token store.
    flow: OAuthFlow = field(repr=False)
    #: The URL elicitation's id (`elicitationId`), stable while the request waits.
    elicitation_id: str
    expires_at: float

    @property
    def url(self) -> str:
        return self.pending.authorization_url


class Authorizations:
    """Pending authorizations by state (see the module doc)."""

    def __init__(self, *, ttl: float = MAX_TTL, max_pending: int = 1024,
                 max_per_user: int = 8, on_completed: Completed | None = None) -> None:
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between 0 and {MAX_TTL:g} seconds")
        if max_pending < 1 or max_per_user < 1:
            raise ValueError("max_pending and max_per_user must be at least 1")
        self.ttl = ttl
        self.max_pending = max_pending
        self.max_per_user = max_per_user
        self.on_completed = on_completed
        self._by_state: OrderedDict[str, UserAuthorization] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._by_state)

    def _expire(self) -> None:
        now = time.time()
        for state in [s for s, a in self._by_state.items() if a.expires_at <= now]:
            del self._by_state[state]

    def add(self, binding: str, upstream: str, flow: OAuthFlow,
            pending: PendingAuthorization) -> UserAuthorization:
        """Keep `pending` for the browser's return; the user's oldest request goes first
        when they have `max_per_user` already."""
        self._expire()
        mine = [s for s, a in self._by_state.items() if a.binding == binding]
        for state in mine[:max(0, len(mine) - self.max_per_user + 1)]:
            del self._by_state[state]
        while len(self._by_state) >= self.max_pending:
            self._by_state.popitem(last=False)
        record = UserAuthorization(
            pending=pending, binding=binding, upstream=upstream, flow=flow,
            elicitation_id=secrets.token_urlsafe(16),
            expires_at=min(pending.expires_at, time.time() + self.ttl))
        self._by_state[pending.state] = record
        return record

    def waiting(self, binding: str, upstream: str) -> UserAuthorization | None:
        """The user's newest request for `upstream` still waiting (so a retried call shows
        the same URL instead of starting another flow)."""
        self._expire()
        for record in reversed(self._by_state.values()):
            if record.binding == binding and record.upstream == upstream:
                return record
        return None

    def take(self, state: str) -> UserAuthorization | None:
        """The request `state` names, removed (single use); None when unknown or expired."""
        self._expire()
        return self._by_state.pop(state, None) if isinstance(state, str) else None

    # -- the callback ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [Route(CALLBACK_PATH, self.callback, methods=["GET"])]

    async def callback(self, request: Request) -> Response:
        query = request.url.query
        if len(query) > MAX_QUERY:
            return _page(400, "This authorization response is too large; start again.")
        states = [v for k, v in parse_qsl(query, keep_blank_values=True,
                                          max_num_fields=64) if k == "state"]
        if len(states) != 1 or not states[0]:
            return _page(400, "This link is not a valid authorization response (no state).")
        record = self.take(states[0])
        if record is None:
            return _page(400, "This authorization is unknown, expired or already used. Go "
                              "back to your agent and try the call again.")
        try:
            await record.flow.complete(record.pending, f"{record.pending.redirect_uri}?{query}")
        except OAuthError as exc:
            logger.info("authorization for upstream %s failed at the callback: %s",
                        record.upstream, exc)
            return _page(400, f"The authorization for {record.upstream} failed: {exc}")
        logger.info("authorization for upstream %s completed", record.upstream)
        if self.on_completed is not None:
            await self.on_completed(record.binding, record.upstream)
        return _page(200, f"Authorized: Bastion can now reach {record.upstream} for you. "
                          "You can close this window and retry the call in your agent.")


def _page(status: int, message: str) -> Response:
    title = "Authorized" if status == 200 else "Authorization failed"
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>{html.escape(message)}</p></body></html>")
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


__all__ = ["CALLBACK_PATH", "Authorizations", "UserAuthorization"]
