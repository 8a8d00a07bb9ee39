"""`UpstreamProber` against real stdio upstreams (the demo SIEM, a raw server we freeze with
SIGSTOP, one that dies at once), and `/healthz` `/readyz` served by a real HTTP server, open
and behind a real identity provider."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bastion.config import UpstreamConfig
from bastion.config.metrics import HealthConfig, MetricsConfig
from bastion.gateway.health import (
    UpstreamProber,
    ViewerCheck,
    health_routes,
    observability_routes,
    readiness,
    scrub,
)
from bastion.gateway.resilience import Backoff
from bastion.gateway.upstream import Upstream
from bastion.session.client_side import ClientHandlers
from bastion.telemetry.metrics import GatewayMetrics
from tests.identity.conftest import Idp, idp  # noqa: F401  (a real identity provider)
from tests.live_server import stop_uvicorn
from tests.telemetry.test_metrics import idp_authenticator, parse, serve_routes, value

pytestmark = pytest.mark.timeout(40)

PEERS = Path(__file__).parent.parent / "gateway" / "peers"
SIEM = ["-m", "bastion.testing.soc", "siem"]
RAW = [str(PEERS / "raw_tools.py")]
CRASHY = [str(PEERS / "crashy.py")]


def stdio(name: str, args: list[str], **options: Any) -> UpstreamConfig:
    options.setdefault("connect_timeout", 10.0)
    return UpstreamConfig(name=name, command=sys.executable, args=args, **options)


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    """`await started(config, ...)`: a started upstream, closed at the end."""
    made: list[Upstream] = []

    async def start(*configs: UpstreamConfig) -> list[Upstream]:
        upstreams = [Upstream(c, handlers=ClientHandlers(),
                              backoff=Backoff(base=5.0, cap=5.0)) for c in configs]
        made.extend(upstreams)
        await asyncio.gather(*(u.start() for u in upstreams))
        return upstreams

    yield start
    await asyncio.gather(*(u.aclose() for u in made))


async def test_probes_measure_a_live_upstream_and_skip_one_that_is_down(started) -> None:
    siem, dead = await started(stdio("siem", SIEM), stdio("dead", CRASHY, connect_timeout=2))
    assert siem.state == "up" and dead.state == "down"
    prober = UpstreamProber([siem, dead], HealthConfig(window=4), clock=lambda: 1234.5)
    await prober.probe_all()
    await prober.probe_all()
    by_name = {item["name"]: item for item in prober.snapshot()}
    live = by_name["siem"]
    assert live["state"] == "up" and live["probes"] == 2 and live["error_rate"] == 0
    assert live["consecutive_failures"] == 0 and live["last_probe_at"] == 1234.5
    assert 0 < live["latency_ms"] < 5000 and live["latency_ewma_ms"] > 0
    assert live["era"] in ("legacy", "modern") and live["version"]
    down = by_name["dead"]
    assert down["state"] == "down" and down["probes"] == 0 and down["error_rate"] is None
    assert "exit" in (down["last_error"] or "") or "code 3" in (down["last_error"] or "")


async def test_a_frozen_upstream_fails_its_probes_and_recovers(started) -> None:
    (raw,) = await started(stdio("raw", RAW, timeout=5.0))
    prober = UpstreamProber([raw], HealthConfig(probe_timeout_seconds=0.3, window=3))
    assert await prober.probe(raw) is True
    pid = raw.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive but answering nothing: a hung server
    try:
        began = time.monotonic()
        assert await prober.probe(raw) is False
        assert time.monotonic() - began < 2.0
        assert await prober.probe(raw) is False
    finally:
        os.kill(pid, signal.SIGCONT)
    stats = prober.stats("raw")
    assert stats.consecutive_failures == 2 and stats.error_rate == pytest.approx(2 / 3, abs=1e-3)
    assert "0.3 s" in (stats.last_probe_error or "")
    await asyncio.sleep(0.1)
    assert await prober.probe(raw) is True
    assert stats.consecutive_failures == 0 and stats.last_probe_error is None
    assert stats.error_rate == pytest.approx(2 / 3, abs=1e-3)  # the window keeps the last 3 probes
    assert stats.probes == 4


async def test_an_upstream_that_dies_is_reported_down_with_its_exit(started) -> None:
    (raw,) = await started(stdio("raw", RAW))
    prober = UpstreamProber([raw], HealthConfig(probe_timeout_seconds=1))
    assert await prober.probe(raw) is True
    assert raw.pid is not None
    os.kill(raw.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while raw.state == "up" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await prober.probe_all()  # not up: not pinged
    (item,) = prober.snapshot()
    assert item["state"] == "down" and item["probes"] == 1 and item["last_error"]
    assert await prober.probe(raw) is False  # pinging it anyway fails fast
    assert "unavailable" in (prober.stats("raw").last_probe_error or "")


async def test_the_background_loop_probes_until_closed(started) -> None:
    (siem,) = await started(stdio("siem", SIEM))
    prober = UpstreamProber([siem], HealthConfig(probe_seconds=0.05))
    await prober.start()
    await prober.start()  # idempotent
    deadline = time.monotonic() + 10
    while prober.stats("siem").probes < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await prober.aclose()
    count = prober.stats("siem").probes
    assert count >= 3
    await asyncio.sleep(0.2)
    assert prober.stats("siem").probes == count
    await prober.aclose()  # twice is fine


def test_error_texts_lose_credentials_and_queries() -> None:
    text = ("cannot reach https://user:s3cret@mcp.example.com/path?token=abc&x=1 (refused); "
            "also http://tok@h:8080/?q=1#frag")
    cleaned = scrub(text)
    assert cleaned is not None
    assert "s3cret" not in cleaned and "token=abc" not in cleaned and "tok@" not in cleaned
    assert "https://mcp.example.com/path" in cleaned and "(refused)" in cleaned
    assert "frag" not in cleaned and "http://h:8080/" in cleaned
    assert scrub(None) is None
    assert len(scrub("x" * 5000) or "") == 300


def test_readiness_reasons() -> None:
    assert readiness([], None) == []
    assert readiness([{"name": "a", "state": "down"}, {"name": "b", "state": "up"}], True) == []
    reasons = readiness([{"name": "a", "state": "down"}], False)
    assert len(reasons) == 2 and "a: down" in reasons[0] and "audit" in reasons[1]


def test_health_config_rejects_bad_values() -> None:
    for bad in ({"probe_seconds": 0}, {"probe_timeout_seconds": -1}, {"window": 0},
                {"healthz_path": "healthz"}, {"readyz_path": "/r#x"}, {"extra": True}):
        with pytest.raises(ValidationError):
            HealthConfig.model_validate(bad)


# -- the routes -------------------------------------------------------------------------------


async def test_healthz_and_readyz_open_on_a_gateway_without_auth(started) -> None:
    siem, dead = await started(stdio("siem", SIEM), stdio("dead", CRASHY, connect_timeout=2))
    prober = UpstreamProber([siem, dead])
    await prober.probe_all()
    audit = [True]
    metrics = GatewayMetrics(upstreams=prober.snapshot)
    routes = observability_routes(metrics, prober, MetricsConfig(), HealthConfig(),
                                  audit_running=lambda: audit[0])
    server, task, base = await serve_routes(routes)
    try:
        async with httpx.AsyncClient() as client:
            live = await client.get(base + "/healthz")
            assert live.status_code == 200
            body = live.json()
            assert body["status"] == "ok" and body["ready"] is True
            assert {u["name"] for u in body["upstreams"]} == {"siem", "dead"}
            assert live.headers["cache-control"] == "no-store"
            ready = await client.get(base + "/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            audit[0] = False
            ready = await client.get(base + "/readyz")
            assert ready.status_code == 503
            assert ready.json()["reasons"] == ["the audit log is not running"]
            assert (await client.get(base + "/healthz")).status_code == 200  # still alive
            cross = await client.get(base + "/healthz", headers={"origin": "http://evil.test"})
            assert cross.status_code == 403  # SPEC-LOCAL-01
            scraped = parse((await client.get(base + "/metrics")).text)
            assert value(scraped, "bastion_upstream_up", upstream="siem") == 1
            assert value(scraped, "bastion_upstream_up", upstream="dead") == 0
    finally:
        await stop_uvicorn(server, task)


async def test_readyz_is_503_when_no_upstream_is_up(started) -> None:
    (dead,) = await started(stdio("dead", CRASHY, connect_timeout=2))
    prober = UpstreamProber([dead])
    routes = health_routes(prober.snapshot, HealthConfig(), ViewerCheck(None, False, [], "x"))
    server, task, base = await serve_routes(routes)
    try:
        async with httpx.AsyncClient() as client:
            ready = await client.get(base + "/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            assert "dead: down" in ready.json()["reasons"][0]
    finally:
        await stop_uvicorn(server, task)


async def test_SPEC_AUTH_health_details_only_for_a_metrics_role(
        idp: Idp, tmp_path: Path) -> None:  # noqa: F811
    authenticator = await idp_authenticator(idp, tmp_path)
    upstreams = [{"name": "siem", "state": "down",
                  "last_error": "https://u:p@siem.example/mcp?key=1 refused"}]
    routes = health_routes(lambda: upstreams, HealthConfig(),
                           ViewerCheck(authenticator, True, ["metrics", "admin"],
                                       "bastion:metrics"))
    server, task, base = await serve_routes(routes)
    try:
        async with httpx.AsyncClient() as client:
            async def get(path: str, token: str | None) -> httpx.Response:
                headers = {"authorization": f"Bearer {token}"} if token else {}
                return await client.get(base + path, headers=headers)

            probe = await get("/readyz", None)  # a probe without a credential
            assert probe.status_code == 503 and probe.json() == {"status": "not_ready",
                                                                  "ready": False}
            assert (await get("/healthz", None)).json() == {"status": "ok", "ready": False}
            assert (await get("/healthz", idp.mint(roles=["analyst"]))).status_code == 403
            assert (await get("/healthz", "garbage")).status_code == 401
            shown = await get("/healthz", idp.mint(roles=["metrics"]))
            assert shown.status_code == 200
            (item,) = shown.json()["upstreams"]
            assert item["name"] == "siem"
            assert item["last_error"] == "https://siem.example/mcp refused"
    finally:
        await stop_uvicorn(server, task)
        await authenticator.aclose()
