"""Tasks the gateway owns: a task-augmented tool call that waits for a person's approval.

A legacy 2025-11-25 client that asks for a task (`tools/call` with `params.task`) of a tool an
approval rule names is not kept waiting in the call, nor sent to an approval page: the
approval stage opens the request and leaves its id under `TASK_NOTE`, and the relay answers
at once with a `CreateTaskResult` of a task held here, in status `input_required` (a person
has to act). Its background job waits for the decision (`ApprovalStage.approved`), then runs
the call as a plain one (no `task` parameter: the upstream need not know tasks) through the
relay and the result stages, and keeps the result for `tasks/result`:

- `tasks/get`: input_required while the request is pending, working while the tool runs,
  then completed or failed;
- `tasks/result`: blocks until the task ends; the tool's result, or the `ApprovalDenied`
  (or the upstream's) error exactly;
- `tasks/cancel`: stops the job, which withdraws a pending request;
- `tasks/list`: the caller's approval tasks along with its upstream tasks;
- the session ends: its tasks stop, as a cancel does.

A modern client that declares the tasks extension gets `resultType: "task"` the same way;
its task is `working` while the request is pending (a modern `input_required` would promise
`inputRequests`), `tasks/get` inlines the result or error, `tasks/cancel` is acknowledged,
and `tasks/update` is refused (there is nothing to answer).

Client-visible ids are `GatewayTasks` ids (owner-bound, MAC'd) under the upstream name
`APPROVAL_TASKS`, which no configured upstream can have. The tasks live in this replica's
memory (`TaskStore`: bounded count, per-owner limit, TTL), as the approval wait does.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

from bastion.gateway.errors import UpstreamFailed
from bastion.guard.approval.errors import ApprovalError
from bastion.guard.approval.stage import TASK_NOTE, ApprovalStage
from bastion.guard.pipeline import Call
from bastion.protocol.errors import InternalError, InvalidParams, MCPError, MethodNotFound
from bastion.protocol.meta import RELATED_TASK
from bastion.protocol.results import COMPLETE, TASK, result_type
from bastion.protocol.versions import Era
from bastion.server.tasks import INPUT_REQUIRED, WORKING, TaskRecord, TaskStore

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.catalog import Entry

logger = logging.getLogger("bastion.gateway.approval_tasks")

#: The "upstream" of the gateway's own approval tasks in task ids (not a valid upstream name).
APPROVAL_TASKS = "@approval"
#: Bounds of the tasks held here (count, running ones per owner, lifetime in ms).
MAX_TASKS = 1000
MAX_ACTIVE_PER_OWNER = 20
DEFAULT_TTL_MS = 3_600_000
MAX_TTL_MS = 24 * 3_600_000
POLL_INTERVAL_MS = 2_000


class ApprovalTasks:
    """The gateway's approval tasks (see the module doc)."""

    def __init__(self, gateway: Gateway, store: TaskStore | None = None) -> None:
        self.gateway = gateway
        self.store = store or TaskStore(
            max_tasks=MAX_TASKS, max_active_per_owner=MAX_ACTIVE_PER_OWNER,
            default_ttl_ms=DEFAULT_TTL_MS, max_ttl_ms=MAX_TTL_MS,
            poll_interval_ms=POLL_INTERVAL_MS)
        #: Legacy sessions -> the owners of the tasks created over them.
        self._sessions: weakref.WeakKeyDictionary[Any, set[bytes]] = \
            weakref.WeakKeyDictionary()

    def connection_closed(self, connection: object) -> None:
        """A legacy session ended: its tasks can no longer be reached, so they stop (and
        their pending requests are withdrawn)."""
        for owner in self._sessions.pop(connection, ()):
            self.store.drop_owner(owner)

    def close(self) -> None:
        """Stop every job (their pending requests are withdrawn) and forget the tasks."""
        self.store.close()

    async def start(self, call: Call, entry: Entry) -> dict[str, Any]:
        """The era's CreateTaskResult for a call the approval stage held; its job starts
        now."""
        stage = self.gateway.pipeline.stage("approval")
        approval_id = call.notes.get(TASK_NOTE)
        if not isinstance(stage, ApprovalStage) or not isinstance(approval_id, str):
            raise InternalError("the call was held for an approval, but the gateway has no "
                                "approval stage to wait with; the call did not run")
        modern = call.request.era is Era.MODERN
        asked = call.params.get("task")
        requested = asked.get("ttl") if isinstance(asked, dict) else None
        ttl = requested if isinstance(requested, int) and not isinstance(requested, bool) \
            and requested > 0 else None
        owner = self.gateway.tasks.owner_of(call)
        relay = self.gateway.relay

        async def work(record: TaskRecord) -> dict[str, Any]:
            await stage.approved(call)  # ApprovalDenied unless approved (and now consumed)
            await self.store.set_status(record, WORKING, f"approved; {entry.key} runs")
            # The upstream runs it as a plain call: the task is the gateway's.
            call.params.pop("task", None)
            result = await relay.run_tool(call, entry)
            if result_type(result) != COMPLETE:
                raise UpstreamFailed(entry.upstream, "tools/call", "it asked for input, which "
                                     "a call held for an approval cannot relay")
            return result

        connection = call.request.connection
        if not modern and connection is not None:
            self._sessions.setdefault(connection, set()).add(owner)
        try:
            record = self.store.create(owner, work, ttl_ms=ttl,
                                       failed_if=None if modern else _is_error)
        except MCPError:  # too many tasks: the request it would wait for goes too
            with contextlib.suppress(ApprovalError):
                await stage.service.withdraw(approval_id, reason="no task could hold the call")
            raise
        # Set before the job first runs: the answer already says what it waits for. A
        # modern input_required would promise inputRequests: there the task is working.
        record.status = WORKING if modern else INPUT_REQUIRED
        record.status_message = self._waiting(stage, approval_id)
        task_id = self.gateway.tasks.issue(APPROVAL_TASKS, record.task_id, owner)
        logger.info("approval %s: task held for %s", approval_id, entry.key)
        if modern:
            return {"resultType": TASK, **self._task(record, task_id, call, detailed=False)}
        return {"task": self._task(record, task_id, call)}

    async def request(self, call: Call, own_id: str, task_id: str) -> dict[str, Any]:
        """tasks/get, tasks/result, tasks/cancel or tasks/update of an approval task
        (`own_id`: the store's id, from the client's `task_id` whose MAC the caller checked)."""
        record = self.store.get(own_id, self.gateway.tasks.owner_of(call))
        method = call.request.method
        modern = call.request.era is Era.MODERN
        if method == "tasks/get":
            return self._task(record, task_id, call)
        if method == "tasks/result" and not modern:
            await self.store.wait(record)
            if record.error is not None:
                error = record.error
                raise MCPError(error["message"], code=error["code"], data=error.get("data"))
            if record.result is None:
                raise InvalidParams(f"task {task_id} was {record.status}; it has no result",
                                    data={"taskId": task_id, "status": record.status})
            result = dict(record.result)
            result["_meta"] = {**(result.get("_meta") or {}), RELATED_TASK: {"taskId": task_id}}
            return result
        if method == "tasks/cancel":
            cancelled = await self.store.cancel(record, "The task was cancelled by request.")
            if modern:
                return {}  # an acknowledgement, whatever the task's state
            if not cancelled:
                raise InvalidParams(
                    f"Cannot cancel task: already in terminal status {record.status!r}",
                    data={"taskId": task_id, "status": record.status})
            return self._task(record, task_id, call)
        if method == "tasks/update":
            raise InvalidParams(f"task {task_id} waits for an approver, not for input: it "
                                "has no inputRequests to answer", data={"taskId": task_id})
        raise MethodNotFound(f"{method} is not available for an approval task",
                             data={"method": method})

    def listed(self, call: Call) -> list[dict[str, Any]]:
        """The caller's approval tasks (tasks/list)."""
        owner = self.gateway.tasks.owner_of(call)
        return [self._task(r, self.gateway.tasks.issue(APPROVAL_TASKS, r.task_id, owner), call)
                for r in self.store.owned_by(owner)]

    @staticmethod
    def _task(record: TaskRecord, task_id: str, call: Call, *,
              detailed: bool = True) -> dict[str, Any]:
        if call.request.era is Era.MODERN:
            return {**record.modern_task(detailed=detailed), "taskId": task_id}
        return {**record.legacy_task(), "taskId": task_id}

    @staticmethod
    def _waiting(stage: ApprovalStage, approval_id: str) -> str:
        return (f"waiting for an approver to decide approval {approval_id} "
                f"({stage.page_url(approval_id)})")


def _is_error(result: dict[str, Any]) -> bool:
    # A legacy task whose tool reported an error is failed; its result is kept as it is.
    return result.get("isError") is True
