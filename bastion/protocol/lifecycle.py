"""The legacy (initialize-handshake) lifecycle as a sans-I/O state machine.

Before `initialize` only `ping` may be exchanged; `initialize` happens once and is never
cancelled; after the client's `notifications/initialized` the session is operating. The
modern era has no lifecycle: every request stands alone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from bastion.protocol.errors import InvalidParams, InvalidRequest
from bastion.protocol.versions import LEGACY_VERSIONS, negotiate_legacy

PRE_INIT_METHODS = frozenset({"initialize", "ping"})


class LifecycleState(StrEnum):
    NEW = "new"  # nothing yet
    INITIALIZED = "initialized"  # initialize answered, waiting for notifications/initialized
    OPERATING = "operating"  # handshake complete
    CLOSED = "closed"


class LegacyServerLifecycle:
    """Tracks one legacy session on the server side and decides what may happen next."""

    def __init__(self, supported_versions: tuple[str, ...] = LEGACY_VERSIONS) -> None:
        self.state = LifecycleState.NEW
        self.supported_versions = supported_versions
        self.protocol_version: str | None = None
        self.client_capabilities: dict[str, Any] = {}
        self.client_info: dict[str, Any] | None = None

    def check_request(self, method: str) -> None:
        """Raise InvalidRequest if `method` may not be served in the current state."""
        if self.state is LifecycleState.CLOSED:
            raise InvalidRequest("the session has ended")
        if method == "initialize":
            if self.state is not LifecycleState.NEW:
                raise InvalidRequest("the session is already initialized; initialize only once")
            return
        if self.state is LifecycleState.NEW and method not in PRE_INIT_METHODS:
            raise InvalidRequest(
                f"{method!r} before initialize: send initialize first (only ping is allowed)"
            )

    def initialize(self, params: dict[str, Any] | None) -> str:
        """Record the client's initialize and return the negotiated version."""
        self.check_request("initialize")
        params = params or {}
        caps = params.get("capabilities")
        info = params.get("clientInfo")
        requested = params.get("protocolVersion")
        # Malformed initialize params are -32602, as in the spec's initialization error example.
        if not isinstance(requested, str):
            raise InvalidParams('initialize needs "protocolVersion" (a string)')
        if not isinstance(caps, dict):
            raise InvalidParams('initialize needs "capabilities" (an object)')
        self.protocol_version = negotiate_legacy(requested, self.supported_versions)
        self.client_capabilities = caps
        self.client_info = info if isinstance(info, dict) else None
        self.state = LifecycleState.INITIALIZED
        return self.protocol_version

    def resume(self, protocol_version: str, client_capabilities: dict[str, Any],
               client_info: dict[str, Any] | None = None) -> None:
        """Continue a session whose handshake happened elsewhere (another replica, whose
        sealed session id carried what was negotiated): operating at once, no initialize."""
        if self.state is not LifecycleState.NEW:
            raise InvalidRequest(f"cannot resume a session into a {self.state} lifecycle")
        if protocol_version not in self.supported_versions:
            raise InvalidParams(
                f"protocol version {str(protocol_version)[:40]!r} is not served here "
                f"(supported: {', '.join(self.supported_versions)}): initialize a new session")
        if not isinstance(client_capabilities, dict):
            raise InvalidParams("resumed client capabilities must be an object")
        self.protocol_version = protocol_version
        self.client_capabilities = client_capabilities
        self.client_info = client_info if isinstance(client_info, dict) else None
        self.state = LifecycleState.OPERATING

    def initialized(self) -> None:
        """The client's `notifications/initialized` arrived."""
        if self.state is LifecycleState.INITIALIZED:
            self.state = LifecycleState.OPERATING

    @property
    def may_send_requests(self) -> bool:
        """Server-to-client requests (other than ping) wait for notifications/initialized."""
        return self.state is LifecycleState.OPERATING

    def close(self) -> None:
        self.state = LifecycleState.CLOSED
