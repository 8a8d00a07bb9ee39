"""The anomaly rules on scripted traffic with an injected clock: each rule fires on its
scenario, stays quiet on normal traffic, and a burst gives one alert (issue 9)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bastion.config.anomaly import AnomalyConfig
from bastion.gateway.catalog import Catalog
from bastion.guard.outcome import Outcome
from bastion.guard.pipeline import Call
from bastion.guard.policy import Decision, PolicyDenied, Target
from bastion.protocol.principal import Principal
from bastion.protocol.versions import LATEST_MODERN, Era
from bastion.session.server_side import ServerRequest
from bastion.telemetry.alerts import Alert
from bastion.telemetry.anomaly import AnomalyDetector, anomaly_detector
from tests.policy.support import person

ALICE = person("alice", "analyst", client="agent-1")
BOB = person("bob", "responder", client="agent-2")
ONCALL = person("olga", "on-call", client="agent-3")

def _catalog() -> Catalog:
    """What the gateway's calls point at: entries of a real catalogue."""
    catalog = Catalog(["siem", "edr", "files"])
    catalog.update("siem", "siem__", tools=[{"name": "search", "inputSchema": {
        "type": "object"}, "annotations": {"readOnlyHint": True}}])
    catalog.update("edr", "edr__", tools=[{"name": "isolate_host", "inputSchema": {
        "type": "object"}, "annotations": {"destructiveHint": True}}])
    catalog.update("files", "files__", resources=[{"uri": "file:///var/log/big.log",
                                                   "name": "big"}])
    return catalog


