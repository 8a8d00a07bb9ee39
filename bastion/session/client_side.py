"""The client side of a connection, for both eras, with era detection.

`ClientConnection.connect()` probes `server/discover` with the newest modern version. A
discover result means modern; a modern error (-32022 names the versions) means modern at a
mutual version, with no fallback; any other error or silence means legacy, and the
`initialize` handshake follows. After that, `request()` adds the per-request `_meta` in the
modern era, and the legacy session answers the server's own requests (ping, sampling,
elicitation, roots) through `ClientHandlers`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.protocol import messages
from bastion.protocol.capabilities import elicitation_modes
from bastion.protocol.errors import (
    MODERN_ERROR_CODES,
    UNSUPPORTED_PROTOCOL_VERSION,
    InvalidParams,
    MCPError,
    MethodNotFound,
)
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.meta import request_meta
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, Era
from bastion.session.context import IncomingRequest
from bastion.session.core import ProgressCallback, Session
from bastion.session.errors import EraDetectionError, RequestTimeout
from bastion.transport.base import Channel

logger = logging.getLogger("bastion.session.client")

ClientMode = Literal["auto", "legacy", "modern"]
JSONHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RootsHandler = Callable[[], Awaitable[list[dict[str, Any]]]]
NotificationCallback = Callable[[Notification], Awaitable[None]]

DEFAULT_CLIENT_INFO = {"name": "bastion-client", "version": "0.1.0"}


@dataclass(slots=True)
class ClientHandlers:
    """What a client can do for a server; each present handler declares a capability."""

    sampling: JSONHandler | None = None
    sampling_tools: bool = False
    elicitation: JSONHandler | None = None
    elicitation_modes: tuple[str, ...] = ("form",)
    roots: RootsHandler | None = None
    on_notification: NotificationCallback | None = None
    #: Modern: declare the tasks extension, so the server may answer tools/call with a task
    #: (which `Client.call_tool` then follows to its end).
    tasks: bool = False

    def capabilities(self, era: Era) -> dict[str, Any]:
        caps: dict[str, Any] = {}
        if self.sampling is not None:
            caps["sampling"] = {"tools": {}} if self.sampling_tools else {}
        if self.elicitation is not None:
            caps["elicitation"] = {mode: {} for mode in self.elicitation_modes}
        if self.roots is not None:
            caps["roots"] = {"listChanged": True} if era is Era.LEGACY else {}
        if self.tasks and era is Era.MODERN:
            caps["extensions"] = {TASKS_EXTENSION: {}}
        return caps


@dataclass(slots=True)
class ServerDescription:
    """What the server said about itself (discover result or initialize result)."""

    era: Era
    version: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    server_info: dict[str, Any] | None = None
    instructions: str | None = None
    supported_versions: list[str] = field(default_factory=list)


class ClientConnection:
    """A client's connection to one server, in whichever era the server speaks."""

    def __init__(
        self,
        channel: Channel,
        *,
        handlers: ClientHandlers | None = None,
        client_info: dict[str, Any] | None = None,
        mode: ClientMode = "auto",
        probe_timeout: float = 5.0,
        name: str = "server",
        log_level: str | None = None,
        describe_close: Callable[[], str] | None = None,
        **session_options: Any,
    ) -> None:
        self.handlers = handlers or ClientHandlers()
        self.client_info = client_info or dict(DEFAULT_CLIENT_INFO)
        self.mode = mode
        self.probe_timeout = probe_timeout
        self.log_level = log_level
        self.session = Session(
            channel, name=name, reply_to_garbage=False, on_request=self._on_request,
            on_notification=self._on_notification, describe_close=describe_close,
            **session_options,
        )
        self.server: ServerDescription | None = None

    @property
    def era(self) -> Era:
        if self.server is None:
            raise RuntimeError("not connected: call connect() first")
        return self.server.era

    @property
    def version(self) -> str:
        if self.server is None:
            raise RuntimeError("not connected: call connect() first")
        return self.server.version

    async def connect(self) -> ServerDescription:
        """Establish the era (and, in legacy, the session) with the server."""
        self.session.start()
        if self.mode != "legacy":
            description = await self._probe_modern()
            if description is not None:
                self.server = description
                return description
            if self.mode == "modern":
                raise EraDetectionError(
                    f"{self.session.name} does not speak the modern protocol "
                    f"({', '.join(MODERN_VERSIONS)}); connect with mode='auto' or 'legacy'"
                )
        self.server = await self._initialize()
        return self.server

    async def _probe_modern(self) -> ServerDescription | None:
        version = MODERN_VERSIONS[-1]
        for _attempt in range(2):
            try:
                result = await self.session.request(
                    "server/discover",
                    {"_meta": self._meta(version)},
                    timeout=self.probe_timeout,
                )
            except RequestTimeout:
                logger.debug("%s: no answer to server/discover; trying legacy", self.session.name)
                return None
            except MCPError as exc:
                if exc.code == UNSUPPORTED_PROTOCOL_VERSION and isinstance(exc.data, dict):
                    mutual = [v for v in exc.data.get("supported", []) if v in MODERN_VERSIONS]
                    if not mutual:
                        raise EraDetectionError(
                            f"{self.session.name} supports {exc.data.get('supported')}, none of "
                            f"which this client speaks ({', '.join(MODERN_VERSIONS)})"
                        ) from exc
                    version = mutual[-1]
                    continue
                if exc.code in MODERN_ERROR_CODES:
                    raise EraDetectionError(
                        f"{self.session.name} refused server/discover: {exc.message}"
                    ) from exc
                logger.debug("%s: server/discover failed (%s); trying legacy",
                             self.session.name, exc.message)
                return None
            supported = [v for v in result.get("supportedVersions", []) if isinstance(v, str)]
            if supported and version not in supported:
                mutual = [v for v in supported if v in MODERN_VERSIONS]
                if not mutual:
                    return None  # a server whose modern versions we do not speak
                version = mutual[-1]
            meta = result.get("_meta") or {}
            return ServerDescription(
                Era.MODERN,
                version,
                result.get("capabilities") or {},
                meta.get("io.modelcontextprotocol/serverInfo"),
                result.get("instructions"),
                supported,
            )
        return None

    async def _initialize(self) -> ServerDescription:
        capabilities = self.handlers.capabilities(Era.LEGACY)
        result = await self.session.request(
            "initialize",
            messages.initialize_params(LEGACY_VERSIONS[-1], capabilities, self.client_info),
            timeout=max(self.probe_timeout, 30.0),
            cancellable=False,
        )
        version = result.get("protocolVersion")
        if version not in LEGACY_VERSIONS:
            await self.session.aclose()
            raise EraDetectionError(
                f"{self.session.name} answered initialize with protocol version {version!r}, "
                f"which this client does not speak ({', '.join(LEGACY_VERSIONS)})"
            )
        await self.session.send_notification(messages.initialized())
        return ServerDescription(
            Era.LEGACY,
            version,
            result.get("capabilities") or {},
            result.get("serverInfo"),
            result.get("instructions"),
            [version],
        )

    def _meta(self, version: str) -> dict[str, Any]:
        return request_meta(
            version, self.handlers.capabilities(Era.MODERN), self.client_info,
            log_level=self.log_level,
        )

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        max_timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Send a request in the connection's era (adding `_meta` when modern)."""
        if self.era is Era.MODERN:
            params = dict(params or {})
            meta = self._meta(self.version)
            meta.update(params.get("_meta") or {})
            params["_meta"] = meta
        return await self.session.request(method, params, timeout=timeout,
                                          max_timeout=max_timeout, on_progress=on_progress)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.session.notify(method, params)

    async def aclose(self) -> None:
        await self.session.aclose()

    # -- the server's requests (legacy) and notifications -------------------------------

    async def _on_request(self, incoming: IncomingRequest) -> dict[str, Any]:
        method, params = incoming.method, incoming.params
        if method == "ping":
            return {}
        if method == "sampling/createMessage" and self.handlers.sampling is not None:
            return await self.handlers.sampling(params)
        if method == "elicitation/create" and self.handlers.elicitation is not None:
            mode = params.get("mode", "form")
            if mode not in elicitation_modes(self.handlers.capabilities(Era.LEGACY)):
                raise InvalidParams(f"this client does not support {mode!r} elicitation")
            return await self.handlers.elicitation(params)
        if method == "roots/list" and self.handlers.roots is not None:
            return {"roots": await self.handlers.roots()}
        raise MethodNotFound(f"this client does not handle {method!r}", data={"method": method})

    async def _on_notification(self, notification: Notification) -> None:
        if self.handlers.on_notification is not None:
            await self.handlers.on_notification(notification)


__all__ = [
    "ClientConnection",
    "ClientHandlers",
    "ClientMode",
    "ServerDescription",
]
