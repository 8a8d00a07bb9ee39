"""The server side of a connection: era per request, the legacy lifecycle, modern `_meta`.

A dual-era server chooses the era per request. A request whose `_meta` carries a protocol
version is served statelessly under the modern rules; anything else belongs to the legacy
session of this connection, which must start with a plain `initialize`. The application
behind it (`ServerApp`) sees one `ServerRequest` either way.
"""

from __future__ import annotations

import logging
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
    connection: ServerConnection | None = None

    @property
    def id(self) -> RequestId:
        return self.incoming.id

    async def log(self, level: str, data: Any, logger_name: str | None = None) -> None:
        """Send `notifications/message` if the client asked for this level."""
        if log_level_allows(self.log_level, level):
            await self.incoming.notify(messages.log_message(level, data, logger_name))


class ServerApp(Protocol):
    """What a connection needs from the server application."""

    modern_versions: tuple[str, ...]
    legacy_versions: tuple[str, ...]

    def initialize_result(self, version: str, connection: ServerConnection) -> dict[str, Any]:
        ...

    def supports_method(self, method: str, request: ServerRequest) -> bool:
        ...

    async def handle(self, request: ServerRequest) -> dict[str, Any]:
        ...

    async def on_client_notification(
        self, notification: Notification, connection: ServerConnection
    ) -> None:
        ...

    def connection_opened(self, connection: ServerConnection) -> None:
        ...

    def connection_closed(self, connection: ServerConnection) -> None:
        ...


@dataclass(eq=False)
class ServerConnection:
    """One client connection (a stdio pipe, or one legacy HTTP session)."""

    app: ServerApp
    session: Session
    lifecycle: LegacyServerLifecycle
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)

    @classmethod
    def over(cls, channel: Channel, app: ServerApp, *, name: str = "client",
             **session_options: Any) -> ServerConnection:
        session = Session(channel, name=name, reply_to_garbage=True, **session_options)
        connection = cls(app, session, LegacyServerLifecycle(app.legacy_versions))
        session.on_request = connection._on_request
        session.on_notification = connection._on_notification
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
        params = incoming.params
        method = incoming.method
        if is_modern_request(params):
            meta = RequestMeta.parse(params)
            if meta.protocol_version not in self.app.modern_versions:
                raise UnsupportedProtocolVersion(
                    f"protocol version {meta.protocol_version!r} is not supported; use one of "
                    + ", ".join(self.app.modern_versions),
                    requested=meta.protocol_version,
                    supported=list(self.app.modern_versions),
                )
            request = ServerRequest(
                Era.MODERN, meta.protocol_version, method, params, meta.client_capabilities,
                meta.client_info, meta.log_level, incoming, self,
            )
            known = requests_from_client(meta.protocol_version) | MODERN_TASK_REQUESTS
            if method not in known or not self.app.supports_method(method, request):
                raise MethodNotFound(f"method {method!r} is not available in "
                                     f"{meta.protocol_version}", data={"method": method})
            return await self.app.handle(request)
        self.lifecycle.check_request(method)
        if method == "initialize":
            version = self.lifecycle.initialize(params)
            self.session.allow_batches = allows_batches(version)
            return self.app.initialize_result(version, self)
        if method == "ping":
            return {}
        version = self.lifecycle.protocol_version or LATEST_LEGACY
        request = ServerRequest(
            Era.LEGACY, version, method, params, self.lifecycle.client_capabilities,
            # Legacy servers may log until the client sets a level; modern ones only on request.
            self.lifecycle.client_info, self.log_level or "debug", incoming, self,
        )
        if method not in requests_from_client(version) or not self.app.supports_method(
            method, request
        ):
            raise MethodNotFound(f"method {method!r} is not available", data={"method": method})
        return await self.app.handle(request)

    async def _on_notification(self, notification: Notification) -> None:
        if notification.method == "notifications/initialized":
            self.lifecycle.initialized()
            return
        await self.app.on_client_notification(notification, self)


async def serve_channel(app: ServerApp, channel: Channel, **session_options: Any) -> None:
    """Serve one client over a channel until it disconnects."""
    await ServerConnection.over(channel, app, **session_options).serve()

