"""Per-user connections to upstreams that authorize each user with OAuth (`auth: {oauth:}`).

Such an upstream is not in the shared `UpstreamPool`: each (user binding, upstream) gets its
own `ClientConnection` whose `OAuthProvider` reads and writes that user's view of the
encrypted token store (`user_tokens`), so the upstream sees the user's own upstream token and
never the user's inbound token (SPEC-TP-02). Connections are kept in a bounded LRU
(`max_connections`) and closed after `idle_timeout` seconds unused.

When the user holds no usable token, the provider's flow starts an authorization: the
`PendingAuthorization` is kept in `Authorizations` (bound to the user and upstream) and the
call fails with `AuthorizationRequired`, which the gateway answers with a URL elicitation
(`authorization_answer`): `input_required` for a 2026-07-28 client, -32042
`URLElicitationRequired` for a 2025-11-25 one. Once the browser came back through
`/oauth/callback` the tokens are in the store and the retried call connects with them.

The catalogue: tool, prompt and resource definitions of such an upstream are learnt from
the first user connection that lists them, and shared by every user (definitions are
assumed not to depend on who asks). Until some user connected, the upstream shows nothing;
a call naming it by its prefix still starts that user's authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from bastion.client.oauth import (
    OAuthClientSettings,
    OAuthFlow,
    OAuthProvider,
    PendingAuthorization,
    PreRegisteredClient,
)
from bastion.client.oauth.challenge import BearerChallenge
from bastion.client.oauth.discovery import Discovery
from bastion.config import UpstreamConfig
from bastion.gateway.authorizations import Authorizations, UserAuthorization
from bastion.gateway.errors import UpstreamFailed, UpstreamTimeout
from bastion.gateway.user_tokens import EncryptedTokenStore
from bastion.protocol.errors import MCPError, URLElicitationRequired
from bastion.protocol.results import input_required
from bastion.protocol.versions import Era
from bastion.session.client_side import ClientConnection, ClientHandlers, ServerDescription
from bastion.session.core import ProgressCallback
from bastion.session.errors import RequestTimeout
from bastion.transport.http.client import StreamableHTTPChannel
from bastion.transport.http.egress import EgressClient, EgressPolicy, check_browser_url
from bastion.transport.http.wire import HTTPTimeouts

logger = logging.getLogger("bastion.gateway.user_upstreams")

#: Learns the catalogue from a user connection (the gateway's `FanIn.refresh`).
LearnHook = Callable[["UserUpstream"], Awaitable[None]]
_HTTP_READ_MARGIN = 5.0


class AuthorizationRequired(Exception):
    """The user must authorize the gateway at `upstream` first (open `record.url`)."""

    def __init__(self, upstream: str, record: UserAuthorization) -> None:
        self.upstream = upstream
        self.record = record
        super().__init__(f"upstream {upstream!r} needs your authorization: open the link "
                         f"to {record.pending.host} and retry the call")


class _Deferred(Exception):
    """Raised by the authorizer: the browser step happens later, at the callback."""


class _UserFlow(OAuthFlow):
    """The flow of one user at one upstream: `begin` parks the request in `Authorizations`
    (reusing one still waiting) instead of a browser being driven from here."""

    def __init__(self, settings: OAuthClientSettings, egress: EgressClient, store: Any, *,
                 binding: str, upstream: str, scopes: Iterable[str],
                 authorizations: Authorizations) -> None:
        super().__init__(settings, egress, store)
        self.binding = binding
        self.upstream = upstream
        self.scopes = tuple(scopes)
        self.authorizations = authorizations
        #: Set when a request needed the user's authorization.
        self.needed: UserAuthorization | None = None

    async def begin(self, server_url: str, *, challenge: BearerChallenge | None = None,
                    previous_scopes: Iterable[str] = (),
                    discovery: Discovery | None = None) -> PendingAuthorization:
        waiting = self.authorizations.waiting(self.binding, self.upstream)
        if waiting is not None:
            self.needed = waiting
            return waiting.pending
        pending = await super().begin(
            server_url, challenge=challenge, discovery=discovery,
            previous_scopes=(*self.scopes, *previous_scopes))
        self.needed = self.authorizations.add(self.binding, self.upstream, self, pending)
        return pending


async def _defer(_url: str) -> str:
    raise _Deferred("the user authorizes in a browser; the call is answered with the link")


class UserUpstream:
    """One user's connection to one OAuth upstream (quacks like `Upstream` for the relay)."""

    def __init__(self, config: UpstreamConfig, connection: ClientConnection,
                 provider: OAuthProvider, flow: _UserFlow) -> None:
        self.config = config
        self.name = config.name
        self.connection = connection
        self.provider = provider
        self.flow = flow
        self.last_used = time.monotonic()
        self.broken = False

    @property
    def description(self) -> ServerDescription | None:
        return self.connection.server

    async def request(self, method: str, params: dict[str, Any] | None = None, *,
                      timeout: float | None = None, on_progress: ProgressCallback | None = None,
                      safe_to_retry: bool = False) -> dict[str, Any]:
        self.last_used = time.monotonic()
        self.flow.needed = None
        seconds = timeout if timeout is not None else self.config.timeout
        try:
            return await self.connection.request(method, params, timeout=seconds,
                                                 on_progress=on_progress)
        except MCPError:
            raise
        except RequestTimeout:
            raise UpstreamTimeout(self.name, method, seconds) from None
        except Exception as exc:
            self.broken = True
            if self.flow.needed is not None:
                raise AuthorizationRequired(self.name, self.flow.needed) from None
            raise UpstreamFailed(self.name, method, str(exc)) from None

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.aclose()


