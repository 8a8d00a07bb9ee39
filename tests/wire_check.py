"""Check every frame a Bastion peer writes against the official schema of its version.

`SchemaCheckedChannel` wraps a channel: each frame written is validated as a JSON-RPC
message, and requests, results and notifications against their own `$defs` type (results
are matched to the method of the request they answer). Tests use it on both ends of a
connection, so every message Bastion emits in them is checked.
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion.protocol.meta import PROTOCOL_VERSION
from bastion.transport.framing import LineChannel
from tests.schema_check import def_names, validate_def, validate_message

RESULT_TYPES = {
    "initialize": "InitializeResult",
    "server/discover": "DiscoverResult",
    "tools/list": "ListToolsResult",
    "tools/call": "CallToolResult",
    "resources/list": "ListResourcesResult",
    "resources/templates/list": "ListResourceTemplatesResult",
    "resources/read": "ReadResourceResult",
    "prompts/list": "ListPromptsResult",
    "prompts/get": "GetPromptResult",
    "completion/complete": "CompleteResult",
    "subscriptions/listen": "SubscriptionsListenResult",
    "sampling/createMessage": "CreateMessageResult",
    "elicitation/create": "ElicitResult",
    "roots/list": "ListRootsResult",
    "ping": "EmptyResult",
    "logging/setLevel": "EmptyResult",
    "resources/subscribe": "EmptyResult",
    "resources/unsubscribe": "EmptyResult",
    "tasks/get": "GetTaskResult",
    "tasks/cancel": "CancelTaskResult",
    "tasks/list": "ListTasksResult",
}

MESSAGE_TYPES = {
    "initialize": "InitializeRequest",
    "notifications/initialized": "InitializedNotification",
    "server/discover": "DiscoverRequest",
    "tools/list": "ListToolsRequest",
    "tools/call": "CallToolRequest",
    "resources/list": "ListResourcesRequest",
    "resources/templates/list": "ListResourceTemplatesRequest",
    "resources/read": "ReadResourceRequest",
    "resources/subscribe": "SubscribeRequest",
    "resources/unsubscribe": "UnsubscribeRequest",
    "subscriptions/listen": "SubscriptionsListenRequest",
    "prompts/list": "ListPromptsRequest",
    "prompts/get": "GetPromptRequest",
    "completion/complete": "CompleteRequest",
    "logging/setLevel": "SetLevelRequest",
    "ping": "PingRequest",
    "sampling/createMessage": "CreateMessageRequest",
    "elicitation/create": "ElicitRequest",
    "roots/list": "ListRootsRequest",
    "notifications/cancelled": "CancelledNotification",
    "notifications/progress": "ProgressNotification",
    "notifications/message": "LoggingMessageNotification",
    "notifications/tools/list_changed": "ToolListChangedNotification",
    "notifications/prompts/list_changed": "PromptListChangedNotification",
    "notifications/resources/list_changed": "ResourceListChangedNotification",
    "notifications/resources/updated": "ResourceUpdatedNotification",
    "notifications/subscriptions/acknowledged": "SubscriptionsAcknowledgedNotification",
    "notifications/roots/list_changed": "RootsListChangedNotification",
}


class WireLog:
    """Shared between the two ends: which request id carried which method, in which version."""

    def __init__(self, legacy_version: str = "2025-11-25") -> None:
        self.legacy_version = legacy_version
        self.requests: dict[tuple[str, Any], tuple[str, str]] = {}
        self.checked = 0
        self.failures: list[str] = []
        self.deliberate = 0  # bad frames a test sends on purpose, to be let through

    def expect_invalid(self, count: int = 1) -> None:
        """The next `count` invalid frames are the test's own bad input."""
        self.deliberate += count

    def assert_clean(self) -> None:
        """Fail the test if any frame broke the schema (writers must not raise mid-send)."""
        assert not self.failures, "schema violations on the wire:\n" + "\n".join(self.failures)


class SchemaCheckedChannel:
    """A channel whose written frames are validated before they are sent."""

    def __init__(self, inner: LineChannel, side: str, log: WireLog) -> None:
        self.inner = inner
        self.side = side
        self.log = log

    async def read_frame(self) -> bytes:
        return await self.inner.read_frame()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def write_frame(self, data: bytes) -> None:
        try:
            self.check(orjson.loads(data))
        except AssertionError as exc:
            if self.log.deliberate > 0:
                self.log.deliberate -= 1
            else:
                self.log.failures.append(f"{self.side} wrote {data[:200]!r}: {exc}")
        await self.inner.write_frame(data)

    def check(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is not None:
            params = message.get("params") or {}
            meta = params.get("_meta") or {}
            version = meta.get(PROTOCOL_VERSION, self.log.legacy_version)
            if method == "initialize":
                version = params.get("protocolVersion", version)
            if "id" in message:
                self.log.requests[(self.side, message["id"])] = (method, version)
            validate_message(message, version)
            kind = MESSAGE_TYPES.get(method)
            if kind and kind in def_names(version):
                validate_def(message, version, kind)
            self.log.checked += 1
            return
        other = "client" if self.side == "server" else "server"
        method, version = self.log.requests.get((other, message.get("id")), (None, None))
        if version is None:
            version = self.log.legacy_version
        if method == "initialize" and "result" in message:
            version = message["result"].get("protocolVersion", version)
            self.log.legacy_version = version
        validate_message(message, version)
        result = message.get("result")
        if result is not None and method in RESULT_TYPES:
            kind = RESULT_TYPES[method]
            if result.get("resultType") == "input_required":
                kind = "InputRequiredResult"
            elif "task" in result and "CreateTaskResult" in def_names(version):
                kind = "CreateTaskResult"
            if kind in def_names(version):
                validate_def(result, version, kind)
        self.log.checked += 1
