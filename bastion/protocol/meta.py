"""The `_meta` keys of MCP, and the per-request metadata of the modern era.

In 2026-07-28 every request carries its protocol version and the client's capabilities in
`params._meta`; a server never infers them from earlier requests. `RequestMeta.parse` reads
and checks them; `request_meta` builds them for a client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.protocol.errors import InvalidParams

PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
RELATED_TASK = "io.modelcontextprotocol/related-task"
PROGRESS_TOKEN = "progressToken"
TRACE_KEYS = ("traceparent", "tracestate", "baggage")

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def get_meta(params: dict[str, Any] | None) -> dict[str, Any]:
    """`params._meta`, or an empty dict when absent or not an object."""
    if not params:
        return {}
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def progress_token(params: dict[str, Any] | None) -> str | int | None:
    """The request's progress token, if it carries a valid one."""
    token = get_meta(params).get(PROGRESS_TOKEN)
    if isinstance(token, str) or (isinstance(token, int) and not isinstance(token, bool)):
        return token
    return None


def is_modern_request(params: dict[str, Any] | None) -> bool:
    """A request that carries a modern protocol version in `_meta` is served statelessly."""
    return PROTOCOL_VERSION in get_meta(params)


@dataclass(slots=True, frozen=True)
class RequestMeta:
    """The per-request metadata of a modern request."""

    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None = None
    log_level: str | None = None
    progress_token: str | int | None = None

    @classmethod
    def parse(cls, params: dict[str, Any] | None) -> RequestMeta:
        """Read and check the required keys; a missing or malformed one is -32602."""
        meta = get_meta(params)
        version = meta.get(PROTOCOL_VERSION)
        if not isinstance(version, str) or not version:
            raise InvalidParams(f"params._meta[{PROTOCOL_VERSION!r}] is required (a string)")
        caps = meta.get(CLIENT_CAPABILITIES)
        if not isinstance(caps, dict):
            raise InvalidParams(
                f"params._meta[{CLIENT_CAPABILITIES!r}] is required (an object; "
                "{} declares no optional capability)"
            )
        info = meta.get(CLIENT_INFO)
        if info is not None and not isinstance(info, dict):
            raise InvalidParams(f"params._meta[{CLIENT_INFO!r}] must be an object")
        level = meta.get(LOG_LEVEL)
        if level is not None and level not in LOG_LEVELS:
            raise InvalidParams(
                f"params._meta[{LOG_LEVEL!r}] must be one of {', '.join(LOG_LEVELS)}"
            )
        return cls(version, caps, info, level, progress_token(params))


def request_meta(
    version: str,
    capabilities: dict[str, Any],
    client_info: dict[str, Any] | None = None,
    *,
    log_level: str | None = None,
) -> dict[str, Any]:
    """The `_meta` a modern client puts on every request."""
    meta: dict[str, Any] = {PROTOCOL_VERSION: version, CLIENT_CAPABILITIES: capabilities}
    if client_info is not None:
        meta[CLIENT_INFO] = client_info
    if log_level is not None:
        meta[LOG_LEVEL] = log_level
    return meta


def log_level_allows(threshold: str | None, level: str) -> bool:
    """Whether a message at `level` passes a client's `threshold` (None: nothing passes)."""
    if threshold is None:
        return False
    return LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)
