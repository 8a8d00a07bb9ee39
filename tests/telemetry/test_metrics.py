"""`GatewayMetrics` fed real `Outcome`s (real requests, catalogue entries, policy decisions,
gateway errors, scan verdicts, approval events), its label bounds, its cost per call, and
`/metrics` scraped over a real HTTP server, open and behind a real identity provider."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from bastion.config.auth import AuthConfig
from bastion.config.metrics import MetricsConfig
from bastion.gateway.catalog import Entry
from bastion.gateway.errors import UpstreamFailed, UpstreamTimeout, UpstreamUnavailable
from bastion.gateway.health import ViewerCheck, metrics_routes
from bastion.gateway.web import web_app
from bastion.guard.identity import Authenticator, build_authenticator
from bastion.guard.outcome import Outcome
from bastion.guard.pipeline import Call, Pipeline
from bastion.guard.policy import policy_stage
from bastion.guard.scan.findings import Finding, Severity
from bastion.guard.scan.stage import ScanBlocked, judge
from bastion.protocol.errors import InvalidParams, MCPError
from bastion.protocol.versions import LATEST_MODERN, Era
from bastion.session.server_side import ServerRequest
from bastion.telemetry.metrics import CONTENT_TYPE, GatewayMetrics
from tests.approval.support import ARGS, BOB, CAROL, ISOLATE, service
from tests.identity.conftest import RESOURCE, Idp, idp  # noqa: F401  (a real identity provider)
from tests.live_server import start_uvicorn, stop_uvicorn
from tests.policy.test_stage import call as policy_call
from tests.policy.test_stage import context

pytestmark = pytest.mark.timeout(30)

SEARCH = Entry("tool", "siem__search", "siem", "search", {"name": "siem__search"})


def request(method: str = "tools/call", params: dict[str, Any] | None = None) -> ServerRequest:
    return ServerRequest(Era.MODERN, LATEST_MODERN, method, params or {}, {}, None, None,
                         None)  # type: ignore[arg-type]


def outcome(target: Any = SEARCH, method: str = "tools/call", *, elapsed: float = 0.02,
            notes: dict[str, Any] | None = None, **fields: Any) -> Outcome:
    call = Call(request(method, {"name": getattr(target, "key", "x")}), target=target,
                notes=notes or {})
    if "result" not in fields and "error" not in fields:
        fields["result"] = {"content": []}
    return Outcome(call, time.time(), elapsed, **fields)


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, parsed back from the text format."""
    return parse(metrics.render().decode())


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def series_of(found: dict, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in found if sample == name]


def test_requests_latency_and_statuses_by_upstream_method_and_tool() -> None:
    metrics = GatewayMetrics()
    for elapsed in (0.002, 0.02, 0.2):
        metrics.observe(outcome(elapsed=elapsed))
    metrics.observe(outcome(result={"content": [], "isError": True}))
    metrics.observe(outcome(None, "tools/list", result={"tools": []}))
    found = samples(metrics)
    labels = {"upstream": "siem", "method": "tools/call", "tool": "siem__search"}
    assert value(found, "bastion_requests_total", status="ok", **labels) == 3
    assert value(found, "bastion_requests_total", status="tool_error", **labels) == 1
    assert value(found, "bastion_request_duration_seconds_count", **labels) == 4
    assert value(found, "bastion_request_duration_seconds_bucket", le="0.005", **labels) == 1
    assert value(found, "bastion_request_duration_seconds_sum", **labels) == pytest.approx(
        0.242)
    # What the gateway answers itself has no upstream and no tool.
    assert value(found, "bastion_requests_total", upstream="", method="tools/list",
                 tool="unknown", status="ok") == 1
    assert value(found, "bastion_errors_total", kind="tool_error") == 1


