"""The gateway's side of the audit trail: which requests are recorded, when, and what
happens when the trail cannot take a record.

Every request the gateway handles (but `ping` and `server/discover`) becomes a `call` record
once it has ended, queued for the batching writer (`bastion.audit.AuditLog`) so the hot path
never waits on disk. A tool call allowed by a policy rule with `audit: before_execute`
first gets an `intent` record and goes upstream only once that record is committed; if it
cannot be, the call is refused ("no audit, no call"). Requests the HTTP endpoint refuses for
their credentials become `refusal` records.

When the writer has failed (a full disk, a lost database), ordinary calls go on and the
failure is logged (at most every 10 s) and shows in `/readyz`; only the calls whose rule
demands a record first are refused.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bastion.audit import AuditClosedError, AuditLog, AuditRecordError, AuditStoreError
from bastion.audit.factory import open_audit_log
from bastion.audit.record import UNRECORDED_METHODS, RecordBuilder
from bastion.audit.signing import load_or_create_signing_key
from bastion.config import BastionConfig, resolve_state_dir
from bastion.guard.outcome import Outcome
from bastion.guard.pipeline import Call
from bastion.guard.redact.redactor import Redactor
from bastion.protocol.errors import InternalError

logger = logging.getLogger("bastion.audit")
_COMPLAINT_INTERVAL = 10.0


class AuditUnavailable(InternalError):
    """A call whose rule requires its audit record first, refused because the trail could
    not commit it."""

    def __init__(self, reason: str) -> None:
        super().__init__("this call was not run: its policy rule requires an audit record "
                         f"before it runs, and the audit trail could not commit one ({reason})"
                         "; retry later or ask the gateway's operator",
                         data={"reason": "audit_unavailable"})


class GatewayAudit:
    """The audit trail of one gateway (see the module doc)."""

    def __init__(self, config: BastionConfig, redactor: Redactor | None = None) -> None:
        self.config = config
        settings = config.audit
        self.builder = RecordBuilder(
            arguments=settings.arguments, max_argument_bytes=settings.max_argument_bytes,
            redactor=redactor if redactor is not None else Redactor(config.redaction))
        self.before_rules = frozenset(rule.name for rule in config.policy.rules
                                      if rule.audit == "before_execute")
        self.log: AuditLog | None = None
        self._last_complaint = float("-inf")

    @property
    def running(self) -> bool:
        """Whether records are being written (for `/readyz`)."""
        return self.log is not None and self.log.running

    @property
    def queue_depth(self) -> int:
        return self.log.queue_depth if self.log is not None else 0

    async def start(self, listener: str | None = None) -> None:
        """Open the store and start the writer; AuditStoreError or AuditKeyError if the
        trail cannot be kept (the gateway does not start without it)."""
        state_dir = resolve_state_dir(self.config)
        self.log = open_audit_log(self.config.audit, state_dir=state_dir,
                                  base_dir=self.config.base_dir,
                                  key=load_or_create_signing_key(state_dir), listener=listener)
        await self.log.start()

    async def aclose(self) -> None:
        """Write what is queued and sign the final checkpoint."""
        if self.log is not None:
            try:
                await self.log.aclose()
            except AuditClosedError as exc:
                logger.error("the audit trail was not closed cleanly: %s", exc)

    def records(self, method: str) -> bool:
        return method not in UNRECORDED_METHODS

    async def finished(self, outcome: Outcome, trace_id: str | None) -> None:
        """Queue the record of a finished request (never raises)."""
        try:
            record = self.builder.call(outcome, trace_id)
        except Exception as exc:  # a broken record must not break the answer
            self._complain(exc)
            return
        await self.write(record)

    async def before_execute(self, call: Call, trace_id: str | None) -> None:
        """For a call whose rule asks for it: commit an `intent` record, or refuse."""
        decision = call.notes.get("policy")
        if decision is None or decision.rule not in self.before_rules:
            return
        log = self.log
        if log is None:
            raise AuditUnavailable("the audit trail is not running")
        try:
            await log.log(self.builder.intent(call, time.time(), trace_id), committed=True)
        except (AuditClosedError, AuditRecordError, AuditStoreError) as exc:
            self._complain(exc)
            raise AuditUnavailable(str(exc)) from None
        call.notes["audited_before"] = True

    async def refused(self, **facts: Any) -> None:
        """Record a request the HTTP endpoint refused for its credentials (never raises)."""
        await self.write(RecordBuilder.refusal(time=time.time(), **facts))

    async def write(self, record: dict[str, Any]) -> None:
        """Queue a record (an anomaly alert, say); never raises: a failure is logged."""
        try:
            if self.log is None:
                raise AuditClosedError("the audit trail is not running")
            await self.log.log(record)
        except Exception as exc:
            self._complain(exc)

    def _complain(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= _COMPLAINT_INTERVAL:
            self._last_complaint = now
            logger.error("audit record not written: %s", exc)


__all__ = ["AuditUnavailable", "GatewayAudit"]