class UserUpstreams:
    """The per-user connections of every OAuth upstream (see the module doc)."""

    def __init__(self, configs: Sequence[UpstreamConfig], *, store: EncryptedTokenStore,
                 authorizations: Authorizations, redirect_uri: str,
                 handlers_for: Callable[[str], ClientHandlers] | None = None,
                 client_info: dict[str, Any] | None = None, learn: LearnHook | None = None,
                 max_connections: int = 256, idle_timeout: float = 600.0) -> None:
        self.configs = {c.name: c for c in configs
                        if c.auth is not None and c.auth.oauth is not None}
        for config in self.configs.values():
            if config.url is None:
                raise ValueError(f"upstream {config.name!r}: OAuth needs an HTTP upstream (url)")
        self.store = store
        self.authorizations = authorizations
        self.handlers_for = handlers_for
        self.client_info = client_info
        self.learn = learn
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._settings = {name: _settings(config, redirect_uri)
                          for name, config in self.configs.items()}
        self._egress = {name: _egress(config) for name, config in self.configs.items()}
        self._connections: OrderedDict[tuple[str, str], UserUpstream] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        #: Upstreams whose catalogue was learnt from a user connection.
        self.learnt: set[str] = set()

    def handles(self, name: str | None) -> bool:
        return name in self.configs

    def __len__(self) -> int:
        return len(self._connections)

    async def get(self, binding: str, name: str) -> UserUpstream:
        """The user's connection to `name`, connecting (and learning the catalogue) first if
        needed; raises `AuthorizationRequired` when the user must authorize."""
        if name not in self.configs:
            raise KeyError(f"upstream {name!r} does not use per-user OAuth")
        if not isinstance(binding, str) or not binding:
            raise ValueError("a per-user upstream connection needs the user's binding")
        await self._sweep()
        key = (binding, name)
        # One connection attempt per user and upstream at a time.
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = self._connections.get(key)
            if current is not None and not current.broken:
                self._connections.move_to_end(key)
                current.last_used = time.monotonic()
                return current
            if current is not None:
                await self._drop(key)
            upstream = await self._connect(binding, name)
            self._connections[key] = upstream
            await self._evict()
        if name not in self.learnt and self.learn is not None:
            self.learnt.add(name)
            await self.learn(upstream)
        return upstream

    async def _connect(self, binding: str, name: str) -> UserUpstream:
        config = self.configs[name]
        assert config.url is not None and config.auth is not None and config.auth.oauth
        egress = self._egress[name]
        flow = _UserFlow(self._settings[name], egress, self.store.for_user(binding),
                         binding=binding, upstream=name, scopes=config.auth.oauth.scopes,
                         authorizations=self.authorizations)
        provider = OAuthProvider(config.url, self._settings[name], authorizer=_defer,
                                 egress=egress)
        provider.flow = flow  # the user's store, and begin() parked for the callback
        channel = StreamableHTTPChannel(
            config.url, headers=dict(config.headers), auth_provider=provider,
            timeouts=HTTPTimeouts(connect=config.connect_timeout,
                                  read=config.timeout + _HTTP_READ_MARGIN))
        connection = ClientConnection(
            channel, handlers=self.handlers_for(name) if self.handlers_for else None,
            client_info=self.client_info, mode=config.protocol,
            probe_timeout=min(5.0, config.connect_timeout / 2), name=name,
            default_timeout=config.timeout)
        try:
            await asyncio.wait_for(connection.connect(), config.connect_timeout)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await connection.aclose()
            if flow.needed is not None:
                raise AuthorizationRequired(name, flow.needed) from None
            if isinstance(exc, MCPError):
                raise
            raise UpstreamFailed(name, "initialize", str(exc) or type(exc).__name__) from None
        logger.info("upstream %s: connected for a user (%s)", name,
                    connection.server.version if connection.server else "?")
        return UserUpstream(config, connection, provider, flow)

    async def forget(self, binding: str, name: str) -> None:
        """Close the user's connection to `name` (after new tokens, to use them)."""
        await self._drop((binding, name))

    async def _drop(self, key: tuple[str, str]) -> None:
        upstream = self._connections.pop(key, None)
        if upstream is not None:
            await upstream.aclose()

    async def _sweep(self) -> None:
        deadline = time.monotonic() - self.idle_timeout
        for key in [k for k, u in self._connections.items() if u.last_used < deadline]:
            await self._drop(key)
        for key in [k for k, lock in self._locks.items()
                    if not lock.locked() and k not in self._connections]:
            del self._locks[key]

    async def _evict(self) -> None:
        while len(self._connections) > self.max_connections:
            key = next(iter(self._connections))
            await self._drop(key)

    async def aclose(self) -> None:
        for key in list(self._connections):
            await self._drop(key)
        for egress in self._egress.values():
            await egress.aclose()


