"""Tasks in both eras: tool calls that run in the background and are polled for their outcome.

`TaskStore` is the in-memory state: a bounded set of `TaskRecord`s with TTL expiry, each
running one tool call in an asyncio task and keeping its terminal result or JSON-RPC error
exactly. Statuses are working, input_required, completed, failed and cancelled; the last
three are terminal and never change again.

`ServerTasks` speaks the two wire formats on top of it:

- Legacy (2025-11-25, core tasks): `tools/call` with `params.task {ttl?}` answers
  `CreateTaskResult {task}`; `tasks/get`, `tasks/result` (blocks until terminal, then returns
  the underlying result or error exactly), `tasks/cancel` and `tasks/list` (paginated).
  Tasks belong to the session that created them. Input a tool needs inside a task goes to
  the client as server-to-client requests tagged with the related-task `_meta`, and
  `notifications/tasks/status` reports each status change.
- Modern (2026-07-28, extension `io.modelcontextprotocol/tasks`, SEP-2663): when the request
  declares the extension and the tool supports tasks, `tools/call` answers
  `{resultType: "task", taskId, status, createdAt, lastUpdatedAt, ttlMs, pollIntervalMs}`;
  `tasks/get` returns the task with `inputRequests`, `result` or `error` inlined;
  `tasks/update {taskId, inputResponses}` answers outstanding input requests; `tasks/cancel`
  is acknowledged with an empty result. The task id is the only handle (no listing), so it
  is a 256-bit random token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bastion.protocol.capabilities import has_extension
from bastion.protocol.errors import (
    InternalError,
    InvalidParams,
    MCPError,
    MethodNotFound,
    MissingRequiredClientCapability,
)
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.lifecycle import LifecycleState
from bastion.protocol.meta import RELATED_TASK
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.protocol.results import COMPLETE, TASK
from bastion.protocol.versions import Era, at_least
from bastion.server.context import Context, InputProvider, _answers
from bastion.server.pagination import paginate
from bastion.session.errors import PeerClosed
from bastion.session.server_side import ServerConnection, ServerRequest

if TYPE_CHECKING:
    from bastion.server.app import Server
    from bastion.server.tools import Tool

logger = logging.getLogger("bastion.server.tasks")

WORKING = "working"
INPUT_REQUIRED = "input_required"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})

#: The first version whose sessions have (core) tasks.
LEGACY_TASKS_VERSION = "2025-11-25"

#: The legacy server capability: tasks/list, tasks/cancel and task-augmented tools/call.
LEGACY_TASK_CAPABILITIES: dict[str, Any] = {
    "list": {}, "cancel": {}, "requests": {"tools": {"call": {}}},
}

#: The owner of modern tasks: there is no session, the unguessable task id is the handle.
MODERN_OWNER = "modern"

Work = Callable[["TaskRecord"], Awaitable[dict[str, Any]]]
StatusListener = Callable[["TaskRecord"], Awaitable[None]]


def iso_now() -> str:
    """The current time as an ISO 8601 UTC timestamp, e.g. 2025-11-25T10:30:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class TaskRecord:
    """One task: its state, its outcome, and the work behind it."""

    task_id: str
    owner: object
    ttl_ms: int | None
    poll_interval_ms: int
    started: float
    created_at: str = field(default_factory=iso_now)
    last_updated_at: str = ""
    status: str = WORKING
    status_message: str | None = None
    #: The terminal result (completed, or a legacy tool result with isError), exactly.
    result: dict[str, Any] | None = None
    #: The terminal JSON-RPC error object (failed), exactly.
    error: dict[str, Any] | None = None
    #: Modern: outstanding input requests by wire key (shown by tasks/get).
    input_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_change: StatusListener | None = None
    runner: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _waiters: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    _used_keys: set[str] = field(default_factory=set)
    _asking: int = 0

    def __post_init__(self) -> None:
        if not self.last_updated_at:
            self.last_updated_at = self.created_at

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def expired(self, now: float) -> bool:
        return self.ttl_ms is not None and (now - self.started) * 1000 >= self.ttl_ms

    def legacy_task(self) -> dict[str, Any]:
        """The 2025-11-25 `Task` object."""
        task: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttl": self.ttl_ms,
            "pollInterval": self.poll_interval_ms,
        }
        if self.status_message is not None:
            task["statusMessage"] = self.status_message
        return task

    def modern_task(self, *, detailed: bool = True) -> dict[str, Any]:
        """The extension's `Task`; `detailed` inlines inputRequests, result or error."""
        task: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": self.poll_interval_ms,
        }
        if self.status_message is not None:
            task["statusMessage"] = self.status_message
        if detailed:
            if self.status == INPUT_REQUIRED:
                task["inputRequests"] = dict(self.input_requests)
            elif self.status == COMPLETED and self.result is not None:
                task["result"] = {"resultType": COMPLETE, **self.result}
            elif self.status == FAILED and self.error is not None:
                task["error"] = dict(self.error)
        return task


