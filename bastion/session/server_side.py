"""The server side of a connection: era per request, the legacy lifecycle, modern `_meta`.

A dual-era server chooses the era per request. A request whose `_meta` carries a protocol
version is served statelessly under the modern rules; anything else belongs to the legacy
session of this connection, which must start with a plain `initialize`. The application
behind it (`ServerApp`) sees one `ServerRequest` either way.

`EraRouter` holds those rules once (modern `_meta` and version checks, -32601 for methods
the era lacks, the legacy lifecycle); stdio (`ServerConnection`) and the Streamable HTTP
transport both serve requests through it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.protocol import messages
from bastion.protocol.errors import MethodNotFound, UnsupportedProtocolVersion
from bastion.protocol.jsonrpc import Notification, RequestId
from bastion.protocol.lifecycle import LegacyServerLifecycle
from bastion.protocol.meta import RequestMeta, is_modern_request, log_level_allows
from bastion.protocol.methods import MODERN_TASK_REQUESTS, requests_from_client
from bastion.protocol.versions import LATEST_LEGACY, Era, allows_batches
from bastion.session.context import IncomingRequest
from bastion.session.core import Session
from bastion.transport.base import Channel

logger = logging.getLogger("bastion.session.server")


class PeerConnection(Protocol):
    """What the server application uses of a client connection (stdio or a legacy HTTP
    session): the legacy lifecycle, the logging level and resource subscriptions the client
    set, and the way back to the client. Modern HTTP requests have no connection."""

    lifecycle: LegacyServerLifecycle
    log_level: str | None
    subscriptions: set[str]

    async def request_client(
        self, method: str, params: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        ...

    async def send_notification(self, notification: Notification) -> None:
        ...


@dataclass(slots=True)
class ServerRequest:
    """One client request, as the server application sees it, in either era."""

    era: Era
    version: str
    method: str
    params: dict[str, Any]
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    log_level: str | None
    incoming: IncomingRequest
    connection: PeerConnection | None = None
    #: The HTTP request's headers (lower-case names), for a gateway's checks; None on stdio.
    headers: Mapping[str, str] | None = None

    @property
    def id(self) -> RequestId:
        return self.incoming.id

    @property
    def principal(self) -> Any:
        """The authenticated principal behind the request (None when nobody checked)."""
        return self.incoming.principal

    async def log(self, level: str, data: Any, logger_name: str | None = None) -> None:
        """Send `notifications/message` if the client asked for this level."""
        if log_level_allows(self.log_level, level):
            await self.incoming.notify(messages.log_message(level, data, logger_name))


class ServerApp(Protocol):
    """What a connection needs from the server application."""

    modern_versions: tuple[str, ...]
    legacy_versions: tuple[str, ...]

    def initialize_result(self, version: str, connection: PeerConnection) -> dict[str, Any]:
        ...

    def supports_method(self, method: str, request: ServerRequest) -> bool:
        ...

    async def handle(self, request: ServerRequest) -> dict[str, Any]:
        ...

    async def on_client_notification(
        self, notification: Notification, connection: PeerConnection
    ) -> None:
        ...

    def connection_opened(self, connection: PeerConnection) -> None:
        ...

    def connection_closed(self, connection: PeerConnection) -> None:
        ...

    def end_streams(self, source: object) -> None:
        """End the long-lived requests (listen streams) that came through `source`."""
        ...


class EraRouter:
    """The per-request era rules, shared by every transport.

    Modern: `_meta` must carry the version and the client's capabilities (-32602), the
    version must be one the application serves (-32022), and the method must exist in that
    version (-32601). Legacy: the connection's lifecycle decides what may run, `initialize`
    and `ping` are answered here, and methods the negotiated version lacks are -32601.
    """

    __slots__ = ("_known", "app")

    def __init__(self, app: ServerApp) -> None:
        self.app = app
        # Per modern version: the methods it defines, tasks-extension methods included.
        self._known: dict[str, frozenset[str]] = {}

    def check_version(self, meta: RequestMeta) -> None:
        """Raise -32022 unless the application serves the request's modern version."""
        if meta.protocol_version not in self.app.modern_versions:
            raise UnsupportedProtocolVersion(
                f"protocol version {meta.protocol_version!r} is not supported; use one of "
                + ", ".join(self.app.modern_versions),
                requested=meta.protocol_version,
                supported=list(self.app.modern_versions),
            )

    def modern_request(
        self, incoming: IncomingRequest, meta: RequestMeta, connection: PeerConnection | None
    ) -> ServerRequest:
        """The modern `ServerRequest`, or -32601 when its version has no such method."""
        method = incoming.method
        request = ServerRequest(
            Era.MODERN, meta.protocol_version, method, incoming.params,
            meta.client_capabilities, meta.client_info, meta.log_level, incoming, connection,
        )
        known = self._known.get(meta.protocol_version)
        if known is None:
            known = requests_from_client(meta.protocol_version) | MODERN_TASK_REQUESTS
            self._known[meta.protocol_version] = known
        if method not in known or not self.app.supports_method(method, request):
            raise MethodNotFound(f"method {method!r} is not available in "
                                 f"{meta.protocol_version}", data={"method": method})
        return request

    async def serve_modern(
        self, incoming: IncomingRequest, connection: PeerConnection | None
    ) -> dict[str, Any]:
        """Check and serve a request that carries modern `_meta` (no transport headers)."""
        meta = RequestMeta.parse(incoming.params)
        self.check_version(meta)
        return await self.app.handle(self.modern_request(incoming, meta, connection))

    async def serve_legacy(
        self, incoming: IncomingRequest, connection: PeerConnection
    ) -> dict[str, Any]:
        """Serve a request of the connection's legacy session, lifecycle first."""
        method = incoming.method
        params = incoming.params
        lifecycle = connection.lifecycle
        lifecycle.check_request(method)
        if method == "initialize":
            version = lifecycle.initialize(params)
            return self.app.initialize_result(version, connection)
        if method == "ping":
            return {}
        version = lifecycle.protocol_version or LATEST_LEGACY
        request = ServerRequest(
            Era.LEGACY, version, method, params, lifecycle.client_capabilities,
            # Legacy servers may log until the client sets a level; modern ones only on request.
            lifecycle.client_info, connection.log_level or "debug", incoming, connection,
        )
        if method not in requests_from_client(version) or not self.app.supports_method(
            method, request
        ):
            raise MethodNotFound(f"method {method!r} is not available", data={"method": method})
        return await self.app.handle(request)


