"""`bastion serve`: run the gateway on Streamable HTTP or on stdio until told to stop.

Start-up connects every upstream in parallel (a broken one is reported, not fatal). On
SIGTERM or SIGINT the listener stops taking requests, calls in flight get
`server.drain_timeout` seconds to finish, the stdio upstreams are stopped with the shutdown
ladder, and the process exits 0.

With no authentication configured the gateway listens only on loopback (or stdio): anyone
who can reach the port could otherwise use every upstream with the gateway's credentials.
The development issuer (`auth: {mode: dev}`) is for one machine too. With `auth`, every HTTP
request is authenticated (`bastion.guard.identity`) before anything else, the RFC 9728
metadata is served beside the endpoint, and the resource URL tokens must be minted for is
`auth.resource`, or the listener's own URL. A stdio client is the local user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bastion.admin import approval_routes
from bastion.config import BastionConfig, load_session_key, resolve_state_dir
from bastion.config.auth import is_loopback_host, listener_resource_url
from bastion.gateway.app import Gateway
from bastion.gateway.authorizations import CALLBACK_PATH
from bastion.gateway.health import observability_routes
from bastion.gateway.user_tokens import EncryptedTokenStore
from bastion.gateway.web import metadata_route, web_app
from bastion.guard.identity import Authenticator, build_authenticator
from bastion.protocol.principal import ANONYMOUS, local_principal
from bastion.transport.http.server import LOOPBACK_HOSTS, uvicorn_server
from bastion.transport.http.session_ids import SealedSessionIds

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("bastion.gateway.serve")


class UnsafeListener(Exception):
    """The listener would expose an unauthenticated gateway beyond this machine."""

    def __init__(self, host: str, auth_mode: str = "none") -> None:
        self.host = host
        why = ("with the development issuer (auth.mode dev is for one machine)"
               if auth_mode == "dev" else "without authentication")
        super().__init__(
            f"refusing to listen on {host!r} {why}: anyone who can reach it could use every "
            "upstream. Listen on 127.0.0.1 (or use --stdio), or configure `auth: {mode: jwt}` "
            "with your identity provider first.")


class ListenError(Exception):
    """The listening socket could not be opened (address in use, no such address)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port = host, port
        super().__init__(f"cannot listen on {host}:{port}: {reason}")


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, opened before any upstream starts work for nothing."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ListenError(host, port, str(exc)) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, exc.strerror.lower() if exc.strerror else str(exc)
                          ) from None
    return sock


def check_listener(host: str, *, auth_mode: str) -> None:
    """Raise `UnsafeListener` for a non-loopback listener without real authentication
    (none, or the development issuer)."""
    if auth_mode != "jwt" and not is_loopback_host(host):
        raise UnsafeListener(host, auth_mode)


@dataclass(slots=True)
class Listener:
    """Where to serve: HTTP on host:port, or stdio."""

    host: str | None = None
    port: int | None = None
    stdio: bool = False


