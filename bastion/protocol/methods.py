"""The catalogue of MCP methods and notifications, per version and direction.

`requests_from_client("2025-06-18")` and friends answer "does this method exist here?", so a
server can answer -32601 for a method its version does not define (for instance `initialize`
sent with modern `_meta`), and a gateway can refuse a method instead of relaying it.
"""

from __future__ import annotations

from functools import cache

from bastion.protocol.versions import ALL_VERSIONS, at_least

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

_BASE_CLIENT_REQUESTS = frozenset({
    "initialize", "ping", "resources/list", "resources/templates/list", "resources/read",
    "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
    "tools/list", "tools/call", "logging/setLevel", "completion/complete",
})
_BASE_CLIENT_NOTIFICATIONS = frozenset({
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/roots/list_changed",
})
_BASE_SERVER_REQUESTS = frozenset({"ping", "sampling/createMessage", "roots/list"})
_BASE_SERVER_NOTIFICATIONS = frozenset({
    "notifications/cancelled", "notifications/progress", "notifications/message",
    "notifications/resources/list_changed", "notifications/resources/updated",
    "notifications/prompts/list_changed", "notifications/tools/list_changed",
})
_LEGACY_TASK_REQUESTS = frozenset({"tasks/get", "tasks/result", "tasks/cancel", "tasks/list"})

_MODERN_CLIENT_REQUESTS = frozenset({
    "server/discover", "resources/list", "resources/templates/list", "resources/read",
    "subscriptions/listen", "prompts/list", "prompts/get", "tools/list", "tools/call",
    "completion/complete",
})
#: Methods the tasks extension adds to a modern server when both sides declare it.
MODERN_TASK_REQUESTS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
_MODERN_CLIENT_NOTIFICATIONS = frozenset({"notifications/cancelled"})
_MODERN_SERVER_NOTIFICATIONS = frozenset({
    "notifications/progress", "notifications/message", "notifications/tools/list_changed",
    "notifications/prompts/list_changed", "notifications/resources/list_changed",
    "notifications/resources/updated", "notifications/subscriptions/acknowledged",
    "notifications/cancelled", "notifications/tasks",
})

#: Requests that may be answered with an `input_required` result (MRTR).
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})

#: Requests whose complete results carry the caching hints `ttlMs` and `cacheScope`.
CACHEABLE_METHODS = frozenset({
    "server/discover", "tools/list", "prompts/list", "resources/list",
    "resources/templates/list", "resources/read",
})

#: Methods that return a page and take a `cursor`.
PAGINATED_METHODS = frozenset({
    "tools/list", "prompts/list", "resources/list", "resources/templates/list", "tasks/list",
})


def _check(version: str) -> None:
    if version not in ALL_VERSIONS:
        raise ValueError(f"unknown MCP protocol version {version!r}")


@cache
def requests_from_client(version: str) -> frozenset[str]:
    """Requests a client may send to a server at `version`."""
    _check(version)
    if version >= "2026-07-28":
        return _MODERN_CLIENT_REQUESTS
    methods = set(_BASE_CLIENT_REQUESTS)
    if at_least(version, "2025-11-25"):
        methods |= _LEGACY_TASK_REQUESTS
    return frozenset(methods)


@cache
def notifications_from_client(version: str) -> frozenset[str]:
    """Notifications a client may send at `version`."""
    _check(version)
    if version >= "2026-07-28":
        return _MODERN_CLIENT_NOTIFICATIONS
    methods = set(_BASE_CLIENT_NOTIFICATIONS)
    if at_least(version, "2025-11-25"):
        methods.add("notifications/tasks/status")
    return frozenset(methods)


@cache
def requests_from_server(version: str) -> frozenset[str]:
    """Requests a server may send to a client at `version` (none in the modern era)."""
    _check(version)
    if version >= "2026-07-28":
        return frozenset()
    methods = set(_BASE_SERVER_REQUESTS)
    if at_least(version, "2025-06-18"):
        methods.add("elicitation/create")
    if at_least(version, "2025-11-25"):
        methods |= _LEGACY_TASK_REQUESTS
    return frozenset(methods)


@cache
def notifications_from_server(version: str) -> frozenset[str]:
    """Notifications a server may send at `version`."""
    _check(version)
    if version >= "2026-07-28":
        return _MODERN_SERVER_NOTIFICATIONS
    methods = set(_BASE_SERVER_NOTIFICATIONS)
    if at_least(version, "2025-11-25"):
        methods |= {"notifications/tasks/status", "notifications/elicitation/complete"}
    return frozenset(methods)
