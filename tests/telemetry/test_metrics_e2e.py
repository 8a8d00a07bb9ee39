"""Metrics and health end to end: a real gateway (`tests/gateway/conftest.gateway_http`) with
the demo SIEM as a stdio upstream, real MCP clients, then `/metrics`, `/healthz` and
`/readyz` scraped from the gateway's own listener.

This expects the gateway's wiring (see the report of brief M): `gateway.metrics` is the
`GatewayMetrics` among `gateway.observers`, `gateway.prober` the `UpstreamProber`, the
refusal hook counts `metrics.auth_refused(refusal.error)`, and `serve.http_server` mounts
`observability_routes(...)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from bastion.client import connect_http
from bastion.protocol.errors import MCPError
from tests.gateway.conftest import gateway_http, make_config  # noqa: F401  (fixtures)
from tests.gateway.test_auth_e2e import secured
from tests.identity.conftest import Idp, idp  # noqa: F401  (a real identity provider)
from tests.telemetry.test_metrics import parse, value

pytestmark = pytest.mark.timeout(60)

SOC = [sys.executable, "-m", "bastion.testing.soc"]


def origin_of(url: str) -> str:
    return url.rsplit("/", 1)[0]


async def test_scrape_after_real_traffic(gateway_http) -> None:  # noqa: F811
    config = make_config({"siem": {"command": SOC[0], "args": [*SOC[1:], "siem"]}})
    live = await gateway_http(config)
    assert live.gateway.metrics in live.gateway.observers
    async with connect_http(live.url) as client:
        for _ in range(3):
            await client.call_tool("siem__search", {"query": "ws-017"})
        with pytest.raises(MCPError):
            await client.call_tool("siem__no_such_tool", {})
        await client.list_tools()
    await live.gateway.prober.probe_all()
    base = origin_of(live.url)
    async with httpx.AsyncClient() as http:
        answer = await http.get(base + "/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        found = parse(answer.text)
        search = {"upstream": "siem", "method": "tools/call", "tool": "siem__search"}
        assert value(found, "bastion_requests_total", status="ok", **search) == 3
        assert value(found, "bastion_request_duration_seconds_count", **search) == 3
        # The unknown name never becomes a label: it is "unknown", with no upstream.
        assert value(found, "bastion_requests_total", upstream="", method="tools/call",
                     tool="unknown", status="error") == 1
        assert "siem__no_such_tool" not in answer.text and "ws-017" not in answer.text
        assert value(found, "bastion_errors_total", kind="invalid_params") == 1
        assert value(found, "bastion_upstream_up", upstream="siem") == 1
        assert value(found, "bastion_upstream_breaker_state", upstream="siem",
                     state="closed") == 1
        assert (value(found, "bastion_upstream_probe_latency_seconds", upstream="siem")
                or 0) > 0
        health = await http.get(base + "/healthz")
        assert health.status_code == 200
        (siem,) = health.json()["upstreams"]
        assert siem["name"] == "siem" and siem["state"] == "up" and siem["probes"] >= 1
        assert (await http.get(base + "/readyz")).status_code == 200


async def test_scrapes_need_a_metrics_role_and_refusals_are_counted(
        gateway_http, idp: Idp, tmp_path: Path) -> None:  # noqa: F811
    live = await gateway_http(secured(idp, tmp_path))
    base = origin_of(live.url)
    async with httpx.AsyncClient() as http:
        refused = await http.post(live.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  headers={"accept": "application/json, text/event-stream"})
        assert refused.status_code == 401
        assert (await http.get(base + "/metrics")).status_code == 401
        analyst = {"authorization": f"Bearer {idp.mint(roles=['analyst'])}"}
        assert (await http.get(base + "/metrics", headers=analyst)).status_code == 403
        scraper = {"authorization": f"Bearer {idp.mint(roles=['metrics'])}"}
        answer = await http.get(base + "/metrics", headers=scraper)
        assert answer.status_code == 200
        assert (value(parse(answer.text), "bastion_auth_refusals_total", reason="missing")
                or 0) >= 1
        probe = await http.get(base + "/readyz")
        assert probe.status_code in (200, 503) and "upstreams" not in probe.json()