async def serve(config: BastionConfig, listener: Listener, *,
                ready: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM/SIGINT (or, on stdio, until the client leaves)."""
    sock = None
    authenticator: Authenticator | None = None
    host = listener.host or config.server.host
    if not listener.stdio:
        check_listener(host, auth_mode=config.auth.mode)
        sock = bind_socket(host, config.server.port if listener.port is None else listener.port)
        authenticator = listener_authenticator(config, *sock.getsockname()[:2])
    key = load_session_key(config)
    gateway = Gateway(config, key=key, default_principal=local_principal(
        frozenset(config.auth.local_roles)) if listener.stdio else ANONYMOUS,
        loopback_only=listener.stdio or is_loopback_host(host))
    if authenticator is not None:
        await authenticator.start()
    await gateway.start(None if sock is None else str(sock.getsockname()[1]))
    for upstream in gateway.pool:
        if upstream.state != "up":
            logger.warning("upstream %s is not available: %s", upstream.name,
                           upstream.last_error)
    try:
        if sock is None:
            await _serve_stdio(gateway, config.server.drain_timeout, ready)
        else:
            await _serve_http(gateway, config, sock, key, authenticator, ready)
    finally:
        if sock is not None:
            sock.close()
        await gateway.aclose()
        if authenticator is not None:
            await authenticator.aclose()


def listener_authenticator(config: BastionConfig, host: str, port: int) -> Authenticator | None:
    """The authenticator of an HTTP listener on host:port (None without `auth`)."""
    default = listener_resource_url(host, port, config.server.path)
    return build_authenticator(config.auth, resource_url=config.auth.resource_url(default),
                               state_dir=resolve_state_dir(config))


def public_origin(config: BastionConfig, host: str, port: int) -> str:
    """Where clients reach the gateway: the origin of `auth.resource`, else the
    listener's."""
    return config.auth.public_origin(host, port, config.server.path)


def callback_url(config: BastionConfig, host: str, port: int) -> str:
    """The gateway's OAuth redirect URI: `/oauth/callback` at its public origin."""
    return public_origin(config, host, port) + CALLBACK_PATH


def http_server(gateway: Gateway, config: BastionConfig, host: str, port: int,
                key: bytes, authenticator: Authenticator | None = None) -> uvicorn.Server:
    """The uvicorn server for the gateway's endpoint (`await .serve()` runs it); with an
    authenticator, every request is authenticated and the resource metadata is served."""
    settings = config.server
    routes = []
    if authenticator is not None:
        routes += metadata_route(authenticator.metadata_paths(),
                                 authenticator.protected_resource_metadata())
    if gateway.oauth_upstreams:
        gateway.enable_user_oauth(callback_url(config, host, port),
                                  EncryptedTokenStore.in_state_dir(resolve_state_dir(config), key))
        routes += gateway.authorizations.routes()
    routes += observability_routes(
        gateway.metrics, gateway.prober, config.metrics, config.health,
        authenticator=authenticator,
        audit_running=(lambda: gateway.audit.running) if gateway.audit is not None else None)
    origin = public_origin(config, host, port)
    gateway.set_public_origin(origin)
    if authenticator is not None and gateway.approvals is not None:
        # Approvers act in this process, so a decision wakes the waiting call at once. No
        # admin API without authentication: the CLI on the host remains.
        routes += approval_routes(gateway.approvals, authenticator, csrf_key=key,
                                  origins=[origin])
    return uvicorn_server(
        gateway, host, port, path=settings.path,
        allowed_hosts=settings.allowed_hosts or [*LOOPBACK_HOSTS],
        allowed_origins=settings.allowed_origins, max_body_size=settings.max_body_size,
        # Without the header/body stage, the endpoint's own check still runs.
        header_check=gateway.pipeline.check_headers if gateway.pipeline.checks_headers
        else None,
        session_ids=SealedSessionIds({"k1": key}, "k1"),
        graceful_timeout=settings.drain_timeout, reraise_signals=False,
        authenticator=authenticator, on_refusal=gateway.auth_refused,
        fallback=web_app(routes) if routes else None,
    )


async def _serve_http(gateway: Gateway, config: BastionConfig, sock: socket.socket,
                      key: bytes, authenticator: Authenticator | None,
                      ready: asyncio.Event | None) -> None:
    host, port = sock.getsockname()[:2]
    server = http_server(gateway, config, host, port, key, authenticator)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
        logger.info("Bastion serves MCP at http://%s:%s%s (%d upstreams)", bound[0], bound[1],
                    config.server.path, len(gateway.pool))
        if ready is not None:
            ready.set()
    await serving


async def _serve_stdio(gateway: Gateway, drain_timeout: float,
                       ready: asyncio.Event | None) -> None:
    from bastion.session.server_side import ServerConnection
    from bastion.transport.stdio import stdio_channel

    connection = ServerConnection.over(await stdio_channel(), gateway, name="stdio-client")
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def stop() -> None:
        if not draining:
            logger.info("stopping: draining the calls in flight (at most %.0f s)", drain_timeout)
            draining.append(loop.create_task(connection.session.drain(drain_timeout)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)
    if ready is not None:
        ready.set()
    try:
        await connection.serve()
        for task in draining:
            await task
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
