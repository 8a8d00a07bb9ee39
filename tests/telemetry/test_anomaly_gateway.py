"""The anomaly detector as an observer of a real gateway (HTTP, a real upstream process, the
real audit trail): alerts come from live traffic and land in the tamper-evident trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.client import connect_http
from bastion.telemetry.anomaly import AnomalyDetector
from tests.gateway.conftest import (  # noqa: F401  (gateway_http is a fixture)
    EVERYTHING,
    gateway_http,
    make_config,
    stdio_upstream,
)
from tests.gateway.test_audit_e2e import settled
from tests.telemetry.test_anomaly_rules import Collect

pytestmark = pytest.mark.timeout(60)


async def test_live_traffic_raises_alerts_into_the_audit_trail(tmp_path: Path,
                                                               gateway_http) -> None:  # noqa: F811
    # The gateway's own detector, as `anomalies:` configures it, wired to its audit trail.
    live = await gateway_http(make_config(
        {"demo": stdio_upstream(EVERYTHING)}, state_dir=str(tmp_path),
        anomalies={"rate": {"max_per_window": 5}, "result_volume": {"max_bytes": 20}}))
    detector = live.gateway.anomalies
    assert isinstance(detector, AnomalyDetector) and detector in live.gateway.observers
    kept = Collect()
    detector.sinks.append(kept)
    async with connect_http(live.url, mode="modern") as client:
        for _ in range(3):
            await client.call_tool("demo__test_simple_text", {})
        await client.list_tools()
        await client.list_tools()
        await client.call_tool("demo__test_simple_text", {})
    await detector.aclose()

    fired = sorted((alert.rule, alert.tool or "-") for alert in kept.alerts)
    assert fired == [("first_use", "demo__test_simple_text"), ("rate", "-"),
                     ("result_volume", "demo__test_simple_text")], fired
    assert all(alert.principal and alert.principal["method"] == "anonymous"
               for alert in kept.alerts)

    trail = tmp_path / "audit.sqlite3"
    found = await settled(trail, lambda rows: sum(r["event"] == "alert" for r in rows) == 3)
    alerts = [record for record in found if record["event"] == "alert"]
    assert sorted(record["alert"]["rule"] for record in alerts) == [
        "first_use", "rate", "result_volume"]
    assert {record["alert"]["id"] for record in alerts} == {a.id for a in kept.alerts}
