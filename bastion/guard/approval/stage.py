"""The `approval` guard stage: a tool call an approval rule names waits for a person.

It runs after the policy allowed the call (an approval only adds a person to what the policy
allows). When `ApprovalService.needs_approval` matches, the stage opens a request bound to
the exact call (principal, agent, upstream, tool, SHA-256 of the canonical arguments, policy
version) and the call waits in place, up to `approvals.wait` seconds, sending progress
notifications when the client gave a progress token. Then:

- approved: the approval is consumed (once; the store checks the binding and the digest
  again), so what is forwarded is exactly what was approved, and the result's digest is
  recorded on the way back;
- denied, expired or withdrawn: `ApprovalDenied` (-32007), naming the approval, who decided
  and why;
- not decided in time: the request is withdrawn and the call denied (a timeout is a deny);
- the client cancels (the handler task is cancelled): the request is withdrawn.

How the client waits depends on what it supports:

- a modern client that declares URL elicitation: at once an `input_required` result with a
  URL elicitation to the approval page (`{origin}/admin/approvals/{id}`) and a sealed
  `requestState` naming the request; its retry with that state runs once the request is
  approved (and is asked again meanwhile);
- a legacy 2025-11-25 client that declares `elicitation.url`: the -32042 error with the same
  elicitation; its retry with the same arguments finds the request by its binding;
- a legacy 2025-11-25 client whose call asks for a task (`params.task`), or a modern client
  that declares the tasks extension (either takes precedence over URL elicitation): the
  stage opens the request, leaves its id under `TASK_NOTE` and lets the pipeline go on; the
  gateway answers at once with a task of its own (`bastion.gateway.approval_tasks`), whose
  job waits for the decision (`approved`) and then runs the call as a plain one;
- any other client waits in the call, as described above.

A consumed approval is never reused: a call after it opens a new request. A modern retry that
carries the relay's own sealed state (a later round of an upstream's `input_required`) is
not asked again: that state is only issued after the guard let the call through, and it is
bound to the same caller, tool and arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bastion.config import resolve_state_dir
from bastion.guard.approval.errors import (
    ApprovalError,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalStoreError,
    ApprovalTooLarge,
)
from bastion.guard.approval.request import ApprovalRequest, arguments_sha256
from bastion.guard.approval.service import ApprovalService
from bastion.guard.approval.store import ApprovalStore
from bastion.guard.pipeline import Call, Stage
from bastion.guard.policy.stage import principal_of, target_of
from bastion.protocol.capabilities import elicitation_modes, has_extension
from bastion.protocol.errors import (
    InternalError,
    InvalidParams,
    MCPError,
    URLElicitationRequired,
)
from bastion.protocol.methods import TASKS_EXTENSION
from bastion.protocol.principal import Principal
from bastion.protocol.results import input_required
from bastion.protocol.sealed import StateSealer, request_binding
from bastion.protocol.versions import Era, at_least

logger = logging.getLogger("bastion.guard.approval")

APPROVAL_DENIED = -32007
#: Seconds between progress notifications while a call waits.
PROGRESS_INTERVAL = 5.0
#: The policy version recorded when no policy stage decided the call (no policy configured).
NO_POLICY = "none"
#: Where the approval id of a call is left for the result hook and the audit record.
NOTE = "approval"
#: Where the page that shows a request lives, under the gateway's public origin.
PAGE_PATH = "/admin/approvals/"
#: The legacy version that has URL elicitation (and -32042).
URL_ELICITATION_VERSION = "2025-11-25"
#: Most calls remembered for a legacy client's retry (oldest forgotten first).
MAX_ASKED = 4096
#: State keys of the relay's own rounds: a call carrying one was already let through.
_RELAY_STATES = ("upstream", "parked")
#: Where the stage leaves the approval a task-augmented call waits for: the gateway must
#: answer with a task and run the call only after `ApprovalStage.approved`.
TASK_NOTE = "approval_task"
#: Seconds per wait for a held task's decision (the request's own expiry ends the wait).
TASK_WAIT_STEP = 30.0


class ApprovalPending(Exception):
    """The call is answered, for now, with `result` (`input_required`: see the module doc);
    the gateway returns it as the call's result."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("the call waits for an approval")
        self.result = result


class ApprovalDenied(MCPError):
    """The call was not approved: denied, expired, withdrawn, or not decided in time."""

    code = APPROVAL_DENIED

    def __init__(self, request: ApprovalRequest, why: str) -> None:
        decider = request.decided_by or {}
        who = decider.get("sub") or decider.get("system")
        super().__init__(
            f"tools/call of {request.tool!r} was not approved: approval {request.id} {why}; "
            "the call did not run (call again to ask for a new approval)",
            data={"approval": request.id, "status": request.status, "decided_by": who,
                  "reason": request.reason})
        self.request = request


