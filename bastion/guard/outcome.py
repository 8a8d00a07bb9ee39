"""How a request through the gateway ended: the one event the audit trail, the metrics and
the anomaly rules all read.

The gateway builds an `Outcome` once per request it handled (allowed, refused or failed) and
hands it to its observers after the answer is known. Observers must be cheap and must not
raise: they run on the hot path, after the result exists and before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bastion.guard.pipeline import Call

#: The gateway's refusal codes: the policy (-32003), a quarantined pin (-32004), a withheld
#: result (-32005), the scanner (-32006), an approver (-32007), the rate limit (-32008).
REFUSAL_CODES = frozenset({-32003, -32004, -32005, -32006, -32007, -32008})

Status = Literal["ok", "tool_error", "input_required", "task", "denied", "error"]


@dataclass(slots=True)
class Outcome:
    """One request the gateway finished."""

    call: Call
    #: When the gateway received it (epoch seconds) and how long it took (seconds).
    started: float
    elapsed: float
    #: The result the client got, or the exception that answered it instead.
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    #: The size of the result in canonical JSON, when the gateway measured it (it serialises
    #: the result once, for the audit record's digest); None otherwise.
    result_bytes: int | None = None

    @property
    def method(self) -> str:
        return self.call.request.method

    @property
    def upstream(self) -> str | None:
        """The upstream that owns the target (None for what the gateway answers itself)."""
        target = self.call.target
        return getattr(target, "upstream", None)

    @property
    def target(self) -> str | None:
        """The tool, prompt or resource as the client named it."""
        target = self.call.target
        return getattr(target, "key", None)

    @property
    def error_code(self) -> int | None:
        """The JSON-RPC error code the client got, if it got one."""
        code = getattr(self.error, "code", None)
        return code if isinstance(code, int) else (None if self.error is None else -32603)

    @property
    def status(self) -> Status:
        if self.error is not None:
            # A target the policy hides is answered like an unknown one, but was refused.
            refused = self.error_code in REFUSAL_CODES or self.refused_by_policy
            return "denied" if refused else "error"
        result = self.result or {}
        kind = result.get("resultType")
        if kind == "input_required":
            return "input_required"
        if kind == "task" or "task" in result:
            return "task"
        return "tool_error" if result.get("isError") is True else "ok"

    @property
    def refused_by_policy(self) -> bool:
        """Whether the policy refused the request (whatever error the client was told)."""
        return getattr(self.call.notes.get("policy"), "allowed", True) is False

    @property
    def rule(self) -> str | None:
        """The policy rule that decided, when the policy judged the request."""
        decision = self.call.notes.get("policy")
        return getattr(decision, "rule", None)


class Observer(Protocol):
    """Something that learns of every finished request (metrics, anomaly rules)."""

    def observe(self, outcome: Outcome) -> None: ...