class TaskStore:
    """Bounded in-memory tasks with TTL expiry; each runs its work in an asyncio task."""

    def __init__(
        self,
        *,
        max_tasks: int = 1000,
        max_active_per_owner: int = 100,
        default_ttl_ms: int = 300_000,
        min_ttl_ms: int = 1_000,
        max_ttl_ms: int = 3_600_000,
        poll_interval_ms: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_tasks = max_tasks
        self.max_active_per_owner = max_active_per_owner
        self.default_ttl_ms = default_ttl_ms
        self.min_ttl_ms = min_ttl_ms
        self.max_ttl_ms = max_ttl_ms
        self.poll_interval_ms = poll_interval_ms
        self.clock = clock
        self._tasks: dict[str, TaskRecord] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def ttl_for(self, requested: int | None) -> int:
        """The TTL granted for a requested one (the receiver may override it)."""
        ttl = self.default_ttl_ms if requested is None else requested
        return max(self.min_ttl_ms, min(ttl, self.max_ttl_ms))

    # -- creating and finding ------------------------------------------------------------

    def create(
        self,
        owner: object,
        work: Work,
        *,
        ttl_ms: int | None = None,
        on_change: StatusListener | None = None,
        failed_if: Callable[[dict[str, Any]], bool] | None = None,
    ) -> TaskRecord:
        """Record a task in `working` and start `work(record)` in the background.

        The outcome is recorded exactly: a returned result completes the task (or fails it
        when `failed_if(result)`), an MCPError fails it with that error object.
        """
        self.purge()
        active = sum(1 for r in self._tasks.values() if r.owner == owner and not r.terminal)
        if active >= self.max_active_per_owner:
            raise InternalError(
                f"too many running tasks ({active}); wait for some to finish or cancel them"
            )
        if len(self._tasks) >= self.max_tasks:
            self._evict_terminal(len(self._tasks) - self.max_tasks + 1)
        if len(self._tasks) >= self.max_tasks:
            raise InternalError(f"the server holds its maximum of {self.max_tasks} tasks")
        task_id = secrets.token_urlsafe(32)
        while task_id in self._tasks:  # pragma: no cover - 256 random bits
            task_id = secrets.token_urlsafe(32)
        record = TaskRecord(
            task_id, owner, self.ttl_for(ttl_ms), self.poll_interval_ms, self.clock(),
            on_change=on_change,
        )
        self._tasks[task_id] = record
        record.runner = asyncio.create_task(
            self._run(record, work, failed_if), name=f"task:{task_id[:8]}"
        )
        return record

    def get(self, task_id: object, owner: object) -> TaskRecord:
        """The owner's task; an unknown, expired or foreign id is -32602."""
        if not isinstance(task_id, str):
            raise InvalidParams('"taskId" (a string) is required')
        self.purge()
        record = self._tasks.get(task_id)
        if record is None or record.owner != owner:
            raise InvalidParams("Failed to retrieve task: Task not found",
                                data={"taskId": task_id})
        return record

    def owned_by(self, owner: object) -> list[TaskRecord]:
        """The owner's tasks, oldest first."""
        self.purge()
        return [r for r in self._tasks.values() if r.owner == owner]

    def purge(self) -> None:
        """Forget expired tasks (stopping their work if it still runs)."""
        now = self.clock()
        for record in [r for r in self._tasks.values() if r.expired(now)]:
            self._forget(record)

    def drop_owner(self, owner: object) -> None:
        """Forget every task of an owner (its session ended), stopping their work."""
        for record in [r for r in self._tasks.values() if r.owner == owner]:
            self._forget(record)

    def close(self) -> None:
        """Stop all work and forget every task."""
        for record in list(self._tasks.values()):
            self._forget(record)

    def _forget(self, record: TaskRecord) -> None:
        self._tasks.pop(record.task_id, None)
        record.on_change = None
        if not record.terminal:
            record.status = CANCELLED
            record.status_message = "The task expired or its session ended."
            record.last_updated_at = iso_now()
            record.finished.set()
        self._stop(record)

    def _evict_terminal(self, count: int) -> None:
        for record in [r for r in self._tasks.values() if r.terminal][:count]:
            self._tasks.pop(record.task_id, None)

    # -- state changes -------------------------------------------------------------------

    async def set_status(
        self, record: TaskRecord, status: str, message: str | None = None
    ) -> None:
        """Move a non-terminal task to `status`; a terminal task never changes."""
        if record.terminal or (record.status == status and record.status_message == message):
            return
        record.status = status
        record.status_message = message
        record.last_updated_at = iso_now()
        if record.terminal:
            record.finished.set()
        await self._announce(record)

    async def cancel(self, record: TaskRecord, message: str | None = None) -> bool:
        """Cancel a task (False if it was already terminal) and stop its work."""
        if record.terminal:
            return False
        await self.set_status(record, CANCELLED, message or "The task was cancelled by request.")
        self._stop(record)
        return True

    async def wait(self, record: TaskRecord) -> None:
        """Until the task is terminal."""
        await record.finished.wait()

    def _stop(self, record: TaskRecord) -> None:
        for future in record._waiters.values():
            future.cancel()
        record._waiters.clear()
        record.input_requests.clear()
        runner = record.runner
        if runner is not None and not runner.done() and runner is not asyncio.current_task():
            runner.cancel()

    async def _announce(self, record: TaskRecord) -> None:
        if record.on_change is None:
            return
        try:
            await record.on_change(record)
        except Exception:
            logger.debug("task %s: status listener failed", record.task_id[:8], exc_info=True)

    async def _run(
        self,
        record: TaskRecord,
        work: Work,
        failed_if: Callable[[dict[str, Any]], bool] | None,
    ) -> None:
        try:
            result = await work(record)
        except asyncio.CancelledError:
            await self.set_status(record, CANCELLED, "The task was stopped.")
            return
        except MCPError as exc:
            if not record.terminal:
                record.error = exc.to_error()
            await self.set_status(record, FAILED, exc.message)
            return
        except Exception as exc:
            logger.exception("task %s failed", record.task_id[:8])
            if not record.terminal:
                record.error = InternalError(f"internal error in the task: {exc}").to_error()
            await self.set_status(record, FAILED, f"internal error: {exc}")
            return
        if record.terminal:
            return
        record.result = result
        if failed_if is not None and failed_if(result):
            await self.set_status(record, FAILED, _error_text(result))
        else:
            await self.set_status(record, COMPLETED)

    # -- input while a task runs -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def waiting_for_input(self, record: TaskRecord, message: str) -> AsyncIterator[None]:
        """The task is input_required while any input request of it is outstanding."""
        record._asking += 1
        if record._asking == 1:
            await self.set_status(record, INPUT_REQUIRED, message)
        try:
            yield
        finally:
            record._asking -= 1
            if record._asking == 0 and not record.terminal:
                await self.set_status(record, WORKING)

    async def request_input(
        self, record: TaskRecord, requests: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """Modern: show `requests` in tasks/get and wait until tasks/update answers them.

        Wire keys are unique over the task's lifetime (a reused handler key gets a suffix).
        """
        loop = asyncio.get_running_loop()
        keys: dict[str, str] = {}
        for key, request in requests.items():
            wire_key, n = key, 1
            while wire_key in record._used_keys:
                n += 1
                wire_key = f"{key}-{n}"
            record._used_keys.add(wire_key)
            keys[key] = wire_key
            record._waiters[wire_key] = loop.create_future()
            record.input_requests[wire_key] = request
        try:
            async with self.waiting_for_input(record, _asking_text(requests)):
                answers = await asyncio.gather(*(record._waiters[k] for k in keys.values()))
        finally:
            for wire_key in keys.values():
                record._waiters.pop(wire_key, None)
                record.input_requests.pop(wire_key, None)
        return dict(zip(keys, answers, strict=True))

    def provide_input(self, record: TaskRecord, responses: dict[str, Any]) -> int:
        """Modern tasks/update: resolve outstanding requests; unknown or bad keys are ignored.

        Returns how many responses were taken.
        """
        taken = 0
        for key, response in responses.items():
            future = record._waiters.get(key)
            request = record.input_requests.get(key)
            if future is None or future.done() or request is None:
                continue
            if not _answers(request, response):
                continue  # malformed: the request stays outstanding (a re-ask)
            future.set_result(response)
            record.input_requests.pop(key, None)  # satisfied: no longer outstanding
            taken += 1
        return taken


class ServerTasks:
    """The tasks protocol of a `Server`, in both eras, over one `TaskStore`."""

    def __init__(self, server: Server, store: TaskStore | None = None) -> None:
        self.server = server
        self.store = store if store is not None else TaskStore()

    # -- deciding ------------------------------------------------------------------------

    def wants_task(self, request: ServerRequest, tool: Tool) -> bool:
        """Whether this tools/call runs as a task; raises when the tool cannot be called so.

        Legacy 2025-11-25: the client asks with `params.task`; a task for a `forbidden` tool,
        or none for a `required` one, is -32601. Older legacy versions have no tasks.
        Modern: a task when the request declares the extension and the tool supports tasks;
        a `required` tool without the extension is -32021 naming the extension.
        """
        support = tool.task_support
        if request.era is Era.LEGACY:
            if not at_least(request.version, LEGACY_TASKS_VERSION):
                return False
            asked = request.params.get("task")
            if asked is not None and not isinstance(asked, dict):
                raise InvalidParams('"task" must be an object ({"ttl"?: integer})')
            if asked is not None and support == "forbidden":
                raise MethodNotFound(
                    f"tool {tool.name!r} does not support task-augmented execution",
                    data={"method": "tools/call", "taskSupport": support},
                )
            if asked is None and support == "required":
                raise MethodNotFound(
                    f"tool {tool.name!r} must be called as a task (params.task)",
                    data={"method": "tools/call", "taskSupport": support},
                )
            return asked is not None
        if has_extension(request.client_capabilities, TASKS_EXTENSION):
            return support in ("optional", "required")
        if support == "required":
            raise MissingRequiredClientCapability(
                f"tool {tool.name!r} runs only as a task: declare the {TASKS_EXTENSION} "
                "extension in clientCapabilities.extensions",
                required={"extensions": {TASKS_EXTENSION: {}}},
            )
        return False

    @staticmethod
    def owner_of(request: ServerRequest) -> object:
        """Legacy tasks belong to their session; modern ones to whoever holds the id."""
        if request.era is Era.MODERN:
            return MODERN_OWNER
        return request.connection if request.connection is not None else "legacy"

    # -- starting ------------------------------------------------------------------------

    async def start_tool_call(
        self,
        request: ServerRequest,
        execute: Callable[[InputProvider], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Create the task for a tools/call and answer with the era's CreateTaskResult."""
        legacy = request.era is Era.LEGACY
        ttl: int | None = None
        if legacy:
            ttl = _requested_ttl(request.params.get("task"))
        holder: dict[str, TaskRecord] = {}

        async def provider(requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
            record = holder["record"]
            if legacy:
                return await self._ask_in_session(record, request, requests)
            return await self.store.request_input(record, requests)

        async def work(record: TaskRecord) -> dict[str, Any]:
            holder["record"] = record
            return await execute(provider)

        record = self.store.create(
            self.owner_of(request),
            work,
            ttl_ms=ttl,
            on_change=self._status_notifier(request) if legacy else None,
            failed_if=_is_error_result if legacy else None,
        )
        if legacy:
            return {"task": record.legacy_task()}
        return {"resultType": TASK, **record.modern_task(detailed=False)}

    async def _ask_in_session(
        self,
        record: TaskRecord,
        request: ServerRequest,
        requests: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """Legacy: server-to-client requests tagged with the task, while input_required."""
        tagged: dict[str, dict[str, Any]] = {}
        for key, item in requests.items():
            params = dict(item.get("params") or {})
            params["_meta"] = {**(params.get("_meta") or {}),
                               RELATED_TASK: {"taskId": record.task_id}}
            tagged[key] = {**item, "params": params}
        async with self.store.waiting_for_input(record, _asking_text(requests)):
            return await self.server.ask_client(Context(self.server, request), tagged)

    def _status_notifier(self, request: ServerRequest) -> StatusListener | None:
        connection = request.connection
        if connection is None:
            return None

        async def notify(record: TaskRecord) -> None:
            await _send_status(connection, record)

        return notify

    # -- the methods ---------------------------------------------------------------------

    async def get(self, request: ServerRequest) -> dict[str, Any]:
        record = self.store.get(request.params.get("taskId"), self.owner_of(request))
        if request.era is Era.MODERN:
            return record.modern_task()
        return record.legacy_task()

    async def result(self, request: ServerRequest) -> dict[str, Any]:
        """Legacy tasks/result: block until terminal, then the underlying outcome exactly."""
        record = self.store.get(request.params.get("taskId"), self.owner_of(request))
        await self.store.wait(record)
        if record.error is not None:
            error = record.error
            raise MCPError(error["message"], code=error["code"], data=error.get("data"))
        if record.result is None:
            raise InvalidParams(
                f"task {record.task_id} was {record.status}; it has no result",
                data={"taskId": record.task_id, "status": record.status},
            )
        result = dict(record.result)
        result["_meta"] = {**(result.get("_meta") or {}),
                           RELATED_TASK: {"taskId": record.task_id}}
        return result

    async def cancel(self, request: ServerRequest) -> dict[str, Any]:
        record = self.store.get(request.params.get("taskId"), self.owner_of(request))
        cancelled = await self.store.cancel(record)
        if request.era is Era.MODERN:
            return {}  # an acknowledgement, whatever the task's state
        if not cancelled:
            raise InvalidParams(
                f"Cannot cancel task: already in terminal status {record.status!r}",
                data={"taskId": record.task_id, "status": record.status},
            )
        return record.legacy_task()

    async def list_tasks(self, request: ServerRequest) -> dict[str, Any]:
        tasks = [r.legacy_task() for r in self.store.owned_by(self.owner_of(request))]
        return paginate(tasks, "tasks", request.params.get("cursor"), self.server.page_size)

    async def update(self, request: ServerRequest) -> dict[str, Any]:
        """Modern tasks/update: answers to outstanding inputRequests; an empty ack."""
        record = self.store.get(request.params.get("taskId"), self.owner_of(request))
        responses = request.params.get("inputResponses")
        if not isinstance(responses, dict):
            raise InvalidParams('"inputResponses" (an object keyed by input request) is required')
        self.store.provide_input(record, responses)
        return {}

    def connection_closed(self, connection: ServerConnection) -> None:
        """A legacy session ended: nobody can reach its tasks any more."""
        self.store.drop_owner(connection)


async def _send_status(connection: ServerConnection, record: TaskRecord) -> None:
    if connection.lifecycle.state is not LifecycleState.OPERATING:
        return
    with contextlib.suppress(PeerClosed):
        await connection.send_notification(
            Notification("notifications/tasks/status", record.legacy_task())
        )


def _requested_ttl(task: Any) -> int | None:
    if not isinstance(task, dict):
        return None
    ttl = task.get("ttl")
    if ttl is None:
        return None
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        raise InvalidParams('"task.ttl" must be a non-negative integer (milliseconds)')
    return ttl


def _is_error_result(result: dict[str, Any]) -> bool:
    """Legacy: a tool result with isError fails the task (its result stays retrievable)."""
    return result.get("isError") is True


def _error_text(result: dict[str, Any]) -> str:
    for block in result.get("content") or []:
        if isinstance(block, dict) and block.get("type") == "text":
            return f"The tool reported an error: {str(block.get('text'))[:500]}"
    return "The tool reported an error."


def _asking_text(requests: dict[str, dict[str, Any]]) -> str:
    methods = sorted({str(r.get("method")) for r in requests.values()})
    return "Waiting for the client: " + ", ".join(methods)
