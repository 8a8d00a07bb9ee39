"""The redaction stage: secrets and PII leave tool results, prompts and resource contents
before the agent sees them (`redaction:` in the configuration).

Clean results pass as the same object (no copy on the hot path). What was redacted is left
in `call.notes["redaction"]` as counts and JSON pointers, never values, for the audit
record. A result too large or too deep to check is withheld: redaction fails closed.
"""

from __future__ import annotations

from typing import Any

from bastion.guard.pipeline import Call, Stage
from bastion.guard.redact.redactor import RedactionLimitError, Redactor
from bastion.protocol.errors import MCPError

#: The result could not be checked for secrets, so it is not shown.
WITHHELD = -32005


class ResultWithheld(MCPError):
    """A result the gateway would not pass unchecked."""

    code = WITHHELD


class RedactStage(Stage):
    """Redact secrets and PII from results."""

    name = "redact"

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    async def check_result(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        try:
            redacted, report = self.redactor.redact_result(result)
        except RedactionLimitError as exc:
            raise ResultWithheld(f"the result of {call.method} was withheld: it could not be "
                                 f"checked for secrets ({exc})") from None
        if report:
            call.notes["redaction"] = report.for_audit()
        return redacted


class RedactOff(Stage):
    """Nothing to redact: a stage with no hooks (it costs nothing)."""

    name = "redact"


def redact_stage(context: Any) -> Stage:
    """The factory the stage registry uses (`context.config.redaction`)."""
    redactor = Redactor(context.config.redaction)
    return RedactStage(redactor) if redactor.active else RedactOff()
