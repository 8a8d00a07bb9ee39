"""Fan-in: what upstreams send unprompted, and the subscriptions that ask for it.

- The catalogue is filled when an upstream connects and refreshed when it says a list
  changed (legacy: a notification on its session; modern: on a `subscriptions/listen`
  stream the gateway keeps open); a change clients can see is forwarded to them.
- Resource subscriptions of all clients are counted per URI and held once upstream.
- An upstream's request for client input (sampling, elicitation, roots) and its log
  messages belong to the call in flight on it (see `bridge`).
- A legacy upstream's `notifications/tasks/status`, and its requests for input tied to a
  task (related-task `_meta`), go to the session that created the task, its id mapped (see
  `tasks`). (The tasks extension's `notifications/tasks` would come
  on a `subscriptions/listen` stream that names task ids; the gateway's listen streams do
  not take task ids yet, so those are not forwarded.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from bastion.gateway.bridge import ask_legacy_client, client_can_answer
from bastion.guard.pipeline import Call
from bastion.protocol.errors import (
    InternalError,
    InvalidParams,
    MCPError,
    MethodNotFound,
    MissingRequiredClientCapability,
)
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.lifecycle import LifecycleState
from bastion.protocol.meta import RELATED_TASK, log_level_allows
from bastion.protocol.versions import Era
from bastion.server.app import required_uri
from bastion.session.client_side import ClientHandlers
from bastion.session.errors import PeerClosed
from bastion.session.server_side import PeerConnection

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.upstream import Upstream

logger = logging.getLogger("bastion.gateway.fanin")

#: Catalogue kind -> (list method, result key, capability, downstream list_changed kind).
_KINDS = {
    "tools": ("tools/list", "tools", "tools", "tools"),
    "prompts": ("prompts/list", "prompts", "prompts", "prompts"),
    "resources": ("resources/list", "resources", "resources", "resources"),
    "templates": ("resources/templates/list", "resourceTemplates", "resources", "resources"),
}
#: Catalogue change kind -> the list clients are told changed.
_NOTIFIED = {"tool": "tools", "prompt": "prompts", "resource": "resources",
             "template": "resources"}
_SINGULAR = {"tools": "tool", "prompts": "prompt", "resources": "resource",
             "templates": "template"}
_CHANGED = {
    "notifications/tools/list_changed": ("tools",),
    "notifications/prompts/list_changed": ("prompts",),
    "notifications/resources/list_changed": ("resources", "templates"),
}
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation",
               "roots/list": "roots"}
#: At most this many pages of one list are fetched from an upstream.
MAX_PAGES = 100
#: A modern upstream's listen stream is re-opened after this long (and after failures).
LISTEN_RENEW = 600.0


class FanIn:
    """Upstream notifications in, list changes and resource updates out."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        #: URI -> how many client subscriptions want it.
        self._subscriptions: dict[str, int] = {}
        self._listens: dict[str, asyncio.Task[None]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()

    # -- the handlers each upstream connection gets ---------------------------------------

    def handlers_for(self, name: str) -> ClientHandlers:
        async def sampling(params: dict[str, Any]) -> dict[str, Any]:
            return await self.ask(name, "sampling/createMessage", params)

        async def elicitation(params: dict[str, Any]) -> dict[str, Any]:
            return await self.ask(name, "elicitation/create", params)

        async def roots() -> list[dict[str, Any]]:
            if self.gateway.active.count(name) == 0:
                # Asked outside any call (servers ask right after initialize): no client is
                # in context, so no roots are shared.
                return []
            answer = await self.ask(name, "roots/list", {})
            roots = answer.get("roots")
            return roots if isinstance(roots, list) else []

        async def on_notification(notification: Notification) -> None:
            await self.upstream_notification(name, notification)

        return ClientHandlers(sampling=sampling, sampling_tools=True, elicitation=elicitation,
                              elicitation_modes=("form", "url"), roots=roots,
                              on_notification=on_notification)

    async def ask(self, name: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """An upstream's request for client input: ask the client of the task it names, or
        of the call in flight."""
        meta = params.get("_meta")
        related = meta.get(RELATED_TASK) if isinstance(meta, dict) else None
        route = self.gateway.tasks.route(name, related.get("taskId")) \
            if isinstance(related, dict) else None
        if route is not None:
            task_id, connections = route
            mapped = {**params, "_meta": {**meta, RELATED_TASK: {**related, "taskId": task_id}}}
            return await _ask_session(connections, method, mapped)
        active = self.gateway.active.sole(name)
        if active is None:
            count = self.gateway.active.count(name)
            raise InternalError(
                f"Bastion cannot tell which client this {method} is for: "
                + ("no call to this server is in flight" if count == 0 else
                   f"{count} calls to this server are in flight"))
        request = active.request
        if not client_can_answer(request.client_capabilities, method, params):
            missing = MissingRequiredClientCapability(
                f"the upstream needs {method}, which the client did not declare",
                required={_CAPABILITY[method]: {}})
            if active.parked is not None:
                active.parked.fail(missing)  # a modern client is told why its call failed
            raise MethodNotFound(f"the client does not support {method}",
                                 data={"method": method})
        if active.parked is not None:
            return await active.parked.ask(method, params)
        return await ask_legacy_client(request, method, params)

    async def upstream_notification(self, name: str, notification: Notification) -> None:
        method = notification.method
        kinds = _CHANGED.get(method)
        if kinds is not None:
            upstream = self.gateway.pool.get(name)
            if upstream is not None:
                self._schedule_refresh(upstream, kinds, announced=True)
            return
        params = notification.params or {}
        if method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str) and self._subscriptions.get(uri):
                await self.gateway.subscribers.resource_updated(uri)
        elif method == "notifications/tasks/status":
            await self._task_status(name, notification)
        elif method == "notifications/message":
            active = self.gateway.active.sole(name)
            level = params.get("level")
            if active is not None and isinstance(level, str) and log_level_allows(
                    active.request.log_level, level):
                await active.request.incoming.notify(notification)
            else:
                logger.debug("upstream %s logged: %s", name, str(params.get("data"))[:200])
        else:
            logger.debug("upstream %s sent %s (not forwarded)", name, method)

    async def _task_status(self, name: str, notification: Notification) -> None:
        params = notification.params or {}
        route = self.gateway.tasks.route(name, params.get("taskId"))
        if route is None:
            logger.debug("upstream %s: status of a task not created through this replica",
                         name)
            return
        task_id, connections = route
        mapped = Notification(notification.method, {**params, "taskId": task_id})
        for connection in connections:
            if connection.lifecycle.state is LifecycleState.OPERATING:
                with contextlib.suppress(PeerClosed):
                    await connection.send_notification(mapped)

    # -- upstream lifetime -----------------------------------------------------------------

    async def upstream_connected(self, upstream: Upstream) -> None:
        """Fill the catalogue from a (re)connected upstream and renew its subscriptions."""
        await self.refresh(upstream, tuple(_KINDS))
        description = upstream.description
        if description is None:
            return
        if description.era is Era.LEGACY:
            for uri in self._uris_of(upstream.name):
                with contextlib.suppress(MCPError):
                    await upstream.request("resources/subscribe", {"uri": uri})
        self._renew_listen(upstream)

    def upstream_disconnected(self, upstream: Upstream) -> None:
        task = self._listens.pop(upstream.name, None)
        if task is not None:
            task.cancel()

    async def refresh(self, upstream: Upstream, kinds: tuple[str, ...], *,
                      announced: bool = False) -> None:
        """Fetch the lists of `kinds` from `upstream` and tell clients what changed (all of
        `kinds` when the upstream `announced` a change: it may be one the catalogue cannot
        see, such as new content behind the same definitions)."""
        description = upstream.description
        if description is None:
            return
        caps = description.capabilities
        wanted = [k for k in kinds if isinstance(caps.get(_KINDS[k][2]), dict)]
        fetched = await asyncio.gather(
            *(fetch_all(upstream, _KINDS[k][0], _KINDS[k][1]) for k in wanted),
            return_exceptions=True)
        lists: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for kind, items in zip(wanted, fetched, strict=True):
            if isinstance(items, BaseException):
                logger.warning("upstream %s: %s failed: %s", upstream.name, _KINDS[kind][0],
                               items)
                lists.pop(kind)  # keep what the catalogue had
            else:
                lists[kind] = items
        changed = self.gateway.catalog.update(
            upstream.name, self.gateway.prefixes[upstream.name], **lists)
        if announced:
            changed |= {_SINGULAR[k] for k in kinds}
        for kind in sorted({_NOTIFIED[k] for k in changed}):
            await self.gateway.subscribers.list_changed(kind)

    def _schedule_refresh(self, upstream: Upstream, kinds: tuple[str, ...], *,
                          announced: bool) -> None:
        # Not awaited in the session's notification handler: the refresh makes requests on
        # the same session, whose replies that handler must not hold up.
        task = asyncio.get_running_loop().create_task(
            self.refresh(upstream, kinds, announced=announced))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    # -- modern upstreams: a listen stream for list changes and resource updates -----------

    def _renew_listen(self, upstream: Upstream) -> None:
        description = upstream.description
        if description is None or description.era is not Era.MODERN:
            return
        old = self._listens.pop(upstream.name, None)
        if old is not None:
            old.cancel()
        wanted: dict[str, Any] = {}
        caps = description.capabilities
        for kind, flag in (("tools", "toolsListChanged"), ("prompts", "promptsListChanged"),
                           ("resources", "resourcesListChanged")):
            cap = caps.get(kind)
            if isinstance(cap, dict) and cap.get("listChanged"):
                wanted[flag] = True
        uris = self._uris_of(upstream.name)
        if uris:
            wanted["resourceSubscriptions"] = uris
        if wanted:
            self._listens[upstream.name] = asyncio.get_running_loop().create_task(
                self._listen_upstream(upstream, wanted))

    async def _listen_upstream(self, upstream: Upstream, wanted: dict[str, Any]) -> None:
        while upstream.state == "up" and upstream.connection is not None:
            try:
                await upstream.connection.request("subscriptions/listen",
                                                  {"notifications": wanted},
                                                  timeout=LISTEN_RENEW,
                                                  max_timeout=LISTEN_RENEW)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("upstream %s: listen ended (%s); renewing", upstream.name, exc)
                await asyncio.sleep(1.0)

    # -- client subscriptions ----------------------------------------------------------------

    def can_subscribe(self) -> bool:
        for upstream in self.gateway.pool:
            description = upstream.description
            resources = description.capabilities.get("resources") if description else None
            if isinstance(resources, dict) and resources.get("subscribe"):
                return True
        return False

    def _uris_of(self, name: str) -> list[str]:
        catalog = self.gateway.catalog
        return sorted(uri for uri, count in self._subscriptions.items()
                      if count and (entry := catalog.resource(uri)) and entry.upstream == name)

    async def _acquire(self, uri: str) -> None:
        entry = self.gateway.catalog.resource(uri)
        if entry is None:
            raise self.gateway.unknown("resource", uri, era=Era.LEGACY)
        count = self._subscriptions.get(uri, 0)
        self._subscriptions[uri] = count + 1
        if count:
            return
        upstream = self.gateway.pool.get(entry.upstream)
        if upstream is None or upstream.description is None:
            return
        try:
            if upstream.description.era is Era.LEGACY:
                await upstream.request("resources/subscribe", {"uri": uri})
            else:
                self._renew_listen(upstream)
        except BaseException:
            self._release(uri, quiet=True)
            raise

    def _release(self, uri: str, *, quiet: bool = False) -> None:
        count = self._subscriptions.get(uri, 0) - 1
        if count > 0:
            self._subscriptions[uri] = count
            return
        self._subscriptions.pop(uri, None)
        if quiet:
            return
        entry = self.gateway.catalog.resource(uri)
        upstream = self.gateway.pool.get(entry.upstream) if entry else None
        if upstream is None or upstream.description is None or upstream.state != "up":
            return
        if upstream.description.era is Era.LEGACY:
            task = asyncio.get_running_loop().create_task(
                upstream.request("resources/unsubscribe", {"uri": uri}))
            task.add_done_callback(_quiet)
        else:
            self._renew_listen(upstream)

    async def subscribe(self, call: Call) -> dict[str, Any]:
        uri = required_uri(call.request)
        await self.gateway.pipeline.check_request(call)
        connection = call.request.connection
        if connection is None or uri in connection.subscriptions:
            return {}
        await self._acquire(uri)
        connection.subscriptions.add(uri)
        return {}

    async def unsubscribe(self, call: Call) -> dict[str, Any]:
        uri = required_uri(call.request)
        connection = call.request.connection
        if connection is not None and uri in connection.subscriptions:
            connection.subscriptions.discard(uri)
            self._release(uri)
        return {}

    async def listen(self, call: Call) -> dict[str, Any]:
        await self.gateway.pipeline.check_request(call)
        wanted = call.params.get("notifications")
        if not isinstance(wanted, dict):
            raise InvalidParams('subscriptions/listen needs "notifications" (an object)')
        available = {"tools", "prompts", "resources"}
        uris = wanted.get("resourceSubscriptions")
        acquired: list[str] = []
        if isinstance(uris, list) and self.can_subscribe():
            available.add("subscribe")
            for uri in dict.fromkeys(u for u in uris if isinstance(u, str)):
                await self._acquire(uri)
                acquired.append(uri)
        try:
            return await self.gateway.subscribers.listen(call.request.incoming, wanted,
                                                         available)
        finally:
            for uri in acquired:
                self._release(uri)

    def connection_closed(self, connection: PeerConnection) -> None:
        for uri in list(connection.subscriptions):
            self._release(uri)
        connection.subscriptions.clear()

    async def aclose(self) -> None:
        tasks = [*self._listens.values(), *self._refreshing]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._listens.clear()
        self._refreshing.clear()


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("unsubscribe failed: %s", task.exception())


async def fetch_all(upstream: Upstream, method: str, key: str) -> list[Any]:
    """Every page of a list `method` (items under `key`) from `upstream`, up to MAX_PAGES."""
    items: list[Any] = []
    cursor: Any = None
    for _ in range(MAX_PAGES):
        result = await upstream.request(method, {"cursor": cursor} if cursor else {},
                                        safe_to_retry=True)
        page = result.get(key)
        if not isinstance(page, list):
            raise InternalError(f"{method} result has no {key!r} list")
        items.extend(page)
        cursor = result.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            return items
    logger.warning("upstream %s: %s has more than %d pages; the rest is ignored",
                   upstream.name, method, MAX_PAGES)
    return items


async def _ask_session(connections: list[Any], method: str, params: dict[str, Any]
                       ) -> dict[str, Any]:
    """A task's question, to the (legacy) session that owns the task."""
    for connection in connections:
        if connection.lifecycle.state is not LifecycleState.OPERATING:
            continue
        if not client_can_answer(connection.lifecycle.client_capabilities, method, params):
            raise MethodNotFound(f"the client does not support {method}",
                                 data={"method": method})
        return await connection.request_client(method, params)
    raise InternalError(f"the session that owns this task is not connected to this replica "
                        f"now, so its {method} cannot be asked")
