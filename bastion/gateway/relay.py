"""The relay: a client's request to the upstream that owns its target, and the answer back.

The request stays the parsed JSON it arrived as; the relay makes one shallow copy with the
upstream's own name for the target and the `_meta` of the upstream's hop (a modern upstream
gets its version and the client's capabilities; the client's progress token never crosses,
the upstream session uses its own and progress is relayed back). Request ids are the
sessions' own on each hop, so none leaks from one hop to the other.

Which era bridge a call needs is decided per call from the two eras (see `bridge`).
Task ids are mapped to opaque ids bound to their owner (see `tasks`), so a task request
finds its upstream, and only the client that created a task reaches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bastion.gateway.approval_tasks import APPROVAL_TASKS
from bastion.gateway.bridge import (
    ActiveCall,
    ParkedCall,
    answer_on_session,
    run_round,
)
from bastion.gateway.errors import UpstreamFailed
from bastion.gateway.fanin import fetch_all
from bastion.gateway.tasks import map_task_error, map_task_result
from bastion.guard.approval.stage import TASK_NOTE
from bastion.guard.pipeline import Call
from bastion.protocol import messages
from bastion.protocol.errors import InvalidParams, MCPError
from bastion.protocol.meta import (
    CLIENT_CAPABILITIES,
    CLIENT_INFO,
    LOG_LEVEL,
    PROGRESS_TOKEN,
    PROTOCOL_VERSION,
)
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.protocol.results import COMPLETE, INPUT_REQUIRED, TASK, result_type
from bastion.protocol.sealed import request_binding
from bastion.protocol.versions import Era
from bastion.server.pagination import paginate
from bastion.session.core import ProgressCallback

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.catalog import Entry
    from bastion.gateway.upstream import Upstream

#: `_meta` keys that belong to one hop and are set afresh on the next.
_HOP_META = frozenset({PROTOCOL_VERSION, CLIENT_CAPABILITIES, CLIENT_INFO, LOG_LEVEL,
                       PROGRESS_TOKEN})
#: What a client can be asked, of the capabilities a legacy client declares.
_ANSWERABLE = ("sampling", "elicitation", "roots")
GATEWAY_CLIENT_INFO = {"name": "bastion-gateway", "version": "0.1.0"}


class Relay:
    """Forwards tool calls, prompts, resource reads, completions and task requests."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # -- entry points (one per method) -----------------------------------------------------

    async def _target(self, call: Call, kind: str, field: str) -> Entry:
        """The catalogue entry a request names (its `name` or `uri`), checked by the guard."""
        key = call.params.get(field)
        if not isinstance(key, str):
            raise InvalidParams(f'{call.request.method} needs "{field}" (a string)')
        entry = getattr(self.gateway.catalog, kind)(key)
        if entry is None:
            entry = await self.gateway.learn_for(call, kind, key)
        if entry is None:
            raise self.gateway.unknown(kind, key, era=call.request.era)
        call.target = entry
        await self.gateway.pipeline.check_request(call)
        return entry

    async def call_tool(self, call: Call) -> dict[str, Any]:
        arguments = call.params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams('tools/call "arguments" must be an object',
                                data={"field": "arguments"})
        entry = await self._target(call, "tool", "name")
        if call.notes.get(TASK_NOTE) is not None:  # held for an approval: a task answers
            return await self.gateway.approval_tasks.start(call, entry)
        return await self.run_tool(call, entry)

    async def run_tool(self, call: Call, entry: Entry) -> dict[str, Any]:
        """A tools/call the guard let through, to its upstream and back through the result
        stages."""
        annotations = entry.definition.get("annotations")
        safe = isinstance(annotations, dict) and (
            annotations.get("readOnlyHint") is True or annotations.get("idempotentHint") is True)
        audit = self.gateway.audit
        if audit is not None and audit.before_rules:
            await audit.before_execute(call, None)
        result = await self.forward(call, entry, {"name": entry.original}, safe=safe)
        if result_type(result) == COMPLETE and not isinstance(result.get("content"), list) \
                and "task" not in result:
            raise UpstreamFailed(entry.upstream, "tools/call",
                                 "it returned an invalid result (no content list)")
        return await self._checked(call, result)

    async def get_prompt(self, call: Call) -> dict[str, Any]:
        entry = await self._target(call, "prompt", "name")
        return await self._checked(
            call, await self.forward(call, entry, {"name": entry.original}, safe=True))

    async def read_resource(self, call: Call) -> dict[str, Any]:
        entry = await self._target(call, "resource", "uri")
        return await self._checked(call, await self.forward(call, entry, {}, safe=True))

    async def complete(self, call: Call) -> dict[str, Any]:
        ref = call.params.get("ref")
        if not isinstance(ref, dict):
            raise InvalidParams('completion/complete needs "ref" (an object)')
        catalog = self.gateway.catalog
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            entry = catalog.prompt(ref["name"])
            if entry is None:
                raise self.gateway.unknown("prompt", ref["name"], era=call.request.era)
            replace: dict[str, Any] = {"ref": {**ref, "name": entry.original}}
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            entry = catalog.template(ref["uri"]) or catalog.resource(ref["uri"])
            if entry is None:
                raise self.gateway.unknown("resource", ref["uri"], era=call.request.era)
            replace = {}
        else:
            raise InvalidParams('"ref" must be a ref/prompt with a name or a ref/resource '
                                "with a uri")
        call.target = entry
        await self.gateway.pipeline.check_request(call)
        return await self.forward(call, entry, replace, safe=True)

    # -- tasks ---------------------------------------------------------------------------------

    def has_tasks(self, era: Era) -> bool:
        """Whether an upstream of `era` offers tasks (tasks pass through within one era)."""
        for upstream in self.gateway.pool:
            description = upstream.description
            if upstream.state != "up" or description is None or description.era is not era:
                continue
            caps = description.capabilities
            if era is Era.LEGACY and isinstance(caps.get("tasks"), dict):
                return True
            extensions = caps.get("extensions")
            if era is Era.MODERN and isinstance(extensions, dict) \
                    and TASKS_EXTENSION in extensions:
                return True
        return False

    async def task_request(self, call: Call) -> dict[str, Any]:
        """tasks/get, tasks/result, tasks/cancel, tasks/update and tasks/list, for the
        tasks the caller created (anyone else's id is an unknown one)."""
        await self.gateway.pipeline.check_request(call)
        tasks = self.gateway.tasks
        owner = tasks.owner_of(call)
        method = call.request.method
        if method == "tasks/list":
            return await self._list_tasks(call, owner)
        task_id = call.params.get("taskId")
        name, upstream_task = tasks.open(task_id, owner)
        if name == APPROVAL_TASKS:  # the gateway's own: a call held for an approval
            return await self.gateway.approval_tasks.request(call, upstream_task, task_id)
        upstream = self.gateway.pool.get(name)
        if upstream is None:  # issued before the configuration lost that upstream
            raise InvalidParams(f"task {task_id!r} belongs to upstream {name!r}, which is "
                                "not configured on this gateway", data={"taskId": task_id})
        self._same_era(call, upstream, task_id)
        params = self._upstream_params(call, upstream, {"taskId": upstream_task}, None)
        try:
            result = await upstream.request(method, params,
                                            safe_to_retry=method == "tasks/get")
        except MCPError as exc:
            map_task_error(exc, upstream_task, task_id)
            raise
        mapped = map_task_result(result, upstream_task, task_id)
        if method == "tasks/result":
            # A task's result is the tool's result: it passes the same result stages.
            return await self._checked(call, mapped)
        return mapped

    async def _list_tasks(self, call: Call, owner: bytes) -> dict[str, Any]:
        """The caller's tasks on every upstream of its era that lists tasks (tasks created
        through this replica: see `tasks`), one page at a time."""
        era = call.request.era
        upstreams = [u for u in self.gateway.pool if u.state == "up" and u.description
                     and u.description.era is era
                     and isinstance(u.description.capabilities.get("tasks"), dict)
                     and "list" in u.description.capabilities["tasks"]]
        listed = await asyncio.gather(*(fetch_all(u, "tasks/list", "tasks") for u in upstreams),
                                      return_exceptions=True)
        mine: list[dict[str, Any]] = []
        for upstream, found in zip(upstreams, listed, strict=True):
            if isinstance(found, list):  # an upstream that fails to list shows none
                mine.extend(self.gateway.tasks.listed(upstream.name, found, owner))
        mine.extend(self.gateway.approval_tasks.listed(call))
        return paginate(mine, "tasks", call.params.get("cursor"), self.gateway.page_size)

    def _same_era(self, call: Call, upstream: Upstream, task_id: str) -> None:
        description = upstream.description
        if description is not None and description.era is not call.request.era:
            # For the client it is a task that does not exist: -32602, as the spec says.
            raise InvalidParams(
                f"task {task_id!r} is a task of upstream {upstream.name!r}, which speaks "
                f"{description.version}: {call.request.method} cannot cross eras",
                data={"taskId": task_id})

    # -- forwarding ----------------------------------------------------------------------------

    async def forward(self, call: Call, entry: Entry, replace: dict[str, Any], *,
                      safe: bool) -> dict[str, Any]:
        """Send the call to the entry's upstream and return the upstream's answer for the
        client, across whatever era bridge the two hops need."""
        gateway = self.gateway
        request = call.request
        upstream = await gateway.upstream_for(call, entry.upstream)
        if upstream is None:  # the catalogue only lists configured upstreams
            raise UpstreamFailed(entry.upstream, request.method, "it is not configured")
        upstream_state: Any = None
        after_authorization = False
        state = call.params.get("requestState")
        if state is not None:
            opened = gateway.sealer.open(state, self._binding(call))
            if isinstance(opened, dict) and "parked" in opened:
                parked = gateway.parked.take(opened["parked"])
                parked.answer(call.params.get("inputResponses"))
                return self._done(await run_round(gateway.parked, parked, self._sealer(call)),
                                  call, entry, bridged=True)
            upstream_state = opened.get("upstream") if isinstance(opened, dict) else None
            # The retry after a URL elicitation of ours: its answers are not the upstream's.
            after_authorization = isinstance(opened, dict) and "oauth" in opened
        params = self._upstream_params(call, upstream, replace, upstream_state)
        if after_authorization:
            params.pop("inputResponses", None)
        on_progress = self._progress_relay(request)
        active = ActiveCall(request, upstream.name)
        upstream_era = upstream.description.era if upstream.description else None
        if request.era is Era.MODERN and upstream_era is Era.LEGACY:
            # The legacy upstream may ask the client something mid-call: the call runs as
            # its own task, so the client can be answered `input_required` meanwhile.
            task = asyncio.get_running_loop().create_task(
                self._tracked(active, upstream, request.method, params, on_progress, safe))
            active.parked = ParkedCall(task)
            result = await run_round(gateway.parked, active.parked, self._sealer(call))
            return self._done(result, call, entry, bridged=True)
        with gateway.active.track(active), gateway.tracer.upstream_span(
                upstream.name, request.method, params, target=entry.original) as hop:
            result = await upstream.request(request.method, params, on_progress=on_progress,
                                            safe_to_retry=safe)
            hop.set_result(result)
            if result_type(result) == INPUT_REQUIRED and request.era is Era.LEGACY:
                async def again(answers: dict[str, Any], state: Any) -> dict[str, Any]:
                    retry = dict(params, inputResponses=answers)
                    if state is not None:
                        retry["requestState"] = state
                    else:
                        retry.pop("requestState", None)
                    return await upstream.request(request.method, retry,
                                                  on_progress=on_progress, safe_to_retry=safe)

                result = await answer_on_session(request, result, again)
        return self._done(result, call, entry)

    async def _checked(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        """A final result through the guard's result stages (scanning, redaction) before
        the client sees it; `input_required` rounds and task handles pass as they are."""
        pipeline = self.gateway.pipeline
        if pipeline.checks_results and result_type(result) == COMPLETE and "task" not in result:
            return await pipeline.check_result(call, result)
        return result

    async def _tracked(self, active: ActiveCall, upstream: Upstream, method: str,
                       params: dict[str, Any], on_progress: ProgressCallback | None,
                       safe: bool) -> dict[str, Any]:
        with self.gateway.active.track(active), self.gateway.tracer.upstream_span(
                upstream.name, method, params) as hop:
            result = await upstream.request(method, params, on_progress=on_progress,
                                            safe_to_retry=safe)
            hop.set_result(result)
            return result

    def _done(self, result: Any, call: Call, entry: Entry, *,
              bridged: bool = False) -> dict[str, Any]:
        """The upstream's result as the client sees it: state and task ids mapped
        (`bridged`: an `input_required` the bridge made, whose state is already ours)."""
        if not isinstance(result, dict):
            raise UpstreamFailed(entry.upstream, call.request.method,
                                 "it returned a result that is not an object")
        kind = result_type(result)
        if kind == INPUT_REQUIRED and not bridged:
            state = result.get("requestState")
            if state is not None:
                result["requestState"] = self._sealer(call)({"upstream": state})
        elif kind == TASK or "task" in result:  # modern flat, or legacy {task}
            try:
                self.gateway.tasks.created(entry.upstream, result,
                                           self.gateway.tasks.owner_of(call))
            except ValueError as exc:
                raise UpstreamFailed(entry.upstream, call.request.method, str(exc)) from None
        return result

    def _upstream_params(self, call: Call, upstream: Upstream, replace: dict[str, Any],
                         upstream_state: Any) -> dict[str, Any]:
        request = call.request
        params = dict(request.params)
        params.update(replace)
        params.pop("requestState", None)
        meta = params.pop("_meta", None)
        hop: dict[str, Any] = {}
        if isinstance(meta, dict):
            hop = {k: v for k, v in meta.items() if k not in _HOP_META}
        description = upstream.description
        if description is not None and description.era is Era.MODERN:
            if upstream_state is not None:
                params["requestState"] = upstream_state
            hop[PROTOCOL_VERSION] = description.version
            hop[CLIENT_CAPABILITIES] = self._client_capabilities(request.client_capabilities,
                                                                 request.era)
            hop[CLIENT_INFO] = GATEWAY_CLIENT_INFO
            if request.log_level is not None:
                hop[LOG_LEVEL] = request.log_level
        else:
            params.pop("inputResponses", None)
        if hop:
            params["_meta"] = hop
        return params

    @staticmethod
    def _client_capabilities(capabilities: dict[str, Any], era: Era) -> dict[str, Any]:
        if era is Era.MODERN:
            return capabilities
        # A legacy client's capabilities, as far as the bridge can serve them modern-style.
        return {k: capabilities[k] for k in _ANSWERABLE if isinstance(capabilities.get(k), dict)}

    @staticmethod
    def _progress_relay(request: Any) -> ProgressCallback | None:
        token = request.incoming.progress_token
        if token is None:
            return None
        incoming = request.incoming

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await incoming.notify(messages.progress(token, progress, total, message))

        return relay

    @staticmethod
    def _binding(call: Call) -> bytes:
        return request_binding(call.request.method, call.params,
                               getattr(call.principal, "binding", None))

    def sealer_for(self, call: Call) -> Callable[[dict[str, Any]], str]:
        """Seals a `requestState` for `call` (bound to the request and its caller)."""
        return self._sealer(call)

    def _sealer(self, call: Call) -> Callable[[dict[str, Any]], str]:
        binding = self._binding(call)
        sealer = self.gateway.sealer
        return lambda state: sealer.seal(state, binding)