CATALOG = _catalog()
SEARCH = CATALOG.tool("siem__search")
ISOLATE = CATALOG.tool("edr__isolate_host")
LOG = CATALOG.resource("file:///var/log/big.log")
#: Wednesday 18 November 2026, 10:00 in Paris: working time.
WEDNESDAY_10 = datetime(2026, 11, 18, 10, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
SECRET_ARG = "ghp_" + "a1B2c3D4" * 5
#: Every rule off; a test turns on the one it checks.
ALL_OFF = {name: {"enabled": False} for name in
           ("rate", "denials", "findings", "first_use", "off_hours", "result_volume")}


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = WEDNESDAY_10) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Collect:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def deliver(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def aclose(self) -> None:
        return None


def config(**rules: Any) -> AnomalyConfig:
    """Only the named rules on (with their settings), everything else off."""
    fields: dict[str, Any] = {name: dict(block) for name, block in ALL_OFF.items()}
    for name, block in rules.items():
        if name in fields:
            fields[name] = {"enabled": True, **block}
        else:
            fields[name] = block
    return AnomalyConfig.model_validate(fields)


def detector(clock: Clock, **rules: Any) -> AnomalyDetector:
    return AnomalyDetector(config(**rules), clock=clock, sinks=[])


def outcome(principal: Principal | None = ALICE, target: Any = SEARCH, *,
            method: str = "tools/call", denied: bool = False, result_bytes: int | None = None,
            notes: dict[str, Any] | None = None, now: float = WEDNESDAY_10) -> Outcome:
    params: dict[str, Any] = {"name": target.key, "arguments": {"token": SECRET_ARG}} \
        if target is not None else {}
    request = ServerRequest(Era.MODERN, LATEST_MODERN, method, params, {}, None, None,
                            None)  # type: ignore[arg-type]
    call = Call(request, principal=principal, target=target, notes=notes or {})
    if denied:
        aimed = Target(target.kind, target.key, target.upstream, target.definition)
        decision = Decision(False, True, "deny", "default", "no rule allows it", aimed, "v1")
        return Outcome(call, now, 0.001, error=PolicyDenied(method, decision))
    return Outcome(call, now, 0.002, result={"content": []}, result_bytes=result_bytes)


def queued(found: AnomalyDetector) -> list[Alert]:
    """The alerts waiting for delivery, taken off the queue."""
    alerts = []
    while found.pending:
        alerts.append(found._queue.get_nowait())
    return alerts


def steady(found: AnomalyDetector, clock: Clock, per_minute: int, minutes: int,
           make: Any = None) -> None:
    for _ in range(minutes * per_minute):
        found.observe(make() if make is not None else outcome())
        clock.advance(60 / per_minute)


# -- rate ---------------------------------------------------------------------------------


def test_rate_steady_traffic_for_an_hour_is_quiet() -> None:
    clock = Clock()
    found = detector(clock, rate={})
    steady(found, clock, 5, 60)
    steady(found, clock, 5, 60, lambda: outcome(BOB))
    assert queued(found) == [] and found.fired["rate"] == 0


def test_rate_a_new_principal_below_the_cap_is_not_judged_without_history() -> None:
    clock = Clock()
    found = detector(clock, rate={})
    for _ in range(250):  # bursty, but under max_per_window and with no baseline yet
        found.observe(outcome())
    assert queued(found) == []


def test_rate_fires_against_the_principals_own_baseline() -> None:
    clock = Clock()
    found = detector(clock, rate={"min_requests": 20, "warmup_windows": 5})
    steady(found, clock, 10, 6)          # baseline 10 per minute: threshold 50
    for _ in range(120):                  # then 120 within one minute
        found.observe(outcome())
        clock.advance(0.4)
    steady(found, clock, 10, 3, lambda: outcome(BOB))  # someone else: not this principal
    alerts = queued(found)
    assert len(alerts) == 1, [a.summary for a in alerts]
    alert = alerts[0]
    assert alert.rule == "rate" and alert.severity == "medium"
    assert alert.counts["threshold"] == 50.0 and alert.counts["baseline"] == 10.0
    assert alert.counts["count"] == 51 and alert.principal == ALICE.for_audit()
    assert alert.agent == "agent-1"
    assert "alice (agent agent-1) made 51 requests within 60 s" in alert.summary
    assert SECRET_ARG not in repr(alert)


def test_rate_cap_fires_without_history() -> None:
    clock = Clock()
    found = detector(clock, rate={"max_per_window": 100})
    for _ in range(400):  # "one agent making hundreds of requests"
        found.observe(outcome())
    alerts = queued(found)
    assert [a.rule for a in alerts] == ["rate"]
    assert alerts[0].counts == {"count": 101, "threshold": 100.0, "window_seconds": 60}
    assert "more than 100 requests within 60 s" in alerts[0].summary


def test_rate_a_flood_is_not_learnt_at_once() -> None:
    clock = Clock()
    found = detector(clock, rate={"min_requests": 20, "cooldown": 60})
    steady(found, clock, 10, 6)
    for _ in range(3):  # three flooded minutes in a row: each one is still an anomaly
        for _ in range(200):
            found.observe(outcome())
            clock.advance(0.25)
        clock.advance(10)
    assert len(queued(found)) == 3


# -- denials --------------------------------------------------------------------------------


def test_denials_burst_fires_once() -> None:
    clock = Clock()
    found = detector(clock, denials={"count": 10, "within": "60s"})
    for _ in range(50):
        found.observe(outcome(ALICE, ISOLATE, denied=True))
        clock.advance(1)
    alerts = queued(found)
    assert len(alerts) == 1
    assert alerts[0].rule == "denials" and alerts[0].counts["count"] == 10
    assert alerts[0].summary == "alice (agent agent-1) was refused 10 times within 60 s"
    assert found.suppressed == 40


def test_denials_spread_out_or_of_others_are_quiet() -> None:
    clock = Clock()
    found = detector(clock, denials={"count": 10, "within": 60})
    for index in range(30):  # one refusal a minute, and allowed calls in between
        found.observe(outcome(denied=True))
        found.observe(outcome())
        found.observe(outcome([ALICE, BOB, ONCALL][index % 3], denied=True))
        clock.advance(60)
    assert queued(found) == []


# -- findings ----------------------------------------------------------------------------------


def _flagged(principal: Principal = ALICE, target: Any = SEARCH) -> Outcome:
    return outcome(principal, target, notes={
        "scan_result": {"action": "annotate", "codes": ["E-RS"]}})


def test_findings_burst_per_principal_fires() -> None:
    clock = Clock()
    found = detector(clock, findings={"count": 5, "within": "10m"})
    for _ in range(3):
        found.observe(outcome(notes={"scan": {"action": "warn", "codes": ["E-TP01", "W-TF"]}}))
        clock.advance(30)
    alerts = queued(found)
    assert len(alerts) == 1 and alerts[0].rule == "findings"
    assert alerts[0].severity == "high" and alerts[0].counts["count"] == 6
    assert alerts[0].upstream == "siem"


def test_findings_per_upstream_count_everyones_calls() -> None:
    clock = Clock()
    found = detector(clock, findings={"count": 4, "within": 600, "per": "upstream"})
    for principal in (ALICE, BOB, ONCALL, ALICE):
        found.observe(_flagged(principal))
        clock.advance(60)
    alerts = queued(found)
    assert len(alerts) == 1
    assert alerts[0].upstream == "siem" and alerts[0].principal is None
    assert alerts[0].summary == "4 scanner findings on upstream siem within 600 s"


def test_findings_now_and_then_are_quiet() -> None:
    clock = Clock()
    found = detector(clock, findings={})
    for _ in range(24):  # two findings an hour, for half a day
        found.observe(_flagged())
        steady(found, clock, 2, 30)
    assert queued(found) == []


# -- first use ----------------------------------------------------------------------------


def test_first_use_fires_once_per_principal_and_tool() -> None:
    clock = Clock()
    found = detector(clock, first_use={})
    for _ in range(5):
        found.observe(outcome(ALICE, SEARCH))
        found.observe(outcome(ALICE, ISOLATE, denied=True))  # refused: not a use
        found.observe(outcome(ALICE, None, method="tools/list"))
    found.observe(outcome(BOB, SEARCH))
    found.observe(outcome(ALICE, ISOLATE))
    alerts = queued(found)
    assert [(a.principal["sub"], a.tool) for a in alerts if a.principal] == [
        ("alice", "siem__search"), ("bob", "siem__search"), ("alice", "edr__isolate_host")]
    assert alerts[0].severity == "low" and alerts[0].upstream == "siem"
    assert alerts[0].summary == "alice (agent agent-1) called the tool siem__search for " \
                                "the first time"


def test_first_use_learns_quietly_after_start() -> None:
    clock = Clock()
    found = detector(clock, first_use={"learning_seconds": 3600})
    steady(found, clock, 5, 59, lambda: outcome(ALICE, SEARCH))
    found.observe(outcome(BOB, SEARCH))
    assert queued(found) == []
    clock.advance(61)  # learning is over: known pairs stay quiet, a new one fires
    found.observe(outcome(ALICE, SEARCH))
    found.observe(outcome(ALICE, ISOLATE))
    assert [a.tool for a in queued(found)] == ["edr__isolate_host"]


def test_first_use_memory_is_bounded() -> None:
    clock = Clock()
    found = detector(clock, first_use={"max_pairs": 2})
    for principal in (ALICE, BOB, ONCALL):
        found.observe(outcome(principal, SEARCH))
    clock.advance(600)  # past the cooldown: alice was forgotten, so it fires again
    found.observe(outcome(ALICE, SEARCH))
    assert [a.principal["sub"] for a in queued(found) if a.principal] == [
        "alice", "bob", "olga", "alice"]
    rule = next(rule for rule in found.rules if rule.name == "first_use")
    assert len(rule.pairs) == 2


# -- off hours ----------------------------------------------------------------------------

OFFICE = {"hours": "08:00-19:00", "days": ["mon", "tue", "wed", "thu", "fri"],
          "timezone": "Europe/Paris", "exempt_roles": ["on-call"]}


def test_off_hours_business_hours_are_quiet() -> None:
    clock = Clock(datetime(2026, 11, 16, 8, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp())
    found = detector(clock, off_hours=OFFICE)
    for _day in range(5):  # Monday to Friday, 08:00 to 19:00
        steady(found, clock, 1, 11 * 60)
        clock.advance(13 * 3600)
    assert queued(found) == [] and found.fired["off_hours"] == 0


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 18, 23, 30),   # Wednesday night
    datetime(2026, 11, 18, 7, 59),    # just before opening
    datetime(2026, 11, 18, 19, 0),    # closing time is exclusive
    datetime(2026, 11, 21, 11, 0),    # Saturday
])
def test_off_hours_fires_outside_working_hours(when: datetime) -> None:
    clock = Clock(when.replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp())
    found = detector(clock, off_hours=OFFICE)
    for _ in range(20):
        found.observe(outcome())
        found.observe(outcome(ONCALL))  # exempt role
    alerts = queued(found)
    assert len(alerts) == 1 and alerts[0].rule == "off_hours"
    assert alerts[0].principal == ALICE.for_audit()
    assert when.strftime("%a %H:%M") in alerts[0].summary
    assert "outside working hours (mon,tue,wed,thu,fri 08:00-19:00 Europe/Paris)" \
        in alerts[0].summary


