"""JSON-RPC and MCP error codes, and the typed exceptions that carry them.

Every error that crosses the wire is an `MCPError` (or a subclass): it knows its code, its
message and its optional `data`, and turns itself into a JSON-RPC error object. Subclasses
exist for the codes callers branch on, so `except MethodNotFound` reads like the spec.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002  # legacy only; modern servers use -32602 with data.uri
URL_ELICITATION_REQUIRED = -32042  # 2025-11-25 only
HEADER_MISMATCH = -32020  # modern
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021  # modern
UNSUPPORTED_PROTOCOL_VERSION = -32022  # modern

#: Codes that only a modern (2026-07-28) peer sends; a client uses them for era detection.
MODERN_ERROR_CODES = frozenset(
    {HEADER_MISMATCH, MISSING_REQUIRED_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION}
)


class MCPError(Exception):
    """An error that is (or came from) a JSON-RPC error object."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        """The JSON-RPC `error` member for this exception."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def from_error(cls, error: dict[str, Any]) -> MCPError:
        """Rebuild the most specific exception for a received error object."""
        code = error.get("code")
        message = error.get("message")
        if not isinstance(message, str):
            message = "(no message)"
        # bool is an int subclass (True == 1): it is not an error code.
        valid_code = isinstance(code, int) and not isinstance(code, bool)
        exc_type = _BY_CODE.get(code, MCPError) if valid_code else MCPError
        if exc_type is MCPError:
            return MCPError(message, code=code if valid_code else INTERNAL_ERROR,
                            data=error.get("data"))
        return exc_type(message, data=error.get("data"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class ParseError(MCPError):
    code = PARSE_ERROR


class InvalidRequest(MCPError):
    code = INVALID_REQUEST


class MethodNotFound(MCPError):
    code = METHOD_NOT_FOUND


class InvalidParams(MCPError):
    code = INVALID_PARAMS


class InternalError(MCPError):
    code = INTERNAL_ERROR


class ResourceNotFound(MCPError):
    code = RESOURCE_NOT_FOUND


class URLElicitationRequired(MCPError):
    code = URL_ELICITATION_REQUIRED


class HeaderMismatch(MCPError):
    code = HEADER_MISMATCH


class MissingRequiredClientCapability(MCPError):
    code = MISSING_REQUIRED_CLIENT_CAPABILITY

    def __init__(self, message: str, *, required: dict[str, Any] | None = None,
                 data: Any = None) -> None:
        if data is None:
            data = {"requiredCapabilities": required or {}}
        super().__init__(message, data=data)


class UnsupportedProtocolVersion(MCPError):
    code = UNSUPPORTED_PROTOCOL_VERSION

    def __init__(self, message: str, *, requested: str | None = None,
                 supported: list[str] | None = None, data: Any = None) -> None:
        if data is None:
            data = {"requested": requested if requested is not None else "",
                    "supported": list(supported or [])}
        super().__init__(message, data=data)


_BY_CODE: dict[int, type[MCPError]] = {
    cls.code: cls
    for cls in (ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError,
                ResourceNotFound, URLElicitationRequired, HeaderMismatch,
                MissingRequiredClientCapability, UnsupportedProtocolVersion)
}


class ProtocolError(Exception):
    """The peer broke the protocol in a way that is not a JSON-RPC error (local detection)."""
