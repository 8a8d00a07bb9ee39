"""Task ids the gateway hands out: whose each task is, and where its news goes.

A client never sees an upstream's own task id. It gets an opaque id (base64url, no
padding) that carries the upstream's name, the upstream's id and a 128-bit HMAC-SHA256 over
both and the task's *owner*:

- a legacy client's task belongs to its session (the `MCP-Session-Id`, or the stdio
  connection) and its principal, as the 2025-11-25 tasks spec requires;
- a modern client has no session, so its task belongs to its principal. Until an identity
  stage names principals, every anonymous modern client is the same owner: the id itself is
  the bearer handle, as the tasks extension intends (ids are unguessable: the upstream's
  own id plus a MAC under the gateway's key).

Any replica holding the gateway key checks an id for its caller without shared state. An id
of another owner fails the MAC exactly as a forged one does, so it reads as an unknown task.

What a MAC cannot give is a list: `tasks/list` and `notifications/tasks/status` need to know
which upstream task is whose. `GatewayTasks` remembers that for the tasks created through
this replica (bounded: least recently used first out, and never past the task's TTL), so
those two are replica-local; tasks on a stdio upstream are replica-local anyway.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import secrets
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from bastion.protocol.errors import InvalidParams, MCPError
from bastion.protocol.meta import RELATED_TASK
from bastion.protocol.tokens import token_bytes, token_text
from bastion.protocol.versions import Era

if TYPE_CHECKING:
    from bastion.guard.pipeline import Call
    from bastion.session.server_side import PeerConnection

_VERSION = 1
_MAC_SIZE = 16
_KEY_LABEL = b"bastion/task-ids/1"
#: Longest upstream task id the gateway maps (UTF-8 bytes); a longer one fails the call.
MAX_UPSTREAM_TASK_ID = 512
_MAX_NAME = 255
#: Longest id the gateway can have issued (longer input is not decoded at all).
MAX_TASK_ID_CHARS = -(-(2 + _MAX_NAME + _MAC_SIZE + MAX_UPSTREAM_TASK_ID) // 3) * 4
#: Tasks remembered for tasks/list and status notifications, and how long at most.
DEFAULT_MAX_TASKS = 10_000
DEFAULT_MAX_AGE = 24 * 3600.0


@dataclass(slots=True)
class _Created:
    owner: bytes
    expires: float  # time.monotonic()


class GatewayTasks:
    """Mapped task ids and the replica's record of the tasks created through it.

    `key`: the gateway's key material (the task-id key is derived from it, so it never
    doubles as an AES key); None: a random key, ids valid in this process only.
    """

    def __init__(self, key: bytes | None = None, *, max_tasks: int = DEFAULT_MAX_TASKS,
                 max_age: float = DEFAULT_MAX_AGE) -> None:
        if max_tasks < 1 or not max_age > 0:
            raise ValueError(f"max_tasks ({max_tasks}) and max_age ({max_age}) must be positive")
        self._key = (hmac.new(key, _KEY_LABEL, hashlib.sha256).digest() if key is not None
                     else os.urandom(32))
        self.max_tasks = max_tasks
        self.max_age = max_age
        self._created: OrderedDict[tuple[str, str], _Created] = OrderedDict()
        #: Legacy owners -> their live connections (status notifications go there), and back.
        self._connections: dict[bytes, weakref.WeakSet[Any]] = {}
        self._owners: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
        #: Connections with no session id of their own (stdio) -> a random one.
        self._nonces: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    # -- owners ------------------------------------------------------------------------------

    def owner_of(self, call: Call) -> bytes:
        """Who a request's tasks belong to (a digest; the module doc says what goes in)."""
        # The principal's binding, as the sealed request state binds it (relay._binding).
        principal = getattr(call.principal, "binding", None)
        return self.owner(call.request.era, principal, call.request.connection)

    def owner(self, era: Era, principal: str | None,
              connection: PeerConnection | None = None) -> bytes:
        """The owner of tasks created by `principal`, over `connection` in `era` (a legacy
        owner is also remembered as the way to reach that connection)."""
        if era is Era.MODERN:
            return _digest(["modern", principal])
        owner = _digest(["legacy", principal, self._session_of(connection)])
        if connection is not None:
            owners = self._owners.setdefault(connection, set())
            if owner not in owners:
                owners.add(owner)
                self._connections.setdefault(owner, weakref.WeakSet()).add(connection)
        return owner

    def _session_of(self, connection: PeerConnection | None) -> str:
        # A legacy HTTP session's id is the same on every replica that resumes it.
        session_id = getattr(connection, "id", None)
        if isinstance(session_id, str) and session_id:
            return "id:" + session_id
        if connection is None:
            return ""
        nonce = self._nonces.get(connection)
        if nonce is None:
            nonce = self._nonces[connection] = "nonce:" + secrets.token_urlsafe(16)
        return nonce

    def connection_closed(self, connection: PeerConnection) -> None:
        for owner in self._owners.pop(connection, ()):
            connections = self._connections.get(owner)
            if connections is not None:
                connections.discard(connection)
                if not connections:
                    del self._connections[owner]

    # -- ids ---------------------------------------------------------------------------------

    def issue(self, upstream: str, upstream_id: str, owner: bytes) -> str:
        """The id a client sees for `upstream`'s task `upstream_id` owned by `owner`;
        ValueError (saying why) if the upstream's id cannot be mapped."""
        name, own = _encoded(upstream, upstream_id)
        body = bytes([_VERSION, len(name)]) + name
        raw = body + self._mac(name, own, owner) + own
        return token_text(raw)

    def open(self, task_id: object, owner: bytes) -> tuple[str, str]:
        """(upstream, upstream's id) of an id issued to `owner`; InvalidParams otherwise,
        the same for an id of another owner as for one never issued."""
        if not isinstance(task_id, str) or not task_id:
            raise InvalidParams(f'"taskId" must be a non-empty string, not {task_id!r}',
                                data={"taskId": task_id})
        raw = _decoded(task_id)
        if raw is None or len(raw) < 2 or raw[0] != _VERSION \
                or len(raw) < 2 + raw[1] + _MAC_SIZE:
            raise InvalidParams(
                f"task {task_id!r} is not a task id this gateway issued: use the taskId of "
                "the gateway's CreateTaskResult (or tasks/list) as it is",
                data={"taskId": task_id})
        end = 2 + raw[1]
        name, mac, own = raw[2:end], raw[end:end + _MAC_SIZE], raw[end + _MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(name, own, owner)):
            raise InvalidParams(
                f"task {task_id!r} not found: no task with this id was created for this "
                "client (its session, or its principal)", data={"taskId": task_id})
        return name.decode(), own.decode()

    def _mac(self, name: bytes, own: bytes, owner: bytes) -> bytes:
        message = (bytes([_VERSION, len(name)]) + name + len(own).to_bytes(2, "big") + own
                   + owner)
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_SIZE]

    # -- what this replica remembers ---------------------------------------------------------

    def created(self, upstream: str, result: dict[str, Any], owner: bytes) -> None:
        """Map the task id of a CreateTaskResult (either era; in place) and remember whose
        task it is."""
        task = result.get("task")
        holder = task if isinstance(task, dict) else result  # legacy {task} or modern flat
        upstream_id = holder.get("taskId")
        if not isinstance(upstream_id, str):
            raise ValueError("its CreateTaskResult has no taskId (a string)")
        mapped = self.issue(upstream, upstream_id, owner)
        ttl = holder.get("ttl", holder.get("ttlMs"))
        if holder is task:
            result["task"] = {**task, "taskId": mapped}
        else:
            result["taskId"] = mapped
        self._remember(upstream, upstream_id, owner, ttl)

    def _remember(self, upstream: str, upstream_id: str, owner: bytes, ttl_ms: Any) -> None:
        age = self.max_age
        if isinstance(ttl_ms, int | float) and not isinstance(ttl_ms, bool) and ttl_ms >= 0:
            age = min(age, ttl_ms / 1000.0)
        now = time.monotonic()
        self._created[(upstream, upstream_id)] = _Created(owner, now + age)
        self._created.move_to_end((upstream, upstream_id))
        while len(self._created) > self.max_tasks:
            self._created.popitem(last=False)
        # Expired ones at the cold end go now; the rest when looked up.
        while self._created:
            first = next(iter(self._created.values()))
            if first.expires > now:
                break
            self._created.popitem(last=False)

    def _owner_of_task(self, upstream: str, upstream_id: str) -> bytes | None:
        key = (upstream, upstream_id)
        found = self._created.get(key)
        if found is None:
            return None
        if found.expires <= time.monotonic():
            del self._created[key]
            return None
        self._created.move_to_end(key)
        return found.owner

    def listed(self, upstream: str, tasks: list[Any], owner: bytes) -> list[dict[str, Any]]:
        """The tasks of an upstream's tasks/list that `owner` created, ids mapped."""
        mine = []
        for task in tasks:
            if not isinstance(task, dict) or not isinstance(task.get("taskId"), str):
                continue
            found = self._owner_of_task(upstream, task["taskId"])
            if found is not None and hmac.compare_digest(found, owner):
                mine.append({**task, "taskId": self.issue(upstream, task["taskId"], owner)})
        return mine

    def route(self, upstream: str, upstream_id: object) -> tuple[str, list[Any]] | None:
        """Where news of an upstream task goes: its mapped id and its owner's live legacy
        connections; None for a task this replica did not create (or has forgotten)."""
        if not isinstance(upstream_id, str):
            return None
        owner = self._owner_of_task(upstream, upstream_id)
        if owner is None:
            return None
        connections = list(self._connections.get(owner, ()))
        return self.issue(upstream, upstream_id, owner), connections


