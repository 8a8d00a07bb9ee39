"""Anomaly rules: unusual traffic, seen in the gateway's finished requests, raised as alerts.

`AnomalyDetector` is an `Observer` (`bastion.guard.outcome`): the gateway hands it every
`Outcome`, and its rules judge them (`anomalies:` in the configuration, see
`bastion.config.anomaly`):

- `rate`: requests per principal per window against the principal's own baseline, an
  exponential moving average of its *active* windows (an idle night does not make the next
  morning look like a flood; `min_requests` keeps small numbers quiet), once `warmup_windows`
  are behind it; and `max_per_window`, which needs no history. A flooded window teaches the
  baseline at most its threshold, so a sustained flood is not learnt at once;
- `denials`: refusals (status `denied`) by one principal, `count` within `within` seconds;
- `findings`: scanner findings (the codes in `call.notes["scan"]` and `["scan_result"]`) on
  the calls of one principal, or of one upstream;
- `first_use`: a principal's first call of a tool. Remembered in memory only: a restart
  forgets, so `learning_seconds` after start learn without alerting;
- `off_hours`: requests outside working hours (local time), unless the principal holds an
  exempt role;
- `result_volume`: a tool's result above `max_bytes`, or above `factor` x that tool's usual
  size (moving average) once `warmup` results are behind it.

`observe()` is synchronous, O(1) and cheap (a few microseconds): no I/O, every table bounded
(oldest forgotten first). An alert fires once per cooldown for the same rule and principal
(or tool, or upstream); what the cooldown holds back is counted into the next alert. Alerts
wait in a bounded queue (dropped and counted when it is full) for the background task
(`start()` / `aclose()`) that hands them to the sinks (`bastion.telemetry.alerts`).
State is per process: with several replicas each judges the traffic it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.config.anomaly import (
    AnomalyConfig,
    BurstConfig,
    FindingsConfig,
    FirstUseConfig,
    OffHoursConfig,
    RateConfig,
    ResultVolumeConfig,
)
from bastion.guard.outcome import Outcome
from bastion.guard.policy.rules import TimeWindow
from bastion.telemetry.alerts import (
    Alert,
    AlertSink,
    AuditWriter,
    LogSink,
    WebhookSink,
    audit_record,
)
from bastion.transport.http.h1client import HTTPClient

logger = logging.getLogger("bastion.alerts")
Clock = Callable[[], float]
#: The key of requests nobody authenticated (they share one baseline).
ANONYMOUS = "\x00anonymous"
#: Seconds a delivery to all sinks may take beyond the webhook's own timeout.
_DELIVERY_MARGIN = 5.0
#: Statuses whose result the client got (its size is the tool's).
_RESULT_STATUSES = frozenset({"ok", "tool_error"})


@dataclass(slots=True)
class Finding:
    """What a rule saw: the alert to raise, before the cooldown decides whether it goes out."""

    #: What the cooldown is kept per (with the rule's name).
    about: tuple[str, ...]
    summary: str
    counts: dict[str, float | int]
    tool: str | None = None
    upstream: str | None = None
    #: False when the alert is about an upstream, not about who called.
    principal_wide: bool = True


class Rule:
    """One anomaly rule; `check` sees every request and answers a `Finding` or None."""

    name = ""

    def __init__(self, config: Any, section: AnomalyConfig) -> None:
        self.severity = config.severity
        self.cooldown = section.cooldown_of(config)
        self.max_keys = section.max_keys

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        raise NotImplementedError

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> Any:
        if len(table) >= self.max_keys:
            del table[next(iter(table))]  # the oldest entry: dicts keep insertion order
        table[key] = value
        return value


class _RateState:
    __slots__ = ("alerted", "baseline", "count", "limit", "window", "windows")

    def __init__(self, window: int, limit: float) -> None:
        self.window = window
        self.count = 0
        self.baseline = 0.0
        self.windows = 0
        self.limit = limit
        self.alerted = False


class RateCheck(Rule):
    name = "rate"

    def __init__(self, config: RateConfig, section: AnomalyConfig) -> None:
        super().__init__(config, section)
        self.config = config
        self.cap = float(config.max_per_window) if config.max_per_window else math.inf
        self.states: dict[str, _RateState] = {}

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        window = int(now // self.config.window)
        state = self.states.get(key)
        if state is None:
            state = self._remember(self.states, key, _RateState(window, self.cap))
        elif state.window != window:
            self._fold(state)
            state.window, state.count, state.alerted = window, 0, False
        state.count += 1
        if state.alerted or state.count <= state.limit:
            return None
        state.alerted = True
        config = self.config
        counts: dict[str, float | int] = {
            "count": state.count, "threshold": round(state.limit, 1),
            "window_seconds": config.window}
        if state.limit < self.cap:
            counts["baseline"] = round(state.baseline, 1)
            summary = (f"{who(outcome)} made {state.count} requests within {config.window} s, "
                       f"above its threshold of {state.limit:.0f} (usually "
                       f"{state.baseline:.1f} per active window)")
        else:
            summary = (f"{who(outcome)} made more than {state.limit:.0f} requests within "
                       f"{config.window} s")
        return Finding((key,), summary, counts)

    def _fold(self, state: _RateState) -> None:
        config = self.config
        seen = min(float(state.count), state.limit)
        if state.windows == 0:
            state.baseline = seen
        else:
            state.baseline += config.smoothing * (seen - state.baseline)
        state.windows += 1
        if state.windows >= config.warmup_windows:
            state.limit = min(self.cap, max(float(config.min_requests),
                                            config.factor * state.baseline))


class _Burst:
    """Events within a sliding time span, bounded to `threshold` + 1 entries."""

    __slots__ = ("events", "total")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, now: float, amount: int, within: int, threshold: int) -> int:
        events = self.events
        events.append((now, amount))
        self.total += amount
        cutoff = now - within
        while events and events[0][0] <= cutoff:
            self.total -= events.popleft()[1]
        # Each entry counts at least 1, so the newest `threshold` already reach it.
        while len(events) > threshold:
            self.total -= events.popleft()[1]
        return self.total


class BurstCheck(Rule):
    """`count` events within `within` seconds per key; `amount` says how many a request is."""

    def __init__(self, config: BurstConfig, section: AnomalyConfig) -> None:
        super().__init__(config, section)
        self.config = config
        self.bursts: dict[str, _Burst] = {}

    def add(self, now: float, key: str, amount: int) -> int | None:
        """The events within the span when they reach the threshold; None below it."""
        burst = self.bursts.get(key)
        if burst is None:
            burst = self._remember(self.bursts, key, _Burst())
        total = burst.add(now, amount, self.config.within, self.config.count)
        return total if total >= self.config.count else None

    def counts(self, total: int) -> dict[str, float | int]:
        return {"count": total, "threshold": self.config.count,
                "window_seconds": self.config.within}


class DenialsCheck(BurstCheck):
    name = "denials"

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        if status != "denied":
            return None
        total = self.add(now, key, 1)
        if total is None:
            return None
        return Finding((key,), f"{who(outcome)} was refused {total} times within "
                       f"{self.config.within} s", self.counts(total))


class FindingsCheck(BurstCheck):
    name = "findings"
    config: FindingsConfig

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        found = scan_findings(outcome.call.notes)
        if not found:
            return None
        upstream = outcome.upstream
        if self.config.per == "upstream":
            if upstream is None:
                return None
            total = self.add(now, upstream, found)
            if total is None:
                return None
            return Finding((upstream,), f"{total} scanner findings on upstream "
                           f"{shown(upstream)} within {self.config.within} s",
                           self.counts(total), upstream=upstream, principal_wide=False)
        total = self.add(now, key, found)
        if total is None:
            return None
        return Finding((key,), f"{total} scanner findings on the requests of {who(outcome)} "
                       f"within {self.config.within} s", self.counts(total),
                       upstream=upstream)


def scan_findings(notes: dict[str, Any]) -> int:
    """How many scanner findings the scan stage noted on a call (request and result)."""
    found = 0
    for name in ("scan", "scan_result"):
        judgement = notes.get(name)
        if judgement is not None:
            codes = judgement.get("codes") if isinstance(judgement, dict) else None
            found += len(codes) if isinstance(codes, list) and codes else 1
    return found


class FirstUseCheck(Rule):
    name = "first_use"

    def __init__(self, config: FirstUseConfig, section: AnomalyConfig, started: float) -> None:
        super().__init__(config, section)
        self.max_pairs = config.max_pairs
        self.learn_until = started + config.learning_seconds
        self.pairs: OrderedDict[tuple[str, str], None] = OrderedDict()

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        # A refused call did not use the tool; `denials` watches those.
        if status == "denied" or outcome.call.request.method != "tools/call":
            return None
        tool = outcome.target
        if tool is None:
            return None
        pair = (key, tool)
        pairs = self.pairs
        if pair in pairs:
            pairs.move_to_end(pair)
            return None
        if len(pairs) >= self.max_pairs:
            pairs.popitem(last=False)
        pairs[pair] = None
        if now < self.learn_until:
            return None
        return Finding(pair, f"{who(outcome)} called the tool {shown(tool)} for the first time",
                       {"known_pairs": len(pairs)}, tool=tool, upstream=outcome.upstream)


class OffHoursCheck(Rule):
    name = "off_hours"

    def __init__(self, config: OffHoursConfig, section: AnomalyConfig) -> None:
        super().__init__(config, section)
        self.window = TimeWindow(config.working_hours())
        self.exempt = frozenset(config.exempt_roles)
        # Whether it is working time changes at most once a minute: judged once per minute.
        self._minute = -1
        self._inside = True

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        minute = int(now // 60)
        if minute != self._minute:
            self._inside = self.window.contains(datetime.fromtimestamp(now, UTC))
            self._minute = minute
        if self._inside:
            return None
        principal = outcome.call.principal
        if principal is not None and not self.exempt.isdisjoint(principal.roles):
            return None
        local = datetime.fromtimestamp(now, self.window.zone).strftime("%a %H:%M")
        what = outcome.target or outcome.call.request.method
        return Finding((key,), f"{who(outcome)} sent a request ({shown(what)}) at {local}, "
                       f"outside working hours ({self.window.text})", {},
                       tool=outcome.target, upstream=outcome.upstream)


class ResultVolumeCheck(Rule):
    name = "result_volume"

    def __init__(self, config: ResultVolumeConfig, section: AnomalyConfig) -> None:
        super().__init__(config, section)
        self.config = config
        #: tool -> [average size, results seen]
        self.tools: dict[str, list[float]] = {}

    def check(self, now: float, key: str, outcome: Outcome, status: str) -> Finding | None:
        size = outcome.result_bytes
        if size is None or status not in _RESULT_STATUSES:
            return None
        tool = outcome.target
        if tool is None:
            return None
        config = self.config
        usual = self.tools.get(tool)
        if usual is None:
            usual = self._remember(self.tools, tool, [float(size), 0.0])
        average, seen = usual
        limit = float(config.max_bytes)
        if seen >= config.warmup:
            limit = min(limit, max(float(config.min_bytes), config.factor * average))
        usual[0] = average + config.smoothing * (min(float(size), limit) - average)
        usual[1] = seen + 1
        if size <= limit:
            return None
        counts: dict[str, float | int] = {"bytes": size, "threshold": int(limit)}
        what = f"the {getattr(outcome.call.target, 'kind', 'tool')} {shown(tool)}"
        if limit < config.max_bytes:
            counts["baseline"] = int(average)
            summary = (f"{what} returned {size} bytes to {who(outcome)}, above {int(limit)} "
                       f"({config.factor:g} x its usual {int(average)})")
        else:
            summary = (f"{what} returned {size} bytes to {who(outcome)}, above the limit "
                       f"of {config.max_bytes}")
        return Finding((tool, key), summary, counts, tool=tool, upstream=outcome.upstream)


def who(outcome: Outcome) -> str:
    """The principal of an outcome as alert summaries name it."""
    principal = outcome.call.principal
    if principal is None or not principal.authenticated:
        return "an anonymous caller"
    agent = f" (agent {shown(principal.client_id)})" if principal.client_id else ""
    return f"{shown(principal.subject)}{agent}"


def shown(text: str, limit: int = 128) -> str:
    """`text` fit for a one-line summary: bounded, without control characters."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else "?" for char in text)


