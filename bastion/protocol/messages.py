"""Builders for the protocol's own messages: handshake, progress, cancellation, logging."""

from __future__ import annotations

from typing import Any

from bastion.protocol.jsonrpc import Notification, RequestId


def initialize_params(
    version: str, capabilities: dict[str, Any], client_info: dict[str, Any]
) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": capabilities, "clientInfo": client_info}


def initialize_result(
    version: str,
    capabilities: dict[str, Any],
    server_info: dict[str, Any],
    instructions: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info,
    }
    if instructions:
        result["instructions"] = instructions
    return result


def initialized() -> Notification:
    return Notification("notifications/initialized")


def cancelled(request_id: RequestId, reason: str | None = None) -> Notification:
    params: dict[str, Any] = {"requestId": request_id}
    if reason:
        params["reason"] = reason
    return Notification("notifications/cancelled", params)


def progress(
    token: str | int,
    value: float,
    total: float | None = None,
    message: str | None = None,
) -> Notification:
    params: dict[str, Any] = {"progressToken": token, "progress": value}
    if total is not None:
        params["total"] = total
    if message is not None:
        params["message"] = message
    return Notification("notifications/progress", params)


def log_message(level: str, data: Any, logger: str | None = None) -> Notification:
    params: dict[str, Any] = {"level": level, "data": data}
    if logger is not None:
        params["logger"] = logger
    return Notification("notifications/message", params)


def list_changed(kind: str) -> Notification:
    """`kind` is tools, prompts or resources."""
    return Notification(f"notifications/{kind}/list_changed")


def resource_updated(uri: str) -> Notification:
    return Notification("notifications/resources/updated", {"uri": uri})
