"""Alerts the anomaly rules raise, and where they go: the log, the audit trail, a webhook.

An `Alert` says which rule fired, how bad it is, about whom (the principal's audit record,
the agent), about what (upstream, tool), the counts and thresholds behind it, and one summary
sentence. Nothing in it is taken from a call's arguments or results, so an alert never carries
a secret an agent passed or a tool returned.

Sinks are awaited by the detector's background task, never on the call path:

- `LogSink`: one warning on the logger `bastion.alerts`;
- `AuditSink`: the record `{"v": 1, "event": "alert", "time", "severity", "alert",
  "principal"}` handed to a callable (the gateway passes its audit writer);
- `WebhookSink`: `{"event": "anomaly.detected", "alert": {...}}` (or a Slack message),
  signed and bounded like the approval webhook (`bastion.guard.approval.webhook`), whose
  delivery it shares; the receiver's URL is checked by `WebhookConfig` (https, or http to
  this machine only).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from bastion.config.anomaly import Severity
from bastion.config.approvals import WebhookConfig
from bastion.guard.approval.webhook import SignedPoster, iso_utc, slack_escape
from bastion.transport.http.h1client import HTTPClient

logger = logging.getLogger("bastion.alerts")
EVENT = "anomaly.detected"
RECORD_VERSION = 1

#: `async def (record) -> ...`: where audit records of alerts go (`AuditLog.log` fits).
AuditWriter = Callable[[dict[str, Any]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Alert:
    """One anomaly (see the module doc)."""

    id: str
    rule: str
    severity: Severity
    #: One sentence for people: who, what, how much; never an argument or result value.
    summary: str
    #: When it fired (epoch seconds).
    time: float
    #: `Principal.for_audit()` of whom it is about (None for an upstream-wide alert or an
    #: anonymous caller).
    principal: dict[str, Any] | None = None
    agent: str | None = None
    upstream: str | None = None
    tool: str | None = None
    #: The numbers behind it: counts, thresholds, windows, baselines.
    counts: dict[str, float | int] = field(default_factory=dict)
    #: Alerts of the same rule about the same thing held back by the cooldown before this one.
    suppressed: int = 0

    def for_json(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "severity": self.severity,
                "summary": self.summary, "time": iso_utc(self.time),
                "principal": self.principal, "agent": self.agent,
                "upstream": self.upstream, "tool": self.tool, "counts": self.counts,
                "suppressed": self.suppressed}


def audit_record(alert: Alert) -> dict[str, Any]:
    """The audit trail's record of `alert`."""
    shown = alert.for_json()
    del shown["principal"]
    return {"v": RECORD_VERSION, "event": "alert", "time": alert.time,
            "severity": alert.severity, "alert": shown, "principal": alert.principal}


def json_payload(alert: Alert) -> dict[str, Any]:
    return {"event": EVENT, "alert": alert.for_json()}


def slack_payload(alert: Alert) -> dict[str, Any]:
    who = alert.principal.get("sub", "?") if alert.principal else "-"
    text = f"Anomaly ({alert.severity}, {alert.rule}): {slack_escape(alert.summary)}"
    fields = [f"*Who:* {slack_escape(str(who))}",
              f"*Agent:* {slack_escape(alert.agent or '-')}",
              f"*Tool:* {slack_escape(alert.tool or '-')}",
              f"*Upstream:* {slack_escape(alert.upstream or '-')}",
              f"*When:* {iso_utc(alert.time)}", f"*Id:* {alert.id}"]
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]}]}


class AlertSink(Protocol):
    """Somewhere alerts go. `deliver` may wait (it runs in the background) but is bounded."""

    async def deliver(self, alert: Alert) -> None: ...

    async def aclose(self) -> None: ...


class LogSink:
    """A warning on `bastion.alerts` per alert."""

    async def deliver(self, alert: Alert) -> None:
        logger.warning("anomaly %s (%s): %s [alert %s]", alert.rule, alert.severity,
                       alert.summary, alert.id)

    async def aclose(self) -> None:
        return None


class AuditSink:
    """Hands each alert's audit record to `write`."""

    def __init__(self, write: AuditWriter) -> None:
        self.write = write

    async def deliver(self, alert: Alert) -> None:
        await self.write(audit_record(alert))

    async def aclose(self) -> None:
        return None


class WebhookSink:
    """POSTs each alert to the configured receiver (JSON or Slack); never raises."""

    def __init__(self, config: WebhookConfig, *, http: HTTPClient | None = None) -> None:
        self.config = config
        self._poster = SignedPoster(config, label="alert", logger=logger, http=http)

    def body(self, alert: Alert) -> bytes:
        payload = slack_payload(alert) if self.config.format == "slack" else json_payload(alert)
        return orjson.dumps(payload)

    async def deliver(self, alert: Alert) -> None:
        await self._poster.post(self.body(alert), f"alert {alert.id}")

    async def aclose(self) -> None:
        await self._poster.aclose()
