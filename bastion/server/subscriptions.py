"""Who hears about changes: legacy sessions and modern `subscriptions/listen` streams.

Legacy sessions get list_changed notifications once initialized, and `resources/updated`
for the URIs they subscribed to. A modern listen request first gets
`notifications/subscriptions/acknowledged` with the honoured filter, then only the kinds it
asked for, each tagged with its `subscriptionId` (the listen request's id).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from bastion.protocol import messages
from bastion.protocol.jsonrpc import Notification, RequestId
from bastion.protocol.lifecycle import LifecycleState
from bastion.protocol.meta import SUBSCRIPTION_ID
from bastion.session.context import IncomingRequest
from bastion.session.errors import PeerClosed
from bastion.session.server_side import ServerConnection

_LIST_FLAGS = {
    "tools": "toolsListChanged",
    "prompts": "promptsListChanged",
    "resources": "resourcesListChanged",
}


@dataclass(eq=False)
class Listener:
    """One open modern listen request."""

    incoming: IncomingRequest
    flags: set[str]
    resource_uris: set[str]
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def subscription_id(self) -> RequestId:
        return self.incoming.id

    async def send(self, method: str, params: dict[str, Any] | None = None) -> None:
        params = dict(params or {})
        params["_meta"] = {**params.get("_meta", {}), SUBSCRIPTION_ID: self.subscription_id}
        await self.incoming.notify(Notification(method, params))


class Subscribers:
    """The registry of legacy connections and modern listeners of one server."""

    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()
        self.listeners: set[Listener] = set()

    async def listen(
        self, incoming: IncomingRequest, requested: dict[str, Any], available: set[str]
    ) -> dict[str, Any]:
        """Serve one listen request until the client ends it or the server closes it."""
        honoured: dict[str, Any] = {}
        flags = set()
        for kind, flag in _LIST_FLAGS.items():
            if requested.get(flag) is True and kind in available:
                honoured[flag] = True
                flags.add(kind)
        uris = requested.get("resourceSubscriptions")
        resource_uris: set[str] = set()
        if isinstance(uris, list) and "subscribe" in available:
            resource_uris = {u for u in uris if isinstance(u, str)}
            honoured["resourceSubscriptions"] = sorted(resource_uris)
        listener = Listener(incoming, flags, resource_uris)
        await listener.send("notifications/subscriptions/acknowledged",
                            {"notifications": honoured})
        self.listeners.add(listener)
        try:
            await listener.ended.wait()
        finally:
            self.listeners.discard(listener)
        return {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: incoming.id}}

    def close_listeners(self, source: object | None = None) -> None:
        """End listen requests gracefully: all of them (server shutdown), or those that came
        through one source (a stdio client that closed its input)."""
        for listener in list(self.listeners):
            if source is None or listener.incoming.session is source:
                listener.ended.set()

    async def list_changed(self, kind: str) -> None:
        notification = messages.list_changed(kind)
        for connection in list(self.connections):
            if connection.lifecycle.state is LifecycleState.OPERATING:
                with contextlib.suppress(PeerClosed):
                    await connection.send_notification(notification)
        for listener in list(self.listeners):
            if kind in listener.flags:
                with contextlib.suppress(PeerClosed):
                    await listener.send(notification.method)

    async def resource_updated(self, uri: str) -> None:
        notification = messages.resource_updated(uri)
        for connection in list(self.connections):
            if uri in connection.subscriptions:
                with contextlib.suppress(PeerClosed):
                    await connection.send_notification(notification)
        for listener in list(self.listeners):
            if uri in listener.resource_uris:
                with contextlib.suppress(PeerClosed):
                    await listener.send(notification.method, notification.params)