def _settings(config: UpstreamConfig, redirect_uri: str) -> OAuthClientSettings:
    assert config.auth is not None and config.auth.oauth is not None
    oauth = config.auth.oauth
    clients = {issuer: PreRegisteredClient(
        client.client_id,
        client.client_secret.get_secret_value() if client.client_secret else None,
        client.token_endpoint_auth_method) for issuer, client in oauth.clients.items()}
    return OAuthClientSettings(redirect_uri=redirect_uri, client_name=oauth.client_name,
                               client_metadata_url=oauth.client_metadata_url,
                               clients=clients, offline_access=oauth.offline_access)


def _egress(config: UpstreamConfig) -> EgressClient:
    assert config.auth is not None and config.auth.oauth is not None
    oauth = config.auth.oauth
    return EgressClient(EgressPolicy(
        allow_insecure_loopback=oauth.allow_insecure_loopback,
        allowed_networks=tuple(ipaddress.ip_network(n) for n in oauth.allowed_networks)))


def authorization_answer(exc: AuthorizationRequired, era: Era,
                         seal: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """The answer to a call that needs the user's authorization: a URL elicitation, as
    `input_required` (modern) or raised as -32042 `URLElicitationRequired` (legacy)."""
    record = exc.record
    check_browser_url(record.url)  # SPEC-SSRF-08, again: it is about to be shown
    message = (f"Bastion needs your permission to reach {exc.upstream} for you: sign in at "
               f"{record.pending.host}, then retry.")
    if era is Era.MODERN:
        ask = {"method": "elicitation/create",
               "params": {"mode": "url", "message": message, "url": record.url}}
        return input_required({record.elicitation_id: ask}, seal({"oauth": exc.upstream}))
    raise URLElicitationRequired(message, data={"elicitations": [{
        "mode": "url", "elicitationId": record.elicitation_id, "url": record.url,
        "message": message}]})


__all__ = ["AuthorizationRequired", "UserUpstream", "UserUpstreams", "authorization_answer"]