@dataclass(eq=False)
class ServerConnection:
    """One client over a framed channel (a stdio pipe or a socket), in both eras."""

    app: ServerApp
    session: Session
    lifecycle: LegacyServerLifecycle
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    router: EraRouter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.router = EraRouter(self.app)

    @classmethod
    def over(cls, channel: Channel, app: ServerApp, *, name: str = "client",
             **session_options: Any) -> ServerConnection:
        session = Session(channel, name=name, reply_to_garbage=True, **session_options)
        connection = cls(app, session, LegacyServerLifecycle(app.legacy_versions))
        session.on_request = connection._on_request
        session.on_notification = connection._on_notification
        # A client that closed its input can send no cancellation: end its listen streams
        # now, so the drain of in-flight requests does not wait for them.
        session.on_input_closed = lambda: app.end_streams(session)
        return connection

    @property
    def legacy_version(self) -> str | None:
        return self.lifecycle.protocol_version

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self.lifecycle.client_capabilities

    async def serve(self) -> None:
        """Serve until the client goes away."""
        self.app.connection_opened(self)
        try:
            self.session.start()
            await self.session.wait_closed()
        finally:
            self.app.connection_closed(self)
            await self.session.aclose()

    async def request_client(
        self, method: str, params: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Send a server-to-client request (legacy sessions only)."""
        return await self.session.request(method, params, **options)

    async def send_notification(self, notification: Notification) -> None:
        await self.session.send_notification(notification)

    async def _on_request(self, incoming: IncomingRequest) -> dict[str, Any]:
        if is_modern_request(incoming.params):
            return await self.router.serve_modern(incoming, self)
        result = await self.router.serve_legacy(incoming, self)
        if incoming.method == "initialize":
            self.session.allow_batches = allows_batches(self.lifecycle.protocol_version or "")
        return result

    async def _on_notification(self, notification: Notification) -> None:
        if notification.method == "notifications/initialized":
            self.lifecycle.initialized()
            return
        await self.app.on_client_notification(notification, self)


async def serve_channel(app: ServerApp, channel: Channel, **session_options: Any) -> None:
    """Serve one client over a channel until it disconnects."""
    await ServerConnection.over(channel, app, **session_options).serve()

