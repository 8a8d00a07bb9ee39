"""The sans-I/O MCP protocol core: JSON-RPC envelopes, versions and eras, method catalogue,
`_meta` keys, the legacy lifecycle, capability reading and message builders.

No sockets and no asyncio here: transports feed bytes in, sessions drive the state machines.
"""

from bastion.protocol.errors import (
    HeaderMismatch,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MCPError,
    MethodNotFound,
    MissingRequiredClientCapability,
    ParseError,
    ProtocolError,
    ResourceNotFound,
    UnsupportedProtocolVersion,
    URLElicitationRequired,
)
from bastion.protocol.jsonrpc import (
    ErrorResponse,
    Message,
    Notification,
    Request,
    RequestId,
    Response,
    dumps,
    parse_message,
)
from bastion.protocol.versions import (
    ALL_VERSIONS,
    LATEST_LEGACY,
    LATEST_MODERN,
    LEGACY_VERSIONS,
    MODERN_VERSIONS,
    Era,
    era_of,
)

__all__ = [
    "ALL_VERSIONS",
    "LATEST_LEGACY",
    "LATEST_MODERN",
    "LEGACY_VERSIONS",
    "MODERN_VERSIONS",
    "Era",
    "ErrorResponse",
    "HeaderMismatch",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MCPError",
    "Message",
    "MethodNotFound",
    "MissingRequiredClientCapability",
    "Notification",
    "ParseError",
    "ProtocolError",
    "Request",
    "RequestId",
    "ResourceNotFound",
    "Response",
    "URLElicitationRequired",
    "UnsupportedProtocolVersion",
    "dumps",
    "era_of",
    "parse_message",
]
