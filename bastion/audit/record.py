"""What the gateway writes to the audit trail: one record per request it handled.

A `call` record answers "who did what, through which agent, and was it allowed?": the time,
the principal (subject, issuer, agent, delegation chain), the method, upstream and target,
the arguments' SHA-256 and size with the arguments themselves (redacted by the redaction
engine, dropped past a size cap, or never kept: `audit.arguments`), the policy's decision and
the rule that made it, the pin, scan, redaction, approval and rate-limit facts the stages
left, the status with the error the client got, the result's SHA-256 and size, the latency,
the trace id and the JSON-RPC request id. An `intent` record is written, and committed,
before a high-impact call runs ("record before execute"); a `refusal` record is a request
the HTTP endpoint refused for its credentials (no token, a bad one, too few scopes).

Nothing secret goes in: never a credential (the principal's audit form has none), argument
values only after redaction, error messages capped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from bastion.audit.chain import canonical
from bastion.guard.outcome import Outcome
from bastion.guard.pipeline import Call
from bastion.guard.redact.redactor import Redactor

RECORD_VERSION = 1
#: Requests that decide nothing and touch no upstream: not recorded.
UNRECORDED_METHODS = frozenset({"ping", "server/discover"})
#: The longest error message kept (an upstream's message may echo anything).
MAX_MESSAGE = 512
#: The notes stages leave that go into the record as they are (small, value-free).
_NOTES = ("pin", "scan", "scan_result", "redaction", "approval", "rate_limit")

ArgumentMode = Literal["redacted", "digest"]


def digest(value: Mapping[str, Any]) -> tuple[str, int]:
    """SHA-256 (hex) and size of the canonical JSON of a JSON object (as the chain writes)."""
    data = canonical(value)
    return hashlib.sha256(data).hexdigest(), len(data)


class RecordBuilder:
    """Builds the records of one gateway (its argument capture settings)."""

    def __init__(self, *, arguments: ArgumentMode = "redacted", max_argument_bytes: int = 4096,
                 redactor: Redactor | None = None) -> None:
        if arguments == "redacted" and redactor is None:
            raise ValueError("redacted argument capture needs a redactor")
        self.arguments = arguments
        self.max_argument_bytes = max_argument_bytes
        self.redactor = redactor

    def call(self, outcome: Outcome, trace_id: str | None = None) -> dict[str, Any]:
        """The record of a finished request; sets `outcome.result_bytes`."""
        call = outcome.call
        record = self._base("call", call, outcome.started, trace_id)
        record["status"] = outcome.status
        record["latency_ms"] = round(outcome.elapsed * 1000, 3)
        if outcome.error is not None:
            record["error"] = {"code": outcome.error_code,
                               "message": _message(outcome.error)}
        elif outcome.result is not None:
            sha256, size = digest(outcome.result)
            outcome.result_bytes = size
            record["result"] = {"sha256": sha256, "bytes": size}
        return record

    def intent(self, call: Call, time: float, trace_id: str | None = None) -> dict[str, Any]:
        """The record committed before a call runs ("record before execute")."""
        return self._base("intent", call, time, trace_id)

    @staticmethod
    def refusal(*, time: float, status: int, error: str | None, message: str,
                method: str | None, request_id: Any, remote: str | None,
                user_agent: str | None, principal: Mapping[str, Any] | None = None,
                trace_id: str | None = None) -> dict[str, Any]:
        """A request the HTTP endpoint refused for its credentials."""
        record: dict[str, Any] = {
            "v": RECORD_VERSION, "event": "refusal", "time": time, "status": "denied",
            "http_status": status, "error": {"code": error or "no_credentials",
                                             "message": message[:MAX_MESSAGE]}}
        for key, value in (("method", method), ("request_id", _request_id(request_id)),
                           ("remote", remote), ("principal", principal),
                           ("user_agent", user_agent[:256] if user_agent else None),
                           ("trace_id", trace_id)):
            if value is not None:
                record[key] = value
        return record

    # -- internals -------------------------------------------------------------------------

    def _base(self, event: str, call: Call, time: float, trace_id: str | None
              ) -> dict[str, Any]:
        request = call.request
        principal = call.principal
        record: dict[str, Any] = {
            "v": RECORD_VERSION, "event": event, "time": time,
            "request_id": _request_id(request.id), "method": request.method,
            "era": request.era.value, "transport": "stdio" if request.headers is None
            else "http",
            "principal": principal.for_audit() if principal is not None else None,
        }
        if trace_id is not None:
            record["trace_id"] = trace_id
        target = call.target
        if target is not None:
            record["upstream"] = target.upstream
            record["target"] = target.key
            if target.original != target.key:
                record["upstream_target"] = target.original
        arguments = call.params.get("arguments")
        if isinstance(arguments, dict):
            record["args"] = self._arguments(arguments)
        task_id = call.params.get("taskId")
        if isinstance(task_id, str):
            record["task_id"] = task_id[:256]
        notes = call.notes
        decision = notes.get("policy")
        if decision is not None:
            record["decision"] = {"effect": decision.effect, "allowed": decision.allowed,
                                  "rule": decision.rule, "reason": decision.reason,
                                  "policy_version": decision.policy_version}
        for key in _NOTES:
            value = notes.get(key)
            if value is not None:
                record[key] = value
        return record

    def _arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        sha256, size = digest(arguments)
        captured: dict[str, Any] = {"sha256": sha256, "bytes": size}
        if self.arguments == "digest":
            return captured
        try:
            shown, _report = self.redactor.redact_arguments(arguments)  # type: ignore[union-attr]
        except Exception:  # too large to check, or not redactable: keep no values
            captured["omitted"] = "not redactable"
            return captured
        # Nothing redacted: the size is the one just measured.
        shown_size = size if shown is arguments else len(canonical(shown))
        if shown_size <= self.max_argument_bytes:
            captured["value"] = shown
        else:
            captured["omitted"] = f"larger than {self.max_argument_bytes} bytes"
            captured["keys"] = sorted(shown)[:64]
        return captured


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)[:128]


def _message(error: BaseException) -> str:
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        message = str(error) or type(error).__name__
    return message[:MAX_MESSAGE]