def test_off_hours_is_off_by_default() -> None:
    assert not AnomalyConfig().off_hours.enabled
    clock = Clock(datetime(2026, 11, 21, 3, 0, tzinfo=ZoneInfo("UTC")).timestamp())
    found = AnomalyDetector(AnomalyConfig(), clock=clock, sinks=[])
    assert "off_hours" not in found.fired


# -- result volume ------------------------------------------------------------------------


def test_result_volume_usual_sizes_are_quiet() -> None:
    clock = Clock()
    found = detector(clock, result_volume={})
    for index in range(500):
        found.observe(outcome(result_bytes=2000 + (index * 37) % 3000))
        found.observe(outcome(BOB, ISOLATE, result_bytes=40_000 + index % 9000))
        clock.advance(5)
    assert queued(found) == []


def test_result_volume_fires_above_the_tools_baseline() -> None:
    clock = Clock()
    found = detector(clock, result_volume={"warmup": 20, "factor": 10, "min_bytes": 10_000})
    for index in range(30):
        found.observe(outcome(result_bytes=2000 + index))
    found.observe(outcome(result_bytes=25_000))  # above 10 x ~2 KB
    found.observe(outcome(BOB, ISOLATE, result_bytes=25_000))  # another tool: no history
    alerts = queued(found)
    assert len(alerts) == 1 and alerts[0].rule == "result_volume"
    assert alerts[0].tool == "siem__search" and alerts[0].counts["bytes"] == 25_000
    assert 20_000 <= alerts[0].counts["threshold"] <= 20_300
    assert "the tool siem__search returned 25000 bytes to alice" in alerts[0].summary