def test_errors_by_kind_from_real_gateway_errors() -> None:
    metrics = GatewayMetrics()
    for error in (UpstreamTimeout("siem", "tools/call", 5),
                  UpstreamUnavailable("siem", "not connected"),
                  UpstreamFailed("siem", "tools/call", "the child exited"),
                  ScanBlocked("blocked"), InvalidParams("bad"),
                  MCPError("an upstream's own error", code=-31999), RuntimeError("a bug"),
                  asyncio.CancelledError()):
        metrics.observe(outcome(error=error))
    found = samples(metrics)
    for kind in ("upstream_timeout", "upstream_unavailable", "upstream_error", "scan_blocked",
                 "invalid_params", "other", "internal", "cancelled"):
        assert value(found, "bastion_errors_total", kind=kind) == 1, kind
    assert value(found, "bastion_errors_total", kind="policy_denied") == 0
    labels = {"upstream": "siem", "method": "tools/call", "tool": "siem__search"}
    assert value(found, "bastion_requests_total", status="denied", **labels) == 1  # the scan
    assert value(found, "bastion_requests_total", status="error", **labels) == 7


async def test_denials_by_policy_rule_from_the_real_policy_stage() -> None:
    from tests.policy.support import ALICE
    from tests.policy.support import BOB as RESPONDER

    ctx = context()
    pipeline = Pipeline([policy_stage(ctx)])
    metrics = GatewayMetrics()
    cases = [(ALICE, {"name": "edr__isolate_host", "arguments": {"host": "ws-1"}}),
             (RESPONDER, {"name": "edr__isolate_host", "arguments": {"host": "prod-db"}}),
             (RESPONDER, {"name": "edr__isolate_host", "arguments": {"host": "prod-web"}})]
    for principal, params in cases:
        call = policy_call(ctx, "tools/call", params, principal)
        with pytest.raises(MCPError) as refused:
            await pipeline.check_request(call)
        metrics.observe(Outcome(call, time.time(), 0.001, error=refused.value))
    found = samples(metrics)
    assert value(found, "bastion_denials_total", rule="no-prod-hosts") == 2
    # Alice may not even see the tool: she is told it is unknown, yet it is a denial.
    assert value(found, "bastion_denials_total", rule="default") == 1
    assert value(found, "bastion_errors_total", kind="policy_denied") == 2
    assert value(found, "bastion_errors_total", kind="invalid_params") == 1
    # No argument value and no subject is ever a label.
    text = metrics.render().decode()
    assert "prod-db" not in text and "alice" not in text and "bob" not in text


def test_scan_findings_and_blocks_from_the_scan_stage_notes() -> None:
    finding = Finding("E-HU01.bidi", Severity.HIGH, "/description", "hidden text", None,
                      "tool.description")
    injected = Finding("E-RS.directive", Severity.CRITICAL, "/content/0/text", "directive",
                       None, "result")
    warn = judge([finding], {"high": "warn"}).for_audit()
    block = judge([injected], {"critical": "block"}).for_audit()
    metrics = GatewayMetrics()
    metrics.observe(outcome(notes={"scan": warn}))
    metrics.observe(outcome(notes={"scan": warn, "scan_result": block},
                            result={"content": [], "isError": True}))
    found = samples(metrics)
    assert value(found, "bastion_scan_findings_total", surface="definition", action="warn",
                 severity="high", code="E-HU01.bidi") == 2
    assert value(found, "bastion_scan_findings_total", surface="result", action="block",
                 severity="critical", code="E-RS.directive") == 1
    assert value(found, "bastion_scan_blocks_total", surface="result") == 1
    assert value(found, "bastion_scan_blocks_total", surface="definition") == 0


def test_labels_stay_bounded_whatever_the_clients_send() -> None:
    metrics = GatewayMetrics(MetricsConfig(max_series=10))
    for n in range(50):
        entry = Entry("tool", f"siem__tool{n}", "siem", f"tool{n}", {})
        metrics.observe(outcome(entry))
    for n in range(50):  # methods are the client's to choose
        metrics.observe(outcome(None, f"made/up/{n}", error=MCPError("no", code=-32601)))
    long_uri = Entry("resource", "file:///" + "a" * 500, "files", "x", {})
    metrics.observe(outcome(long_uri, "resources/read", result={"contents": []}))
    found = samples(metrics)
    series = series_of(found, "bastion_request_duration_seconds_count")
    # max_series named tools, then one "other" per (upstream, method).
    assert len(series) == 10 + 3
    tools = {labels["tool"] for labels in series}
    assert "other" in tools and "siem__tool0" in tools and "siem__tool49" not in tools
    methods = {labels["method"] for labels in series}
    assert methods <= {"tools/call", "resources/read", "other"}
    assert value(found, "bastion_errors_total", kind="method_not_found") == 50
    assert sum(v for (name, _), v in found.items() if name == "bastion_requests_total") == 101
    # The cache of aliases stays bounded too.
    assert len(metrics._series) <= 2 * 10 + 3


