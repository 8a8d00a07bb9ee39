"""Where anomaly alerts go: the log, the audit record, a signed webhook to a real local HTTP
receiver (JSON and Slack), the bounded queue, failing and hanging sinks (issue 9)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from typing import Any

import orjson
import pytest

from bastion.config.anomaly import AnomalyConfig
from bastion.guard.approval import SIGNATURE_HEADER
from bastion.telemetry.alerts import Alert, LogSink, WebhookSink, audit_record
from bastion.telemetry.anomaly import AnomalyDetector, anomaly_detector
from tests.approval.test_webhook import Receiver, receiver  # noqa: F401 (a fixture)
from tests.policy.support import person
from tests.telemetry.test_anomaly_rules import (
    ALICE,
    ALL_OFF,
    ISOLATE,
    SECRET_ARG,
    Clock,
    Collect,
    config,
    outcome,
)

SECRET = "alert-secret-0123456789"
DENIALS = {"denials": {"count": 3, "within": 60}}


def hooked(port: int, **webhook: Any) -> AnomalyConfig:
    return config(**DENIALS, webhook={"url": f"http://127.0.0.1:{port}/hook",
                                      "timeout": 2, **webhook})


def refuse(found: AnomalyDetector, principal: Any = ALICE, times: int = 3) -> None:
    for _ in range(times):
        found.observe(outcome(principal, ISOLATE, denied=True))


async def test_webhook_json_is_signed_and_carries_no_argument(
        receiver: tuple[Receiver, int]) -> None:  # noqa: F811
    state, port = receiver
    found = AnomalyDetector(hooked(port, secret=SECRET), clock=Clock())
    await found.start()
    refuse(found)
    headers, body = await asyncio.wait_for(state.received.get(), 5)
    await found.aclose()
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    assert headers["user-agent"] == "bastion-alerts"
    payload = orjson.loads(body)
    assert payload["event"] == "anomaly.detected"
    alert = payload["alert"]
    assert alert["rule"] == "denials" and alert["severity"] == "medium"
    assert alert["principal"]["sub"] == "alice" and alert["agent"] == "agent-1"
    assert alert["tool"] is None and alert["counts"] == {"count": 3, "threshold": 3,
                                                         "window_seconds": 60}
    assert alert["time"] == "2026-11-18T09:00:00Z" and alert["id"].startswith("alr_")
    assert SECRET_ARG not in body.decode() and SECRET not in body.decode()
    assert found.delivered == 1 and found.fired["denials"] == 1


async def test_webhook_slack_shape_escapes_what_callers_choose(
        receiver: tuple[Receiver, int]) -> None:  # noqa: F811
    state, port = receiver
    found = AnomalyDetector(hooked(port, format="slack"), clock=Clock())
    await found.start()
    refuse(found, person("<!channel> <https://evil.example|click>", client="<@U1>"))
    headers, body = await asyncio.wait_for(state.received.get(), 5)
    await found.aclose()
    assert SIGNATURE_HEADER.lower() not in headers
    payload = orjson.loads(body)
    assert set(payload) == {"text", "blocks"}
    shown = body.decode()
    assert "<!channel>" not in shown and "<https://evil" not in shown and "<@U1>" not in shown
    assert "&lt;!channel&gt;" in payload["text"] and "denials" in payload["text"]


async def test_webhook_failures_are_logged_without_secrets_and_never_raised(
        receiver: tuple[Receiver, int],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    state, port = receiver
    state.status = 500
    found = AnomalyDetector(hooked(port, secret=SECRET), clock=Clock())
    await found.start()
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        refuse(found)
        await asyncio.wait_for(state.received.get(), 5)
        await found.aclose()
    assert "alert webhook to 127.0.0.1 answered 500" in caplog.text
    assert SECRET not in caplog.text and "/hook" not in caplog.text  # the path is a credential
    assert "anomaly denials (medium): alice (agent agent-1) was refused 3 times" in caplog.text


async def test_unreachable_webhook_does_not_hold_up_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    records: list[dict[str, Any]] = []

    async def audit(record: dict[str, Any]) -> bool:
        records.append(record)
        return True

    found = AnomalyDetector(hooked(port), clock=Clock())
    found.audit_sink = audit
    await found.start()
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        refuse(found)
        await asyncio.wait_for(found.aclose(), 5)
    assert "alert webhook to 127.0.0.1 failed" in caplog.text
    assert [record["event"] for record in records] == ["alert"]


async def test_audit_record_shape() -> None:
    records: list[dict[str, Any]] = []

    async def audit(record: dict[str, Any]) -> None:
        records.append(record)

    found = AnomalyDetector(config(**DENIALS), clock=Clock(), sinks=[])
    found.audit_sink = audit
    await found.start()
    refuse(found)
    await found.aclose()
    [record] = records
    assert set(record) == {"v", "event", "time", "severity", "alert", "principal"}
    assert record["v"] == 1 and record["event"] == "alert" and record["severity"] == "medium"
    assert record["time"] == Clock().now and record["principal"] == ALICE.for_audit()
    assert "principal" not in record["alert"] and record["alert"]["rule"] == "denials"
    orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # what the audit log stores


async def test_failing_and_hanging_sinks_are_contained(
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def deliver(self, alert: Alert) -> None:
            raise RuntimeError("sink bug")

        async def aclose(self) -> None:
            return None

    class Hangs(Broken):
        async def deliver(self, alert: Alert) -> None:
            await asyncio.sleep(3600)

    kept = Collect()
    found = AnomalyDetector(config(**DENIALS), clock=Clock(), sinks=[Broken(), kept])
    await found.start()
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        refuse(found)
        await found.aclose()
    assert len(kept.alerts) == 1 and "an alert sink failed" in caplog.text

    stuck = AnomalyDetector(config(**DENIALS), clock=Clock(), sinks=[Hangs()])
    await stuck.start()
    refuse(stuck)
    began = time.monotonic()
    await stuck.aclose(timeout=0.3)
    assert time.monotonic() - began < 2


async def test_queue_is_bounded_and_drops_are_counted() -> None:
    found = AnomalyDetector(config(**DENIALS, queue=2), clock=Clock(), sinks=[])
    for index in range(5):  # not started: nothing drains the queue
        refuse(found, person(f"user-{index}"))
    assert found.pending == 2 and found.dropped == 3 and found.fired["denials"] == 5
    kept = Collect()
    found.sinks.append(kept)
    await found.start()
    await found.aclose()  # what is queued is delivered on the way out
    assert [alert.principal["sub"] for alert in kept.alerts if alert.principal] == [
        "user-0", "user-1"]


async def test_log_sink_writes_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    alert = Alert(id="alr_x", rule="rate", severity="high", summary="bob made 400 requests",
                  time=0.0)
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        await LogSink().deliver(alert)
    assert caplog.records[-1].name == "bastion.alerts"
    assert caplog.records[-1].getMessage() == ("anomaly rate (high): bob made 400 requests "
                                               "[alert alr_x]")


def test_bodies_without_a_principal() -> None:
    alert = Alert(id="alr_y", rule="findings", severity="high", summary="4 findings",
                  time=0.0, upstream="siem")
    sink = WebhookSink(AnomalyConfig.model_validate(
        {"webhook": {"url": "https://hooks.example/x", "format": "slack"}}).webhook)
    assert b"*Who:* -" in sink.body(alert)
    assert audit_record(alert)["principal"] is None


def test_the_default_sinks_follow_the_configuration() -> None:
    plain = anomaly_detector(AnomalyConfig())
    assert plain is not None and [type(s).__name__ for s in plain.sinks] == ["LogSink"]
    hooked_up = anomaly_detector(AnomalyConfig.model_validate(
        {**ALL_OFF, "webhook": {"url": "https://hooks.example/x"}}))
    assert hooked_up is not None
    assert [type(s).__name__ for s in hooked_up.sinks] == ["LogSink", "WebhookSink"]