class AnomalyDetector:
    """The anomaly rules over every finished request (see the module doc)."""

    def __init__(self, config: AnomalyConfig, *, clock: Clock = time.time,
                 sinks: Sequence[AlertSink] | None = None,
                 http: HTTPClient | None = None) -> None:
        self.config = config
        self.clock = clock
        self.sinks: list[AlertSink] = (list(sinks) if sinks is not None
                                       else default_sinks(config, http))
        #: Where audit records of alerts go (`async def (record) -> None`); set by the gateway.
        self.audit_sink: AuditWriter | None = None
        rules: list[Rule] = []
        if config.rate.enabled:
            rules.append(RateCheck(config.rate, config))
        if config.denials.enabled:
            rules.append(DenialsCheck(config.denials, config))
        if config.findings.enabled:
            rules.append(FindingsCheck(config.findings, config))
        if config.first_use.enabled:
            rules.append(FirstUseCheck(config.first_use, config, clock()))
        if config.off_hours.enabled:
            rules.append(OffHoursCheck(config.off_hours, config))
        if config.result_volume.enabled:
            rules.append(ResultVolumeCheck(config.result_volume, config))
        self.rules = tuple(rules)
        #: Alerts raised per rule, held back by a cooldown, dropped for a full queue; rule
        #: failures (a bug: logged once).
        self.fired: dict[str, int] = {rule.name: 0 for rule in rules}
        self.suppressed = 0
        self.dropped = 0
        self.delivered = 0
        self.errors = 0
        #: (rule, *about) -> [when it last fired, how many it held back since]
        self._last: dict[tuple[str, ...], list[float]] = {}
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=config.queue)
        self._task: asyncio.Task[None] | None = None
        timeout = config.webhook.timeout if config.webhook is not None else 0.0
        self._delivery_timeout = timeout + _DELIVERY_MARGIN

    # -- the call path ---------------------------------------------------------------------

    def observe(self, outcome: Outcome) -> None:
        """Judge one finished request. Never raises, never waits."""
        try:
            now = self.clock()
            principal = outcome.call.principal
            key = principal.binding if principal is not None else ANONYMOUS
            status = outcome.status
            for rule in self.rules:
                found = rule.check(now, key, outcome, status)
                if found is not None:
                    self._raise(rule, found, now, outcome)
        except Exception:  # an observer must not fail the request it watches
            self.errors += 1
            if self.errors == 1:
                logger.exception("the anomaly rules failed on a request (reported once)")

    def _raise(self, rule: Rule, found: Finding, now: float, outcome: Outcome) -> None:
        about = (rule.name, *found.about)
        last = self._last.get(about)
        if last is not None and now - last[0] < rule.cooldown:
            last[1] += 1
            self.suppressed += 1
            return
        if last is None and len(self._last) >= rule.max_keys:
            del self._last[next(iter(self._last))]
        self._last[about] = [now, 0]
        principal = outcome.call.principal if found.principal_wide else None
        alert = Alert(
            id="alr_" + secrets.token_urlsafe(12), rule=rule.name, severity=rule.severity,
            summary=found.summary, time=now,
            principal=principal.for_audit() if principal is not None else None,
            agent=principal.client_id if principal is not None else None,
            upstream=found.upstream, tool=found.tool, counts=found.counts,
            suppressed=int(last[1]) if last is not None else 0)
        self.fired[rule.name] += 1
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1

    # -- delivery --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Alerts waiting for delivery."""
        return self._queue.qsize()

    async def start(self) -> None:
        """Start the background task that delivers alerts."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._deliver_all(), name="bastion-anomaly-alerts")

    async def aclose(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (for at most `timeout` seconds), then stop."""
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sink in self.sinks:
            await sink.aclose()

    async def _deliver_all(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self.deliver(alert)
            finally:
                self._queue.task_done()

    async def deliver(self, alert: Alert) -> None:
        """Hand `alert` to every sink at once; bounded, and never raises."""
        jobs = [sink.deliver(alert) for sink in self.sinks]
        if self.audit_sink is not None:
            jobs.append(self.audit_sink(audit_record(alert)))
        try:
            results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True),
                                             self._delivery_timeout)
        except TimeoutError:
            logger.warning("delivering alert %s took longer than %.0f s; gave up", alert.id,
                           self._delivery_timeout)
            return
        for result in results:
            if isinstance(result, Exception):
                logger.warning("an alert sink failed for alert %s: %s", alert.id,
                               type(result).__name__)
        self.delivered += 1


def default_sinks(config: AnomalyConfig, http: HTTPClient | None = None) -> list[AlertSink]:
    """The log, and the webhook when one is configured."""
    sinks: list[AlertSink] = [LogSink()]
    if config.webhook is not None:
        sinks.append(WebhookSink(config.webhook, http=http))
    return sinks


def anomaly_detector(config: AnomalyConfig, *, clock: Clock = time.time,
                     http: HTTPClient | None = None) -> AnomalyDetector | None:
    """The detector the configuration asks for; None when `anomalies.enabled` is false."""
    return AnomalyDetector(config, clock=clock, http=http) if config.enabled else None