def test_observe_never_raises_and_bad_input_to_the_event_methods() -> None:
    metrics = GatewayMetrics()
    metrics.observe(outcome(elapsed="soon"))  # type: ignore[arg-type]
    metrics.observe(None)  # type: ignore[arg-type]
    metrics.approval_event("exploded")
    metrics.approval_event("")
    metrics.auth_refused("<script>")
    metrics.auth_refused(None)
    metrics.auth_refused("invalid_token")
    found = samples(metrics)
    assert sum(v for (name, _), v in found.items() if name == "bastion_approvals_total") == 0
    assert value(found, "bastion_auth_refusals_total", reason="other") == 1
    assert value(found, "bastion_auth_refusals_total", reason="missing") == 1
    assert value(found, "bastion_auth_refusals_total", reason="invalid_token") == 1
    assert "script" not in metrics.render().decode()


async def test_approval_events_from_a_real_approval_service(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    now = [1_000_000.0]
    approvals = service(tmp_path, on_event=metrics.approval_event, clock=lambda: now[0])
    approved = await approvals.open(BOB, ISOLATE, dict(ARGS), "v1")
    await approvals.approve(approved.id, CAROL, "ok")
    denied = await approvals.open(BOB, ISOLATE, dict(ARGS), "v1")
    await approvals.deny(denied.id, CAROL, "no")
    withdrawn = await approvals.open(BOB, ISOLATE, dict(ARGS), "v1")
    await approvals.withdraw(withdrawn.id, BOB)
    await approvals.open(BOB, ISOLATE, dict(ARGS), "v1")
    now[0] += 3600
    assert len(await approvals.expire_due()) == 2  # the approved one, unused, expires too
    found = samples(metrics)
    counts = {event: value(found, "bastion_approvals_total", event=event)
              for event in ("opened", "approved", "denied", "withdrawn", "expired")}
    assert counts == {"opened": 4, "approved": 1, "denied": 1, "withdrawn": 1, "expired": 2}


async def test_a_failing_event_listener_does_not_fail_the_approval(tmp_path: Path) -> None:
    def broken(event: str) -> None:
        raise RuntimeError("listener bug")

    approvals = service(tmp_path, on_event=broken)
    opened = await approvals.open(BOB, ISOLATE, dict(ARGS), "v1")
    assert (await approvals.approve(opened.id, CAROL)).status == "approved"


def test_upstream_health_and_audit_depth_are_read_at_scrape_time() -> None:
    healths = [{"name": "siem", "state": "up", "restarts": 2, "breaker": "closed",
                "in_flight": 1, "latency_ewma_ms": 4.0, "error_rate": 0.25},
               {"name": "edr", "state": "down", "restarts": 7, "breaker": "open",
                "in_flight": 0, "latency_ewma_ms": None, "error_rate": None}]
    depth = [3]
    metrics = GatewayMetrics(upstreams=lambda: healths, audit_queue_depth=lambda: depth[0])
    found = samples(metrics)
    assert value(found, "bastion_upstream_up", upstream="siem") == 1
    assert value(found, "bastion_upstream_up", upstream="edr") == 0
    assert value(found, "bastion_upstream_restarts_total", upstream="edr") == 7
    assert value(found, "bastion_upstream_breaker_state", upstream="edr", state="open") == 1
    assert value(found, "bastion_upstream_breaker_state", upstream="edr", state="closed") == 0
    assert value(found, "bastion_upstream_in_flight", upstream="siem") == 1
    assert value(found, "bastion_upstream_probe_latency_seconds", upstream="siem") == 0.004
    assert value(found, "bastion_upstream_probe_error_ratio", upstream="siem") == 0.25
    assert value(found, "bastion_upstream_probe_latency_seconds", upstream="edr") is None
    assert value(found, "bastion_audit_queue_depth") == 3
    depth[0] = 11
    assert value(samples(metrics), "bastion_audit_queue_depth") == 11


def test_a_broken_health_source_does_not_break_the_scrape() -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("pool gone")

    metrics = GatewayMetrics(upstreams=broken, audit_queue_depth=lambda: int("x"))
    metrics.observe(outcome())
    found = samples(metrics)
    assert value(found, "bastion_audit_queue_depth") is None
    assert series_of(found, "bastion_upstream_up") == []
    assert value(found, "bastion_requests_total", upstream="siem", method="tools/call",
                 tool="siem__search", status="ok") == 1


def test_observe_costs_a_few_microseconds() -> None:
    metrics = GatewayMetrics()
    done = outcome()
    metrics.observe(done)
    rounds = 20_000
    started = time.process_time()
    for _ in range(rounds):
        metrics.observe(done)
    per_call = (time.process_time() - started) / rounds
    assert per_call < 10e-6, f"observe() took {per_call * 1e6:.1f} µs"


# -- /metrics over HTTP -------------------------------------------------------------------------


async def serve_routes(routes: list) -> tuple[uvicorn.Server, Any, str]:
    config = uvicorn.Config(web_app(routes), host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task, port = await start_uvicorn(server)
    return server, task, f"http://127.0.0.1:{port}"


async def idp_authenticator(provider: Idp, state_dir: Path) -> Authenticator:
    """A started `auth: {mode: jwt}` authenticator trusting `provider` (close it after)."""
    auth = AuthConfig.model_validate({
        "mode": "jwt", "resource": RESOURCE, "allow_insecure_loopback": True,
        "issuers": [{"issuer": provider.issuer, "jwks_uri": provider.jwks_uri}]})
    authenticator = build_authenticator(auth, resource_url=RESOURCE, state_dir=state_dir)
    assert authenticator is not None
    await authenticator.start()
    return authenticator


async def test_metrics_route_serves_the_text_format_after_traffic() -> None:
    metrics = GatewayMetrics()
    metrics.observe(outcome())
    server, task, base = await serve_routes(
        metrics_routes(metrics, MetricsConfig(), ViewerCheck(None, False, [], "x")))
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(base + "/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"] == CONTENT_TYPE
            assert value(parse(answer.text), "bastion_requests_total", upstream="siem",
                         method="tools/call", tool="siem__search", status="ok") == 1
            # SPEC-LOCAL-01: not for a page in a browser.
            cross = await client.get(base + "/metrics", headers={"origin": "http://evil.test"})
            assert cross.status_code == 403
            assert (await client.post(base + "/metrics")).status_code == 405
    finally:
        await stop_uvicorn(server, task)


async def test_SPEC_AUTH_metrics_need_a_role_or_scope_when_the_gateway_authenticates(
        idp: Idp, tmp_path: Path) -> None:  # noqa: F811
    authenticator = await idp_authenticator(idp, tmp_path)
    config = MetricsConfig()
    metrics = GatewayMetrics(config)
    check = ViewerCheck(authenticator, config.needs_auth(True), config.roles, config.scope)
    server, task, base = await serve_routes(metrics_routes(metrics, config, check))
    try:
        async with httpx.AsyncClient() as client:
            async def scrape(token: str | None) -> int:
                headers = {"authorization": f"Bearer {token}"} if token else {}
                return (await client.get(base + "/metrics", headers=headers)).status_code

            assert await scrape(None) == 401
            assert await scrape("not-a-jwt") == 401
            assert await scrape(idp.mint(aud="https://other.example")) == 401  # SPEC-TP-01
            assert await scrape(idp.mint(roles=["analyst"])) == 403
            assert await scrape(idp.mint(roles=["metrics"])) == 200
            assert await scrape(idp.mint(roles=["admin"])) == 200
            assert await scrape(idp.mint(scope="bastion:metrics")) == 200
            twice = await client.get(base + "/metrics", headers=[
                ("authorization", "Bearer a"), ("authorization", "Bearer b")])
            assert twice.status_code == 400
    finally:
        await stop_uvicorn(server, task)
        await authenticator.aclose()


def test_require_auth_true_without_an_authenticator_fails_closed() -> None:
    with pytest.raises(ValueError, match="no authenticator"):
        ViewerCheck(None, MetricsConfig(require_auth=True).needs_auth(False), [], "x")


def test_metrics_config_rejects_bad_values() -> None:
    from pydantic import ValidationError

    for bad in ({"path": "metrics"}, {"path": "/m?x=1"}, {"max_series": 1},
                {"require_auth": "sometimes"}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            MetricsConfig.model_validate(bad)
