"""The gateway's Prometheus metrics: what it served, refused and failed, and how its upstreams
are doing.

`GatewayMetrics` is an `Observer` (`bastion.guard.outcome`): the gateway hands it every
finished request, and `observe()` costs a few microseconds. That budget shapes the code: the
label children of each (upstream, method, tool) are bound once and cached, so a request costs
a dict lookup and the increments, with no string formatting and no label validation.

Label values are bounded, because a label set is a time series held forever:

- `upstream` comes from the configuration (or "" for what the gateway answers itself);
- `method` is one of MCP's client request methods, anything else is "other";
- `tool` is the catalogue name of the target the gateway resolved (never a name the client
  sent that matched nothing: that is "unknown"), and past `max_series` label sets, "other";
- error kinds, statuses, approval events and auth refusal reasons are fixed sets; denial rule
  names come from the policy configuration, scan codes from the scanner's table (both are
  still capped).

No argument, subject or token ever becomes a label.

Upstream health and the audit queue depth are read at scrape time, from callables the gateway
sets (`upstreams`, `audit_queue_depth`), by a custom collector: nothing runs between scrapes.
Every instance has its own `CollectorRegistry`, so several gateways (tests) never collide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion.config.metrics import MetricsConfig
from bastion.guard.outcome import Outcome
from bastion.protocol.methods import MODERN_TASK_REQUESTS, requests_from_client
from bastion.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS

logger = logging.getLogger("bastion.telemetry.metrics")

#: The Prometheus text format `generate_latest` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds: from a cached list lookup to a long tool call.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0)

STATUSES = ("ok", "tool_error", "input_required", "task", "denied", "error")

#: The gateway's refusal codes and upstream error kinds, as `bastion_errors_total{kind}`.
ERROR_KINDS_BY_CODE = {
    -32003: "policy_denied", -32004: "quarantined", -32005: "withheld",
    -32006: "scan_blocked", -32007: "approval_denied", -32008: "rate_limited",
    -32602: "invalid_params", -32601: "method_not_found", -32600: "invalid_request",
    -32002: "not_found", -32603: "internal",
}
#: `data.kind` of the gateway's upstream errors (`bastion.gateway.errors`), all -32603.
UPSTREAM_KINDS = {"unavailable": "upstream_unavailable", "timeout": "upstream_timeout",
                  "failed": "upstream_error"}
ERROR_KINDS = (*ERROR_KINDS_BY_CODE.values(), *UPSTREAM_KINDS.values(), "tool_error",
               "cancelled", "other")

APPROVAL_EVENTS = ("opened", "approved", "denied", "expired", "withdrawn")
#: RFC 6750 error codes of an `AuthChallenge`, and "missing" for no credential at all.
AUTH_REASONS = ("missing", "invalid_token", "invalid_request", "insufficient_scope", "other")

#: The methods a client may ask; any other string is "other" (a client chooses it).
METHODS = frozenset().union(*(requests_from_client(v) for v in (*LEGACY_VERSIONS,
                                                                 *MODERN_VERSIONS)),
                            MODERN_TASK_REQUESTS)

#: A label value longer than this (a long resource URI) is "other".
MAX_LABEL = 200
#: Distinct denial rules and scan finding label sets kept before further ones are "other".
MAX_RULES = 500
MAX_FINDINGS = 500
#: Cache entries past `max_series` (aliases of "other") before lookups stop being cached.
_ALIAS_FACTOR = 2

UpstreamHealth = Callable[[], Iterable[Mapping[str, Any]]]


class _Series:
    """The bound children of one (upstream, method, tool): a histogram and one counter per
    status, bound on first use."""

    __slots__ = ("counters", "duration", "labels", "requests")

    def __init__(self, requests: Counter, duration: Histogram,
                 labels: tuple[str, str, str]) -> None:
        self.requests = requests
        self.labels = labels
        self.duration = duration.labels(*labels)
        self.counters: dict[str, Any] = {}

    def counter(self, status: str) -> Any:
        child = self.counters.get(status)
        if child is None:
            child = self.counters[status] = self.requests.labels(*self.labels, status)
        return child


class GatewayMetrics:
    """Every metric of one gateway (see the module doc)."""

    def __init__(self, config: MetricsConfig | None = None, *,
                 upstreams: UpstreamHealth | None = None,
                 audit_queue_depth: Callable[[], int] | None = None) -> None:
        self.config = config if config is not None else MetricsConfig()
        self.registry = CollectorRegistry(auto_describe=False)
        #: Health dicts of the upstreams (`UpstreamPool.health()`, or the prober's
        #: `snapshot()` with latency and error rate), read at each scrape.
        self.upstreams = upstreams
        #: Records waiting in the audit writer's queue, read at each scrape.
        self.audit_queue_depth = audit_queue_depth
        r = self.registry
        self._requests = Counter("bastion_requests", "Requests the gateway finished.",
                                 ("upstream", "method", "tool", "status"), registry=r)
        self._duration = Histogram("bastion_request_duration_seconds",
                                   "Time from receiving a request to its answer.",
                                   ("upstream", "method", "tool"), buckets=LATENCY_BUCKETS,
                                   registry=r)
        errors = Counter("bastion_errors", "Requests answered with an error or refusal, by "
                         "kind.", ("kind",), registry=r)
        self._errors = {kind: errors.labels(kind) for kind in ERROR_KINDS}
        self._denials = Counter("bastion_denials", "Requests the policy denied, by the rule "
                                "that decided.",
                                ("rule",), registry=r)
        self._denial_children: dict[str, Any] = {}
        self._findings = Counter("bastion_scan_findings",
                                 "Scanner findings on the requests' targets and results.",
                                 ("surface", "action", "severity", "code"), registry=r)
        self._finding_children: dict[tuple[str, str, str, str], Any] = {}
        blocks = Counter("bastion_scan_blocks", "Requests or results the scanner blocked.",
                         ("surface",), registry=r)
        self._blocks = {surface: blocks.labels(surface) for surface in ("definition", "result")}
        approvals = Counter("bastion_approvals", "Approval requests by event.", ("event",),
                            registry=r)
        self._approvals = {event: approvals.labels(event) for event in APPROVAL_EVENTS}
        refusals = Counter("bastion_auth_refusals", "HTTP requests refused for their "
                           "credentials, by reason.", ("reason",), registry=r)
        self._refusals = {reason: refusals.labels(reason) for reason in AUTH_REASONS}
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._distinct = 0
        r.register(_StateCollector(self))

    # -- the hot path -----------------------------------------------------------------------

    def observe(self, outcome: Outcome) -> None:
        """Count one finished request (the `Observer` protocol; never raises)."""
        try:
            call = outcome.call
            key = (outcome.upstream or "", call.request.method, outcome.target or "unknown")
            series = self._series.get(key)
            if series is None:
                series = self._bind(key)
            series.duration.observe(outcome.elapsed)
            status = outcome.status
            series.counter(status).inc()
            if status == "error" or status == "denied" or status == "tool_error":
                self._count_error(outcome, status)
            notes = call.notes
            if notes:
                self._count_scan(notes)
        except Exception:  # an observer must never fail the request it measures
            logger.exception("metrics: could not count a request")

    def _bind(self, key: tuple[str, str, str]) -> _Series:
        """The series of a key seen for the first time: its labels bounded (see module doc)."""
        upstream, method, tool = key
        if method not in METHODS:
            method = "other"
        if not isinstance(tool, str) or len(tool) > MAX_LABEL:
            tool = "other"
        if not isinstance(upstream, str) or len(upstream) > MAX_LABEL:
            upstream = "other"
        labels = (upstream, method, tool)
        series = self._series.get(labels)
        if series is None:
            if self._distinct >= self.config.max_series:
                labels = (upstream, method, "other")
                series = self._series.get(labels)
            if series is None:
                series = _Series(self._requests, self._duration, labels)
                self._distinct += 1
                self._series[labels] = series
        if len(self._series) < self.config.max_series * _ALIAS_FACTOR:
            self._series[key] = series
        return series

    def _count_error(self, outcome: Outcome, status: str) -> None:
        if status == "tool_error":
            self._errors["tool_error"].inc()
            return
        code = outcome.error_code
        kind = ERROR_KINDS_BY_CODE.get(code, "other") if code is not None else "other"
        if isinstance(outcome.error, asyncio.CancelledError):  # the client went away
            kind = "cancelled"
        elif kind == "internal":
            data = getattr(outcome.error, "data", None)
            if isinstance(data, dict):
                kind = UPSTREAM_KINDS.get(data.get("kind"), "internal")  # type: ignore[arg-type]
        self._errors[kind].inc()
        # A denied target the principal may not see is answered as unknown (-32602): the
        # policy's decision, not the code, says it was a denial.
        if outcome.refused_by_policy:
            self._count_denial(str(outcome.rule or "default"))

    def _count_denial(self, rule: str) -> None:
        child = self._denial_children.get(rule)
        if child is None:
            if len(self._denial_children) >= MAX_RULES or len(rule) > MAX_LABEL:
                rule = "other"
            child = self._denial_children.get(rule)
            if child is None:
                child = self._denial_children[rule] = self._denials.labels(rule)
        child.inc()

    def _count_scan(self, notes: Mapping[str, Any]) -> None:
        for note, surface in (("scan", "definition"), ("scan_result", "result")):
            verdict = notes.get(note)
            if not isinstance(verdict, dict):
                continue
            action = str(verdict.get("action", "unknown"))
            severity = str(verdict.get("severity", "unknown"))
            for code in verdict.get("codes", ()):
                self._finding(surface, action, severity, str(code)).inc()
            if action == "block":
                self._blocks[surface].inc()

    def _finding(self, surface: str, action: str, severity: str, code: str) -> Any:
        key = (surface, action, severity, code)
        child = self._finding_children.get(key)
        if child is None:
            if len(self._finding_children) >= MAX_FINDINGS or max(map(len, key)) > MAX_LABEL:
                key = (surface, "other", "other", "other")
            child = self._finding_children.get(key)
            if child is None:
                child = self._finding_children[key] = self._findings.labels(*key)
        return child

    # -- events from elsewhere ----------------------------------------------------------------

    def approval_event(self, event: str) -> None:
        """An approval was opened, approved, denied, expired or withdrawn (the
        `ApprovalService(on_event=...)` listener); other strings are ignored."""
        child = self._approvals.get(event)
        if child is not None:
            child.inc()

    def auth_refused(self, reason: str | None) -> None:
        """An HTTP request was refused for its credentials; `reason` is the `AuthChallenge`'s
        RFC 6750 error (None: no credential at all)."""
        self._refusals.get(reason or "missing", self._refusals["other"]).inc()

    # -- scraping ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Upstream health and the audit queue depth, read when scraped."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        yield from self._upstream_metrics()
        depth = self._metrics.audit_queue_depth
        if depth is not None:
            try:
                value = float(depth())
            except Exception:  # a scrape must not fail for one broken source
                logger.exception("metrics: could not read the audit queue depth")
            else:
                yield GaugeMetricFamily("bastion_audit_queue_depth",
                                        "Audit records waiting to be written.", value=value)

    def _upstream_metrics(self) -> Iterator[Metric]:
        source = self._metrics.upstreams
        if source is None:
            return
        try:
            healths = list(source())
        except Exception:
            logger.exception("metrics: could not read the upstreams' health")
            return
        up = GaugeMetricFamily("bastion_upstream_up", "1 when the upstream is connected.",
                               labels=("upstream",))
        restarts = CounterMetricFamily("bastion_upstream_restarts",
                                       "Connection attempts after the first one.",
                                       labels=("upstream",))
        breaker = GaugeMetricFamily("bastion_upstream_breaker_state",
                                    "1 for the circuit breaker's current state.",
                                    labels=("upstream", "state"))
        in_flight = GaugeMetricFamily("bastion_upstream_in_flight",
                                      "Calls waiting on the upstream.", labels=("upstream",))
        latency = GaugeMetricFamily("bastion_upstream_probe_latency_seconds",
                                    "Smoothed (EWMA) round trip of the health probe.",
                                    labels=("upstream",))
        error_rate = GaugeMetricFamily("bastion_upstream_probe_error_ratio",
                                       "Failed share of the recent health probes.",
                                       labels=("upstream",))
        for health in healths:
            name = str(health.get("name", ""))[:MAX_LABEL]
            up.add_metric((name,), 1.0 if health.get("state") == "up" else 0.0)
            restarts.add_metric((name,), float(health.get("restarts") or 0))
            current = health.get("breaker")
            for state in ("closed", "open", "half_open"):
                breaker.add_metric((name, state), 1.0 if current == state else 0.0)
            in_flight.add_metric((name,), float(health.get("in_flight") or 0))
            ewma = health.get("latency_ewma_ms")
            if isinstance(ewma, int | float):
                latency.add_metric((name,), ewma / 1000)
            rate = health.get("error_rate")
            if isinstance(rate, int | float):
                error_rate.add_metric((name,), float(rate))
        yield from (up, restarts, breaker, in_flight, latency, error_rate)


__all__ = [
    "APPROVAL_EVENTS",
    "AUTH_REASONS",
    "CONTENT_TYPE",
    "ERROR_KINDS",
    "LATENCY_BUCKETS",
    "METHODS",
    "GatewayMetrics",
    "UpstreamHealth",
]