def test_result_volume_absolute_limit_needs_no_history() -> None:
    clock = Clock()
    found = detector(clock, result_volume={"max_bytes": 1_000_000})
    found.observe(outcome(result_bytes=1_000_001))
    found.observe(outcome(result_bytes=5_000_000, denied=True))  # no result: not counted
    found.observe(outcome(BOB, LOG, method="resources/read", result_bytes=2_000_000))
    alerts = queued(found)
    assert len(alerts) == 2
    assert alerts[0].counts == {"bytes": 1_000_001, "threshold": 1_000_000}
    assert alerts[1].summary == ("the resource file:///var/log/big.log returned 2000000 bytes "
                                 "to bob (agent agent-2), above the limit of 1000000")


# -- dedup, robustness, cost -----------------------------------------------------------------


def test_cooldown_holds_back_repeats_and_counts_them() -> None:
    clock = Clock()
    found = detector(clock, cooldown="5m", denials={"count": 3, "within": 60})
    for _ in range(20):
        found.observe(outcome(denied=True))
        clock.advance(1)
    clock.advance(300)
    for _ in range(3):
        found.observe(outcome(denied=True))
    alerts = queued(found)
    assert len(alerts) == 2
    assert alerts[0].suppressed == 0 and alerts[1].suppressed == 17
    found.observe(outcome(BOB, denied=True))  # another principal has its own cooldown
    for _ in range(2):
        found.observe(outcome(BOB, denied=True))
    assert [a.principal["sub"] for a in queued(found) if a.principal] == ["bob"]


def test_observe_never_raises_on_bad_input() -> None:
    clock = Clock()
    found = detector(clock, rate={}, denials={}, findings={}, first_use={},
                     off_hours=OFFICE, result_volume={})
    weird = outcome(notes={"scan": "not a judgement", "scan_result": {"codes": "E-RS"}},
                    result_bytes=10)
    found.observe(weird)  # odd notes count as one finding each
    broken = outcome()
    broken.call.principal = "not a principal"  # type: ignore[assignment]
    found.observe(broken)
    assert found.errors == 1
    found.observe(outcome(None))  # anonymous
    assert found.errors == 1


def test_disabled_section_builds_no_detector() -> None:
    assert anomaly_detector(AnomalyConfig(enabled=False)) is None
    built = anomaly_detector(AnomalyConfig())
    assert built is not None
    assert sorted(built.fired) == ["denials", "findings", "first_use", "rate", "result_volume"]


def test_observe_costs_a_few_microseconds() -> None:
    clock = Clock()
    found = detector(clock, rate={}, denials={}, findings={}, first_use={},
                     off_hours=OFFICE, result_volume={})
    principals = [person(f"user-{n}", "analyst", client="agent") for n in range(200)]
    samples = [outcome(principals[n % 200], SEARCH if n % 2 else ISOLATE, result_bytes=3000,
                       denied=n % 50 == 0) for n in range(2000)]
    for sample in samples:  # warm the tables
        found.observe(sample)
    rounds = 20_000
    began = time.perf_counter()
    for n in range(rounds):
        clock.now += 0.01
        found.observe(samples[n % 2000])
    per_call = (time.perf_counter() - began) / rounds * 1e6
    print(f"\nAnomalyDetector.observe: {per_call:.2f} µs per call, all rules on")
    assert per_call < 50, per_call  # a few µs on a laptop; generous for a loaded CI
