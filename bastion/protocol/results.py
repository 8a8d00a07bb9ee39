"""`resultType`, MRTR input-required results, and content-block builders."""

from __future__ import annotations

from typing import Any

COMPLETE = "complete"
INPUT_REQUIRED = "input_required"
TASK = "task"
RESULT_TYPES = (COMPLETE, INPUT_REQUIRED, TASK)


def result_type(result: dict[str, Any]) -> str:
    """The kind of a result; a missing `resultType` (an older server) means complete."""
    value = result.get("resultType")
    return value if isinstance(value, str) else COMPLETE


def input_required(
    input_requests: dict[str, dict[str, Any]] | None = None, request_state: str | None = None
) -> dict[str, Any]:
    """An InputRequiredResult; at least one of the two members is required."""
    if not input_requests and request_state is None:
        raise ValueError("an input_required result needs inputRequests or requestState")
    result: dict[str, Any] = {"resultType": INPUT_REQUIRED}
    if input_requests:
        result["inputRequests"] = input_requests
    if request_state is not None:
        result["requestState"] = request_state
    return result


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def image(data_b64: str, mime_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image", "data": data_b64, "mimeType": mime_type, **extra}


def audio(data_b64: str, mime_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": "audio", "data": data_b64, "mimeType": mime_type, **extra}


def embedded_text(uri: str, value: str, mime_type: str = "text/plain") -> dict[str, Any]:
    return {"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "text": value}}


def embedded_blob(uri: str, blob_b64: str, mime_type: str) -> dict[str, Any]:
    return {"type": "resource", "resource": {"uri": uri, "mimeType": mime_type, "blob": blob_b64}}


def resource_link(uri: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "resource_link", "uri": uri, "name": name, **extra}
