"""The approval state machine the gateway, the admin API, the web page and the CLI share.

`needs_approval` is the cheap question on the hot path (compiled rules); `open` stores a
request and tells approvers in the background (the webhook never delays or fails the call);
`approve` and `deny` enforce who may decide (the rule's approvers, never the requester unless
`self_approval`); `wait` returns once the request is decided, expired or withdrawn, woken at
once by a decision made in this process and polling the store for one made elsewhere (the CLI,
another replica); `consume` lets the approved call run once, exactly as approved.

`on_event`, when given, hears of every change of state this process makes, by name:
"opened", "approved", "denied", "expired", "withdrawn" (the metrics count them). It is
called synchronously and must be cheap; an exception from it is logged, never raised.

The requester is compared by issuer and subject, not by agent: the same person through another
agent is still the requester. Anyone who may approve may also deny; the requester may deny
(or `withdraw`) their own request, since that only takes a call away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from bastion.config.approvals import ApprovalsConfig
from bastion.guard.approval.errors import (
    ApprovalMismatch,
    ApprovalNotPending,
    NotAnApprover,
    SelfApproval,
)
from bastion.guard.approval.request import (
    ApprovalEvent,
    ApprovalRequest,
    Status,
    arguments_sha256,
    check_reason,
)
from bastion.guard.approval.rules import ApprovalRules, MatchedRule
from bastion.guard.approval.store import ApprovalStore
from bastion.guard.approval.webhook import Webhook
from bastion.guard.pin.canonical import canonical_json
from bastion.guard.policy.classes import ClassCache
from bastion.guard.policy.rules import Target
from bastion.guard.redact import Redactor
from bastion.protocol.principal import Principal
from bastion.transport.http.h1client import HTTPClient

logger = logging.getLogger("bastion.approval")
#: Seconds between looks at the store while waiting (decisions from other processes).
POLL_INTERVAL = 1.0
#: Most webhook deliveries in flight; past it a notice is dropped (and logged), not queued.
MAX_NOTICES = 64


def new_approval_id() -> str:
    """A random, URL-safe id of 144 bits."""
    return "apr_" + secrets.token_urlsafe(18)


class ApprovalService:
    """Approvals under one `approvals:` configuration (see the module doc)."""

    def __init__(self, config: ApprovalsConfig, store: ApprovalStore, *,
                 redactor: Redactor | None = None, classes: ClassCache | None = None,
                 http: HTTPClient | None = None, poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.time,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.rules = ApprovalRules(config, classes)
        self.redactor = redactor if redactor is not None else Redactor()
        self.webhook = (Webhook(config.webhook, link=config.link, http=http)
                        if config.webhook is not None else None)
        self.poll_interval = poll_interval
        self.clock = clock
        self.on_event = on_event
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._notices: set[asyncio.Task[bool]] = set()

    # -- the call side ----------------------------------------------------------------------

    def needs_approval(self, principal: Principal, target: Target,
                       arguments: Mapping[str, Any], *,
                       now: datetime | None = None) -> MatchedRule | None:
        """The approval rule this call falls under, or None (no person needed)."""
        return self.rules.match(principal, target, arguments, now=now)

    async def open(self, principal: Principal, target: Target, arguments: dict[str, Any],
                   policy_version: str, *, rule: MatchedRule | None = None,
                   upstream_tool: str | None = None) -> ApprovalRequest:
        """Store a pending request for this exact call and notify approvers (background).
        `rule` is what `needs_approval` returned (matched again when None); ValueError when
        no rule asks for an approval."""
        if target.kind != "tool":
            raise ValueError(f"approvals are for tool calls, not a {target.kind}")
        if rule is None:
            rule = self.needs_approval(principal, target, arguments)
            if rule is None:
                raise ValueError(f"no approval rule applies to {target.name!r}")
        digest = arguments_sha256(arguments)
        shown, _ = self.redactor.redact_arguments(arguments)
        now = self.clock()
        request = ApprovalRequest(
            id=new_approval_id(), rule=rule.name, principal=principal.for_audit(),
            binding=principal.binding, agent=principal.client_id, upstream=target.upstream,
            tool=target.name, upstream_tool=upstream_tool or target.name,
            # A copy through canonical JSON: later changes to the caller's dict change nothing.
            arguments=_copy(arguments), arguments_sha256=digest, arguments_shown=shown,
            policy_version=policy_version, approver_roles=rule.approver_roles,
            approver_subjects=rule.approver_subjects, self_approval=rule.self_approval,
            created_at=now, expires_at=now + rule.expiry)
        await self.store.acreate(request)
        self._event("opened")
        self._notify(request)
        return request

    async def wait(self, approval_id: str, timeout: float) -> ApprovalRequest:
        """The request once it is no longer pending (approved, denied, expired, withdrawn),
        or still pending when `timeout` seconds pass first. An expiry that passes while
        waiting is recorded: the request comes back `expired` (a timeout is a deny)."""
        if not 0 <= timeout <= 86400:
            raise ValueError("timeout must be between 0 and 86400 seconds")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(approval_id, set()).add(event)
        try:
            while True:
                request = await self.store.aget(approval_id)
                if request.status == "pending" and self.clock() >= request.expires_at:
                    await self.expire_due()
                    continue
                left = deadline - loop.time()
                if request.status != "pending" or left <= 0:
                    return request
                pause = min(left, self.poll_interval, request.expires_at - self.clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), max(pause, 0.0))
                event.clear()
        finally:
            waiting = self._waiters.get(approval_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[approval_id]

    async def withdraw(self, approval_id: str, by: Principal | None = None,
                       reason: str | None = None) -> ApprovalRequest:
        """Close a pending request the client gave up on; `by`, when given, must be the
        requester (binding)."""
        if by is not None:
            request = await self.store.aget(approval_id)
            if request.binding != by.binding:
                raise ApprovalMismatch("binding")
        request = await asyncio.to_thread(
            self.store.withdraw, approval_id, by.for_audit() if by is not None else None,
            reason, now=self.clock())
        self._event("withdrawn")
        self._wake(approval_id)
        return request

    async def consume(self, approval_id: str, principal: Principal, target: Target,
                      arguments: dict[str, Any], policy_version: str) -> ApprovalRequest:
        """Use an approval for this call, once (see `ApprovalStore.consume`); forward the
        returned request's `arguments`."""
        digest = arguments_sha256(arguments)
        return await asyncio.to_thread(
            self.store.consume, approval_id, binding=principal.binding,
            upstream=target.upstream, tool=target.name, arguments_sha256=digest,
            policy_version=policy_version, now=self.clock())

    async def record_result(self, approval_id: str, result: Mapping[str, Any],
                            ok: bool) -> ApprovalRequest:
        """How the approved call ended: its status and the SHA-256 of its canonical result."""
        digest = hashlib.sha256(canonical_json(result)).hexdigest()
        return await self.store.arecord_result(approval_id, "ok" if ok else "error", digest)

    # -- the approver side --------------------------------------------------------------------

    async def approve(self, approval_id: str, approver: Principal,
                      reason: str | None = None) -> ApprovalRequest:
        return await self._decide(approval_id, approver, "approved", reason)

    async def deny(self, approval_id: str, approver: Principal,
                   reason: str | None = None) -> ApprovalRequest:
        return await self._decide(approval_id, approver, "denied", reason)

    async def get(self, approval_id: str) -> ApprovalRequest:
        return await self.store.aget(approval_id)

    async def list(self, status: Status | None = None, limit: int = 100
                   ) -> list[ApprovalRequest]:
        """Requests, newest first, after recording the expiry of those past due."""
        await self.expire_due()
        return await self.store.alist(status, limit)

    async def events(self, approval_id: str) -> list[ApprovalEvent]:
        return await self.store.aevents(approval_id)

    async def expire_due(self) -> list[str]:
        expired = await asyncio.to_thread(self.store.expire_due, self.clock())
        for approval_id in expired:
            self._event("expired")
            self._wake(approval_id)
        return expired

    async def aclose(self) -> None:
        """Let webhook deliveries in flight finish (each is bounded), then close."""
        if self._notices:
            await asyncio.gather(*self._notices, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.aclose()

    # -- internals ------------------------------------------------------------------------------

    async def _decide(self, approval_id: str, approver: Principal, status: Status,
                      reason: str | None) -> ApprovalRequest:
        check_reason(reason)
        request = await self.store.aget(approval_id)
        requester = (request.principal.get("iss"), request.principal.get("sub"))
        is_requester = requester == (approver.issuer, approver.subject)
        may_decide = (not approver.roles.isdisjoint(request.approver_roles)
                      or approver.subject in request.approver_subjects)
        if is_requester and status == "approved" and not request.self_approval:
            raise SelfApproval(approver.subject)
        if not may_decide and not (is_requester and status == "denied"):
            raise NotAnApprover(approver.subject, request.rule)
        # Checked after who may decide: only an approver learns how a request ended.
        if request.status != "pending":
            raise ApprovalNotPending(request.status)
        decided = await asyncio.to_thread(self.store.decide, approval_id, status,
                                          approver.for_audit(), reason, now=self.clock())
        self._event(status)
        self._wake(approval_id)
        return decided

    def _event(self, name: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name)
            except Exception:  # a listener (metrics) must not fail the approval
                logger.exception("approval event listener failed on %r", name)

    def _wake(self, approval_id: str) -> None:
        for event in self._waiters.get(approval_id, ()):
            event.set()

    def _notify(self, request: ApprovalRequest) -> None:
        if self.webhook is None:
            return
        if len(self._notices) >= MAX_NOTICES:
            logger.warning("approval webhook backlog full; approval %s was not announced",
                           request.id)
            return
        task = asyncio.get_running_loop().create_task(self.webhook.send(request))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)


def _copy(arguments: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = orjson.loads(canonical_json(arguments))
    return copied