def map_task_result(result: dict[str, Any], upstream_id: str, task_id: str) -> dict[str, Any]:
    """A task request's result as the client sees it: where it names the upstream's id
    (`taskId`, `task.taskId`, the related-task `_meta`), the client's id instead (in place)."""
    if result.get("taskId") == upstream_id:
        result["taskId"] = task_id
    task = result.get("task")
    if isinstance(task, dict) and task.get("taskId") == upstream_id:
        result["task"] = {**task, "taskId": task_id}
    meta = result.get("_meta")
    related = meta.get(RELATED_TASK) if isinstance(meta, dict) else None
    if isinstance(related, dict) and related.get("taskId") == upstream_id:
        result["_meta"] = {**meta, RELATED_TASK: {**related, "taskId": task_id}}
    return result


def map_task_error(exc: MCPError, upstream_id: str, task_id: str) -> None:
    """An upstream's error about a task, as the client sees it: `data.taskId`, and the id
    where the message quotes it, become the client's id (in place)."""
    data = exc.data
    if isinstance(data, dict) and data.get("taskId") == upstream_id:
        exc.data = {**data, "taskId": task_id}
    # Only an id long enough not to be a word of the message (upstream ids are tokens).
    if len(upstream_id) >= 8 and upstream_id in exc.message:
        exc.message = exc.message.replace(upstream_id, task_id)
        exc.args = (exc.message,)


def _digest(parts: list[Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(parts)).digest()


def _encoded(upstream: str, upstream_id: str) -> tuple[bytes, bytes]:
    name = upstream.encode()
    try:
        own = upstream_id.encode()
    except UnicodeEncodeError:
        raise ValueError("it returned a task id that is not valid Unicode") from None
    if len(name) > _MAX_NAME:
        raise ValueError(f"its name is longer than {_MAX_NAME} bytes")
    if len(own) > MAX_UPSTREAM_TASK_ID:
        raise ValueError(f"it returned a task id of {len(own)} bytes (at most "
                         f"{MAX_UPSTREAM_TASK_ID} are mapped)")
    return name, own


def _decoded(task_id: str) -> bytes | None:
    if len(task_id) > MAX_TASK_ID_CHARS or not task_id.isascii():
        return None
    try:
        raw = token_bytes(task_id)
    except (binascii.Error, ValueError):
        return None
    # The decoder skips characters outside the alphabet: one task, one spelling.
    if token_text(raw) != task_id:
        return None
    return raw