class ApprovalStage(Stage):
    """Make the calls approval rules name wait for a person (see the module doc)."""

    name = "approval"

    def __init__(self, service: ApprovalService, *, wait: float, origin: str,
                 sealer: StateSealer | None = None,
                 progress_interval: float = PROGRESS_INTERVAL) -> None:
        self.service = service
        self.wait = wait
        #: The gateway's public origin (`https://host[:port]`), for the approval page's URL.
        self.origin = origin.rstrip("/")
        #: Seals the `requestState` of a modern client's retry (None: modern clients wait).
        self.sealer = sealer
        self.progress_interval = progress_interval
        #: (binding, upstream, tool, digest, policy version) -> the request a legacy client
        #: was sent to approve, so its retry finds it.
        self._asked: OrderedDict[tuple[str, ...], str] = OrderedDict()

    def page_url(self, approval_id: str) -> str:
        return f"{self.origin}{PAGE_PATH}{quote(approval_id, safe='')}"

    async def aclose(self) -> None:
        await self.service.aclose()

    async def check_request(self, call: Call) -> None:
        if call.method != "tools/call" or call.target is None:
            return
        principal = principal_of(call)
        target = target_of(call.target)
        arguments = call.params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        rule = self.service.needs_approval(principal, target, arguments)
        if rule is None:
            return
        version = _policy_version(call)
        era = call.request.era
        if era is Era.MODERN and self.sealer is not None:
            opened = self._opened_state(call, principal)
            if any(key in opened for key in _RELAY_STATES):
                return  # a later round of a call the guard already let through
            if isinstance(opened.get(NOTE), str):
                request = await self._resumed(opened[NOTE], call, principal)
                await self._settle(call, request, principal, target, arguments, version)
                return
        elif self._elicits_legacy(call) and not wants_task(call):
            found = await self._asked_before(_key(principal, target, _digest(arguments),
                                                  version))
            if found is not None:
                await self._settle(call, found, principal, target, arguments, version)
                return
        _digest(arguments)
        try:
            request = await self.service.open(principal, target, arguments, version, rule=rule,
                                              upstream_tool=call.target.original)
        except ApprovalStoreError as exc:  # fail closed: no store, no call
            raise InternalError(f"the call needs an approval, but the approvals store "
                                f"failed: {exc}") from None
        call.notes[NOTE] = request.id
        logger.info("approval %s opened for %s (rule %s)", request.id, target.name, rule.name)
        if wants_task(call):
            call.notes[TASK_NOTE] = request.id
            return
        if self._elicits_modern(call):
            self._ask_modern(call, request, principal)
        if era is Era.LEGACY and self._elicits_legacy(call):
            self._ask_legacy(request, _key(principal, target, request.arguments_sha256,
                                           version))
        decided = await self._wait(call, request)
        await self._consume(call, decided, principal, target, arguments, version)

    async def check_result(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        approval_id = call.notes.get(NOTE)
        if isinstance(approval_id, str):
            try:
                await self.service.record_result(approval_id, result,
                                                 ok=result.get("isError") is not True)
            except (ApprovalError, ValueError) as exc:
                # The call already ran: the record is the audit's, not the client's concern.
                logger.warning("approval %s: the result was not recorded: %s", approval_id, exc)
        return result

    # -- a call held for a task -----------------------------------------------------------

    async def approved(self, call: Call) -> None:
        """For a call held for a task (`TASK_NOTE`): wait until its request is decided (its
        expiry bounds the wait), then consume the approval; `ApprovalDenied` when it was not
        approved. Cancelled (the task was cancelled or expired): the request is withdrawn."""
        approval_id = call.notes.get(TASK_NOTE)
        if not isinstance(approval_id, str):
            raise InternalError("the call was not held for an approval task")
        try:
            current = await self.service.wait(approval_id, TASK_WAIT_STEP)
            while current.status == "pending":
                current = await self.service.wait(approval_id, TASK_WAIT_STEP)
        except asyncio.CancelledError:
            await self._withdraw_shielded(approval_id, "the task was cancelled")
            raise
        principal = principal_of(call)
        arguments = call.params.get("arguments")
        await self._consume(call, current, principal, target_of(call.target),
                            arguments if isinstance(arguments, dict) else {},
                            _policy_version(call))

    async def _withdraw_shielded(self, approval_id: str, reason: str) -> None:
        try:
            await asyncio.shield(self._withdraw(approval_id, reason))
        except ApprovalError as exc:  # the cancellation goes on; the expiry closes it
            logger.warning("approval %s was not withdrawn: %s", approval_id, exc)

    # -- asking through a URL elicitation ----------------------------------------------------

    def _elicits_modern(self, call: Call) -> bool:
        """A modern client that declared URL elicitation (others can only wait)."""
        request = call.request
        return (request.era is Era.MODERN and self.sealer is not None
                and "url" in elicitation_modes(request.client_capabilities))

    def _elicits_legacy(self, call: Call) -> bool:
        request = call.request
        return (request.era is Era.LEGACY and at_least(request.version, URL_ELICITATION_VERSION)
                and "url" in elicitation_modes(request.client_capabilities))

    def _elicitation(self, request: ApprovalRequest) -> tuple[str, str]:
        expires = datetime.fromtimestamp(request.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (f"Bastion holds this call to {request.tool} until an approver allows it "
                f"(approval {request.id}, open until {expires}); follow it at the link, then "
                "retry.", self.page_url(request.id))

    def _ask_modern(self, call: Call, request: ApprovalRequest, principal: Principal) -> None:
        assert self.sealer is not None
        message, url = self._elicitation(request)
        ask = {"method": "elicitation/create",
               "params": {"mode": "url", "message": message, "url": url,
                          "elicitationId": request.id}}
        state = self.sealer.seal({NOTE: request.id}, _binding(call, principal),
                                 ttl=max(1.0, request.expires_at - time.time()))
        raise ApprovalPending(input_required({request.id: ask}, state))

    def _ask_legacy(self, request: ApprovalRequest, key: tuple[str, ...]) -> None:
        # Remembered, so the retry (the same call again) finds this request.
        self._asked[key] = request.id
        self._asked.move_to_end(key)
        while len(self._asked) > MAX_ASKED:
            self._asked.popitem(last=False)
        message, url = self._elicitation(request)
        raise URLElicitationRequired(message, data={"elicitations": [{
            "mode": "url", "elicitationId": request.id, "url": url, "message": message}]})

    def _opened_state(self, call: Call, principal: Principal) -> dict[str, Any]:
        state = call.params.get("requestState")
        if state is None:
            return {}
        assert self.sealer is not None
        opened = self.sealer.open(state, _binding(call, principal))  # InvalidParams if not ours
        return opened if isinstance(opened, dict) else {}

    async def _resumed(self, approval_id: str, call: Call,
                       principal: Principal) -> ApprovalRequest:
        """The request a modern retry names; withdrawn when the user declined to follow it."""
        try:
            request = await self.service.get(approval_id)
        except ApprovalNotFound:  # the store was reset: the state names nothing any more
            raise InvalidParams(f"requestState names approval {approval_id}, which this "
                                "gateway no longer has; send the call again without it"
                                ) from None
        responses = call.params.get("inputResponses")
        answer = responses.get(approval_id) if isinstance(responses, dict) else None
        if (request.status == "pending" and isinstance(answer, dict)
                and answer.get("action") in ("decline", "cancel")):
            await self._withdraw(approval_id, "the user declined the approval page")
            request = await self.service.get(approval_id)
        # Ours, not the upstream's: the relay must not pass them on.
        call.params.pop("requestState", None)
        call.params.pop("inputResponses", None)
        call.notes[NOTE] = approval_id
        return request

    async def _asked_before(self, key: tuple[str, ...]) -> ApprovalRequest | None:
        """The request a legacy client was sent to approve for this exact call: remembered
        here, or (another replica, a restart) found among the open ones in the store."""
        approval_id = self._asked.pop(key, None)
        if approval_id is not None:
            return await self.service.get(approval_id)
        binding, upstream, tool, digest, version = key
        for status in ("approved", "pending"):
            for request in await self.service.list(status=status):  # type: ignore[arg-type]
                if (request.binding, request.upstream, request.tool, request.arguments_sha256,
                        request.policy_version) == (binding, upstream, tool, digest, version):
                    return request
        return None

    async def _settle(self, call: Call, request: ApprovalRequest, principal: Principal,
                      target: Any, arguments: dict[str, Any], version: str) -> None:
        """A retry: asked again while pending, let through once approved, refused otherwise."""
        call.notes[NOTE] = request.id
        if request.status == "pending":
            if call.request.era is Era.MODERN:
                self._ask_modern(call, request, principal)
            self._ask_legacy(request, _key(principal, target, request.arguments_sha256,
                                           version))
        await self._consume(call, request, principal, target, arguments, version)

    # -- internals ---------------------------------------------------------------------------

    async def _wait(self, call: Call, request: ApprovalRequest) -> ApprovalRequest:
        """The request once decided; withdrawn (and so denied) when the client cancels or
        nobody decides within `wait` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        expires = datetime.fromtimestamp(request.expires_at, UTC).strftime("%H:%M:%S UTC")
        step = 0
        try:
            while True:
                left = deadline - loop.time()
                current = await self.service.wait(
                    request.id, max(0.0, min(left, self.progress_interval)))
                if current.status != "pending":
                    return current
                if deadline - loop.time() <= 0:
                    break
                step += 1
                await call.request.incoming.report_progress(
                    step, None, f"waiting for approval {request.id} (expires {expires})")
        except asyncio.CancelledError:
            await self._withdraw_shielded(request.id, "the client cancelled the call")
            raise
        reason = f"not approved within {self.wait:g} s while the call waited"
        withdrawn = await self._withdraw(request.id, reason)
        if withdrawn is None:
            raise ApprovalDenied(await self.service.get(request.id), f"was withdrawn: {reason}")
        return withdrawn

    async def _withdraw(self, approval_id: str, reason: str) -> ApprovalRequest | None:
        """Withdraw a pending request (None); when a decision or the expiry won the race,
        the request as it ended."""
        try:
            await self.service.withdraw(approval_id, reason=reason)
        except ApprovalNotPending:
            return await self.service.get(approval_id)
        return None

    async def _consume(self, call: Call, request: ApprovalRequest, principal: Principal,
                       target: Any, arguments: dict[str, Any], version: str) -> None:
        if request.status != "approved":
            raise ApprovalDenied(request, _why(request))
        try:
            used = await self.service.consume(request.id, principal, target, arguments, version)
        except ApprovalError as exc:
            logger.warning("approval %s was approved but cannot be used: %s", request.id, exc)
            raise ApprovalDenied(await self.service.get(request.id),
                                 f"cannot be used: {exc}") from None
        # The store compared the digests; compare again here, where the call is forwarded.
        if used.arguments_sha256 != arguments_sha256(arguments):
            raise ApprovalDenied(used, "was given for other arguments")
        logger.info("approval %s used by %s", request.id, principal.subject)


def _why(request: ApprovalRequest) -> str:
    decider = request.decided_by or {}
    who = decider.get("sub") or decider.get("system") or "nobody"
    reason = f": {request.reason}" if request.reason else ""
    if request.status == "denied":
        return f"was denied by {who}{reason}"
    if request.status == "expired":
        return "expired before anyone decided it"
    if request.status == "withdrawn":
        return f"was withdrawn{reason}"
    if request.status == "executed":
        return "was already used (an approval allows one call)"
    return f"is {request.status}"


def wants_task(call: Call) -> bool:
    """Whether a tools/call may be answered with a task the gateway holds: a legacy
    2025-11-25 call with `params.task` (an object), or a modern one whose client declares the
    tasks extension."""
    request = call.request
    if request.era is Era.MODERN:
        return has_extension(request.client_capabilities, TASKS_EXTENSION)
    return (at_least(request.version, URL_ELICITATION_VERSION)
            and isinstance(call.params.get("task"), dict))




def _digest(arguments: dict[str, Any]) -> str:
    try:
        return arguments_sha256(arguments)
    except ApprovalTooLarge as exc:
        raise InvalidParams(str(exc), data={"field": "arguments"}) from None
    except ValueError as exc:
        raise InvalidParams(f"the call cannot be held for approval: {exc}",
                            data={"field": "arguments"}) from None


def _key(principal: Principal, target: Any, digest: str, version: str) -> tuple[str, ...]:
    """What a legacy retry is recognised by: the exact call, from the same caller."""
    return (principal.binding, target.upstream or "", target.name, digest, version)


def _binding(call: Call, principal: Principal) -> bytes:
    return request_binding(call.request.method, call.params, principal.binding)


def _policy_version(call: Call) -> str:
    decision = call.notes.get("policy")
    version = getattr(decision, "policy_version", None)
    return version if isinstance(version, str) else NO_POLICY


class ApprovalsOff(Stage):
    """The stage when no approval rule is configured: it overrides no hook, so the pipeline
    never calls it."""

    name = "approval"


def approval_stage(context: Any) -> Stage:
    """The factory the stage registry uses: `context.config.approvals` (no rules: nothing to
    do) and the store in the state directory."""
    config = context.config
    if not config.approvals.rules:
        return ApprovalsOff()
    store = ApprovalStore.in_state_dir(resolve_state_dir(config))
    service = ApprovalService(config.approvals, store, clock=time.time)
    server = config.server
    return ApprovalStage(service, wait=config.approvals.wait,
                         origin=config.auth.public_origin(server.host, server.port,
                                                          server.path),
                         sealer=getattr(context, "sealer", None))
