"""`Client`: an MCP client for both eras, over any connected `ClientConnection`.

Lists follow every page; calls that the server answers with `input_required` (modern MRTR)
are answered through the same handlers that serve a legacy server's sampling, elicitation
and roots requests, and retried with a new id, `inputResponses`, and the `requestState`
echoed byte for byte.

Tasks: in a legacy 2025-11-25 session the caller drives them (`call_tool_task`, `get_task`,
`get_task_result`, `cancel_task`, `list_tasks`). In the modern era a client that declares the
tasks extension (`ClientHandlers(tasks=True)`) may get `resultType: "task"` from tools/call;
`call_tool` then polls `tasks/get` at the server's `pollIntervalMs`, answers its
`inputRequests` with `tasks/update`, and returns the final result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bastion.protocol.errors import MCPError, ProtocolError
from bastion.protocol.results import INPUT_REQUIRED, TASK, result_type
from bastion.protocol.versions import Era
from bastion.session.client_side import ClientConnection, ServerDescription
from bastion.session.core import ProgressCallback
from bastion.session.errors import RequestTimeout

#: A bound on MRTR rounds, so a server that keeps asking cannot loop a client forever.
DEFAULT_MAX_ROUNDS = 16
#: How long `call_tool` follows a modern task before cancelling it and giving up.
DEFAULT_TASK_TIMEOUT = 600.0
#: The polling interval when a task does not suggest one.
DEFAULT_POLL_INTERVAL = 0.5


class Client:
    """High-level MCP operations on a connected server."""

    def __init__(
        self,
        connection: ClientConnection,
        *,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        task_timeout: float = DEFAULT_TASK_TIMEOUT,
    ) -> None:
        self.connection = connection
        self.max_rounds = max_rounds
        self.task_timeout = task_timeout
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def server(self) -> ServerDescription:
        if self.connection.server is None:
            raise RuntimeError("not connected")
        return self.connection.server

    @property
    def era(self) -> Era:
        return self.connection.era

    @property
    def protocol_version(self) -> str:
        return self.connection.version

    # -- lists -----------------------------------------------------------------------------

    async def _list_all(self, method: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page_params = dict(params)
            if cursor is not None:
                page_params["cursor"] = cursor
            result = await self.connection.request(method, page_params or None)
            page = result.get(key)
            if not isinstance(page, list):
                raise ProtocolError(f"{method} result has no {key!r} list")
            items.extend(page)
            cursor = result.get("nextCursor")
            if not cursor:
                return items
            if cursor in seen:
                raise ProtocolError(f"{method}: the server repeated cursor {cursor!r}")
            seen.add(cursor)

    async def list_tools(self) -> list[dict[str, Any]]:
        return await self._list_all("tools/list", "tools")

    async def list_resources(self) -> list[dict[str, Any]]:
        return await self._list_all("resources/list", "resources")

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        return await self._list_all("resources/templates/list", "resourceTemplates")

    async def list_prompts(self) -> list[dict[str, Any]]:
        return await self._list_all("prompts/list", "prompts")

    # -- requests that may need input (MRTR) ----------------------------------------------

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Call a tool; a tool failure is a result with `isError: true`, not an exception."""
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self._request_with_inputs("tools/call", params, timeout, on_progress)

    async def read_resource(self, uri: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await self._request_with_inputs("resources/read", {"uri": uri}, timeout, None)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self._request_with_inputs("prompts/get", params, timeout, None)

    async def _request_with_inputs(
        self,
        method: str,
        params: dict[str, Any],
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        current = params
        for _round in range(self.max_rounds):
            result = await self.connection.request(
                method, current, timeout=timeout, on_progress=on_progress
            )
            if method == "tools/call" and result_type(result) == TASK:
                return await self._follow_task(result, timeout)
            if result_type(result) != INPUT_REQUIRED:
                return result
            requests = result.get("inputRequests") or {}
            if not isinstance(requests, dict):
                raise ProtocolError(f"{method}: inputRequests must be an object")
            current = dict(params)
            if requests:
                current["inputResponses"] = await self._answer_all(requests)
            if "requestState" in result:
                current["requestState"] = result["requestState"]
        raise ProtocolError(
            f"{method}: the server still asked for input after {self.max_rounds} rounds"
        )

    async def _answer_all(self, requests: dict[str, Any]) -> dict[str, Any]:
        keys = list(requests)
        answers = await asyncio.gather(*(self._answer(requests[k]) for k in keys))
        return dict(zip(keys, answers, strict=True))

    async def _answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise ProtocolError(f"malformed input request: {request!r:.100}")
        handlers = self.connection.handlers
        method = request["method"]
        params = request.get("params") or {}
        if method == "sampling/createMessage" and handlers.sampling is not None:
            return await handlers.sampling(params)
        if method == "elicitation/create" and handlers.elicitation is not None:
            return await handlers.elicitation(params)
        if method == "roots/list" and handlers.roots is not None:
            return {"roots": await handlers.roots()}
        raise ProtocolError(
            f"the server asked for {method!r}, which this client did not declare"
        )

    # -- tasks -------------------------------------------------------------------------------

    async def _follow_task(self, created: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Modern: poll a task until it ends, answering its input requests on the way."""
        task_id = created.get("taskId")
        if not isinstance(task_id, str):
            raise ProtocolError("tools/call: a task result without a taskId")
        deadline = time.monotonic() + self.task_timeout
        answered: set[str] = set()
        task = created
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._cancel_quietly(task_id)
                    raise RequestTimeout(f"tools/call (task {task_id})", self.task_timeout)
                await asyncio.sleep(min(_poll_seconds(task), remaining))
                task = await self.connection.request("tasks/get", {"taskId": task_id},
                                                     timeout=timeout)
                status = task.get("status")
                if status == "completed":
                    result = task.get("result")
                    if not isinstance(result, dict):
                        raise ProtocolError(f"task {task_id} completed without a result object")
                    return result
                if status == "failed":
                    error = task.get("error")
                    if isinstance(error, dict):
                        raise MCPError.from_error(error)
                    raise MCPError(f"task {task_id} failed: {task.get('statusMessage', '')}")
                if status == "cancelled":
                    raise MCPError(f"task {task_id} was cancelled: "
                                   f"{task.get('statusMessage', '')}")
                if status == "input_required":
                    requests = task.get("inputRequests") or {}
                    if not isinstance(requests, dict):
                        raise ProtocolError(f"task {task_id}: inputRequests must be an object")
                    fresh = {k: v for k, v in requests.items() if k not in answered}
                    if fresh:
                        responses = await self._answer_all(fresh)
                        answered.update(fresh)
                        await self.connection.request(
                            "tasks/update", {"taskId": task_id, "inputResponses": responses},
                            timeout=timeout,
                        )
        except asyncio.CancelledError:
            # The caller gave up: tell the server, without holding up the cancellation.
            background = asyncio.create_task(self._cancel_quietly(task_id))
            self._background.add(background)
            background.add_done_callback(self._background.discard)
            raise

    async def _cancel_quietly(self, task_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.connection.request("tasks/cancel", {"taskId": task_id}, timeout=5.0)

    async def call_tool_task(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        ttl: int | None = None,
    ) -> dict[str, Any]:
        """Legacy 2025-11-25: call a tool as a task; the CreateTaskResult `{task}`."""
        self._require_legacy("tools/call with params.task")
        task: dict[str, Any] = {}
        if ttl is not None:
            task["ttl"] = ttl
        params: dict[str, Any] = {"name": name, "task": task}
        if arguments is not None:
            params["arguments"] = arguments
        result = await self.connection.request("tools/call", params)
        if not isinstance(result.get("task"), dict):
            raise ProtocolError("tools/call with params.task did not return a CreateTaskResult")
        return result

    async def get_task(self, task_id: str) -> dict[str, Any]:
        """The task's current state (tasks/get; modern results inline result or error)."""
        return await self.connection.request("tasks/get", {"taskId": task_id})

    async def get_task_result(
        self, task_id: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Legacy: wait for the task to end; its result (an error raises MCPError)."""
        self._require_legacy("tasks/result")
        return await self.connection.request("tasks/result", {"taskId": task_id},
                                             timeout=timeout)

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        """Cancel a task (legacy: the cancelled Task; modern: an acknowledgement)."""
        return await self.connection.request("tasks/cancel", {"taskId": task_id})

    async def list_tasks(self) -> list[dict[str, Any]]:
        """Legacy: every task of this session (all pages)."""
        self._require_legacy("tasks/list")
        return await self._list_all("tasks/list", "tasks")

    async def update_task(self, task_id: str, input_responses: dict[str, Any]) -> None:
        """Modern: answer a task's outstanding inputRequests."""
        if self.era is not Era.MODERN:
            raise MCPError("tasks/update exists only in the modern tasks extension")
        await self.connection.request(
            "tasks/update", {"taskId": task_id, "inputResponses": input_responses}
        )

    # -- other operations ------------------------------------------------------------------

    async def complete(
        self,
        ref: dict[str, Any],
        argument: dict[str, str],
        context_arguments: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"ref": ref, "argument": argument}
        if context_arguments:
            params["context"] = {"arguments": context_arguments}
        result = await self.connection.request("completion/complete", params)
        return result.get("completion") or {}

    async def ping(self) -> None:
        """Legacy only: the modern era has no ping."""
        self._require_legacy("ping")
        await self.connection.request("ping")

    async def set_logging_level(self, level: str) -> None:
        """Legacy: logging/setLevel. Modern clients pass `log_level` when connecting."""
        self._require_legacy("logging/setLevel")
        await self.connection.request("logging/setLevel", {"level": level})

    async def subscribe_resource(self, uri: str) -> None:
        self._require_legacy("resources/subscribe")
        await self.connection.request("resources/subscribe", {"uri": uri})

    async def unsubscribe_resource(self, uri: str) -> None:
        self._require_legacy("resources/unsubscribe")
        await self.connection.request("resources/unsubscribe", {"uri": uri})

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any request, in the connection's era (raw result)."""
        return await self.connection.request(method, params)

    def _require_legacy(self, method: str) -> None:
        if self.era is Era.MODERN:
            raise MCPError(f"{method} does not exist in the modern protocol "
                           f"({self.protocol_version})")

    async def aclose(self) -> None:
        await self.connection.aclose()


def _poll_seconds(task: dict[str, Any]) -> float:
    """The task's suggested polling interval, in seconds."""
    interval = task.get("pollIntervalMs")
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval >= 0:
        return interval / 1000
    return DEFAULT_POLL_INTERVAL
