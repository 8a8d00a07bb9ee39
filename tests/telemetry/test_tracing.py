"""`bastion.telemetry.tracing` and `.otlp`: the W3C trace context read from `_meta` and
headers (and malformed values ignored), spans and their attributes, sampling, `NO_TRACING`,
the configuration, export to a real OTLP/HTTP collector, and the error without the SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from typing import Any

import pytest
import uvicorn
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.config import BastionConfig
from bastion.config.tracing import TracingConfig
from bastion.gateway.catalog import Entry
from bastion.guard.outcome import Outcome
from bastion.guard.pipeline import Call
from bastion.protocol.errors import InvalidParams, MCPError
from bastion.protocol.principal import Principal
from bastion.protocol.versions import LATEST_MODERN, Era
from bastion.session.context import IncomingRequest
from bastion.session.server_side import ServerRequest
from bastion.telemetry.otlp import OtlpSink, TracingUnavailable
from bastion.telemetry.tracing import (
    NO_TRACING,
    GatewayTracer,
    build_tracer,
    current_ids,
    extract,
    parse_traceparent,
)
from tests.live_server import start_uvicorn, stop_uvicorn

pytestmark = pytest.mark.timeout(30)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
ISOLATE = Entry("tool", "edr__isolate_host", "edr", "isolate_host",
                {"name": "edr__isolate_host"})
AGENT = Principal(subject="alice", issuer="https://idp.example", method="jwt",
                  client_id="soc-agent")


def make_call(params: dict[str, Any] | None = None, *, method: str = "tools/call",
              headers: dict[str, str] | None = None, request_id: int | str = 7,
              target: Any = None, principal: Any = None) -> Call:
    """A `Call` as the gateway builds it (a real ServerRequest and IncomingRequest)."""
    params = {"name": "edr__isolate_host", "arguments": {"host": "ws-17"}} if params is None \
        else params
    incoming = IncomingRequest(None, request_id, method, params)  # type: ignore[arg-type]
    request = ServerRequest(Era.MODERN, LATEST_MODERN, method, params, {}, None, None,
                            incoming, headers=headers)
    return Call(request, headers, principal, target)


@pytest.fixture
def memory() -> Any:
    exporter = InMemorySpanExporter()
    tracer = GatewayTracer(TracingConfig(enabled=True), exporter=exporter)

    def spans() -> list[Any]:
        assert tracer.force_flush()
        return list(exporter.get_finished_spans())

    yield tracer, spans


# -- the W3C trace context -------------------------------------------------------------------

def test_spec_tp_traceparent_parses_the_w3c_example() -> None:
    assert parse_traceparent(TRACEPARENT) == (int(TRACE, 16), int(PARENT, 16), 1)
    # A later version may append fields; version 00 may not.
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-00-extra") == (int(TRACE, 16),
                                                                 int(PARENT, 16), 0)


@pytest.mark.parametrize("bad", [
    None, 42, ["x"], "", "garbage",
    f"ff-{TRACE}-{PARENT}-01",                    # version ff is invalid
    f"00-{'0' * 32}-{PARENT}-01",                 # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",                  # all-zero parent id
    f"00-{TRACE.upper()}-{PARENT}-01",            # upper-case hex
    f"00-{TRACE[:-1]}g-{PARENT}-01",              # not hex
    f"00-{TRACE}-{PARENT}-01-extra",              # version 00 has exactly four fields
    f"00-{TRACE}-{PARENT}-1",                     # short flags
    f" 00-{TRACE}-{PARENT}-01",                   # leading space
    f"00-{TRACE}-{PARENT}-01\n",                  # trailing newline
    f"01-{TRACE}-{PARENT}-01-" + "x" * 300,       # longer than any sane traceparent
])
def test_spec_tp_malformed_traceparent_is_ignored(bad: Any) -> None:
    assert parse_traceparent(bad) is None
    assert extract({"traceparent": bad}) is None


def test_meta_wins_over_headers_and_bad_meta_falls_back_to_headers() -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-00"
    parent = extract({"traceparent": TRACEPARENT, "tracestate": "v=1"},
                     {"traceparent": other, "tracestate": "h=2"})
    assert parent is not None and parent.trace_id == int(TRACE, 16)
    assert parent.tracestate == "v=1"
    parent = extract({"traceparent": "junk"}, {"traceparent": other, "tracestate": "h=2"})
    assert parent is not None and parent.trace_id == int("1" * 32, 16) and parent.flags == 0
    assert parent.tracestate == "h=2"
    assert extract(None, None) is None and extract("not a dict", {}) is None


@pytest.mark.parametrize("field,limit", [("tracestate", 512), ("baggage", 8192)])
def test_oversized_or_binary_tracestate_and_baggage_are_dropped(field: str, limit: int) -> None:
    for bad in ("x" * (limit + 1), "a=\x00b", "a=\nb", "é=1", 5):
        parent = extract({"traceparent": TRACEPARENT, field: bad})
        assert parent is not None and getattr(parent, field) is None
    parent = extract({"traceparent": TRACEPARENT, field: "k=" + "v" * (limit - 2)})
    assert parent is not None and getattr(parent, field) == "k=" + "v" * (limit - 2)


# -- spans -----------------------------------------------------------------------------------------

def test_spec_tp_call_span_continues_the_callers_trace(memory: Any) -> None:
    tracer, spans = memory
    call = make_call({"name": "edr__isolate_host", "arguments": {"host": "ws-17"},
                      "_meta": {"traceparent": TRACEPARENT, "tracestate": "vendor=abc",
                                "baggage": "tenant=acme"}},
                     target=ISOLATE, principal=AGENT)
    with tracer.call_span(call) as span:
        trace_id, span_id = current_ids()
        assert trace_id == TRACE and span_id == f"{span.span_id:016x}"
        params: dict[str, Any] = {"name": "isolate_host", "_meta": {"keep": "me"}}
        with tracer.upstream_span("edr", "tools/call", params, target="isolate_host") as hop:
            assert current_ids() == (TRACE, f"{hop.span_id:016x}")
        span.finish(Outcome(call, 0.0, 0.01, result={"content": []}))
    assert current_ids() == (None, None)
    # The upstream's `_meta`: this hop's span as parent, the caller's state and baggage.
    meta = params["_meta"]
    assert meta["traceparent"] == f"00-{TRACE}-{hop.span_id:016x}-01"
    assert meta["tracestate"] == "vendor=abc" and meta["baggage"] == "tenant=acme"
    assert meta["keep"] == "me"
    hop_span, server = spans()
    assert server.kind is SpanKind.SERVER and hop_span.kind is SpanKind.CLIENT
    assert server.name == "tools/call edr__isolate_host"
    assert server.parent.span_id == int(PARENT, 16) and server.parent.is_remote
    assert hop_span.parent.span_id == server.context.span_id
    assert {s.context.trace_id for s in (server, hop_span)} == {int(TRACE, 16)}
    assert server.status.status_code is StatusCode.UNSET
    attributes = dict(server.attributes)
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "edr__isolate_host"
    assert attributes["jsonrpc.request.id"] == "7"
    assert attributes["bastion.upstream"] == "edr"
    assert attributes["bastion.client_id"] == "soc-agent"
    assert attributes["bastion.outcome"] == "ok"
    # No argument value, no subject reaches a span.
    assert "ws-17" not in repr(attributes) and "alice" not in repr(attributes)
    assert server.resource.attributes["service.name"] == "bastion"


def test_no_parent_starts_a_new_trace(memory: Any) -> None:
    tracer, spans = memory
    with tracer.call_span(make_call()) as span:
        carrier: dict[str, Any] = {"traceparent": TRACEPARENT, "baggage": "stale=1"}
        tracer.inject(carrier)
    assert carrier["traceparent"] == f"00-{span.trace_id:032x}-{span.span_id:016x}-01"
    assert "baggage" not in carrier  # the caller sent none: nothing stale passes on
    (server,) = spans()
    assert server.parent is None and f"{server.context.trace_id:032x}" != TRACE


def test_malformed_traceparent_in_meta_starts_a_new_trace(memory: Any) -> None:
    tracer, spans = memory
    params = {"name": "x", "_meta": {"traceparent": f"00-{'0' * 32}-{PARENT}-01"}}
    with tracer.call_span(make_call(params)):
        pass
    (server,) = spans()
    assert server.parent is None and server.context.trace_id != 0


def test_http_header_parent_is_used_without_meta(memory: Any) -> None:
    tracer, spans = memory
    with tracer.call_span(make_call(headers={"traceparent": TRACEPARENT})):
        pass
    (server,) = spans()
    assert server.parent.span_id == int(PARENT, 16)


@pytest.mark.parametrize("error,code,outcome", [
    (MCPError("denied by policy", code=-32003), "-32003", "denied"),
    (InvalidParams("unknown tool"), "-32602", "error"),
])
def test_spec_tp_refusals_and_errors_mark_the_span(memory: Any, error: MCPError, code: str,
                                                   outcome: str) -> None:
    tracer, spans = memory
    call = make_call(target=ISOLATE)
    call.notes["policy"] = type("Decision", (), {"rule": "deny-isolate"})()
    with tracer.call_span(call) as span:
        span.finish(Outcome(call, 0.0, 0.0, error=error))
    (server,) = spans()
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["error.type"] == code
    assert server.attributes["rpc.response.status_code"] == code
    assert server.attributes["bastion.outcome"] == outcome
    assert server.attributes["bastion.policy.rule"] == "deny-isolate"
    # The error's message (which may quote arguments) is not exported.
    assert str(error) not in repr(server.to_json())


def test_tool_error_and_exceptions_mark_the_spans(memory: Any) -> None:
    tracer, spans = memory
    call = make_call(target=ISOLATE)
    with pytest.raises(RuntimeError), tracer.call_span(call):
        with tracer.upstream_span("edr", "tools/call") as hop:
            hop.set_result({"isError": True, "content": []})
        raise RuntimeError("secret-looking detail")
    hop_span, server = spans()
    assert hop_span.attributes["error.type"] == "tool_error"
    assert server.attributes["error.type"] == "RuntimeError"
    assert server.status.status_code is StatusCode.ERROR
    assert "secret-looking detail" not in repr(server.to_json())


def test_resource_uri_attribute_drops_the_query(memory: Any) -> None:
    tracer, spans = memory
    uri = "file:///logs/app.log?token=abc123#frag"
    with tracer.call_span(make_call({"uri": uri}, method="resources/read")):
        pass
    (server,) = spans()
    assert server.attributes["mcp.resource.uri"] == "file:///logs/app.log"
    assert server.name == "resources/read"


def test_attributes_are_bounded(memory: Any) -> None:
    tracer, spans = memory
    huge = "t" * 10_000
    with tracer.call_span(make_call({"name": huge}, request_id="r" * 500)):
        pass
    (server,) = spans()
    assert len(server.attributes["gen_ai.tool.name"]) == 256
    assert len(server.attributes["jsonrpc.request.id"]) == 64
    assert server.name == "tools/call"  # an unknown name never becomes a span name


def test_guard_spans_only_when_configured() -> None:
    exporter = InMemorySpanExporter()
    tracer = GatewayTracer(TracingConfig(enabled=True, guard_spans=True), exporter=exporter)
    with tracer.call_span(make_call()) as span, tracer.guard_span("request") as guard:
        assert guard.parent_id == span.span_id
    assert tracer.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["guard request", "tools/call"]
    plain = GatewayTracer(TracingConfig(enabled=True))
    assert plain.guard_span() is NO_TRACING.guard_span()


@pytest.mark.parametrize("ratio,parent_flags,exported", [
    (0.0, None, False), (1.0, None, True),      # new traces: by the ratio
    (0.0, "01", True), (1.0, "00", False),      # a caller's flag decides for its trace
])
def test_sampling_is_parent_based(ratio: float, parent_flags: str | None,
                                  exported: bool) -> None:
    exporter = InMemorySpanExporter()
    tracer = GatewayTracer(TracingConfig(enabled=True, sample_ratio=ratio), exporter=exporter)
    meta = {} if parent_flags is None else {"traceparent": f"00-{TRACE}-{PARENT}-{parent_flags}"}
    params: dict[str, Any] = {}
    with tracer.call_span(make_call({"name": "x", "_meta": meta})), \
            tracer.upstream_span("u", "tools/call", params):
        pass
    assert tracer.force_flush()
    assert bool(exporter.get_finished_spans()) is exported
    # Unsampled or not, the context travels on, with the flag saying which.
    assert params["_meta"]["traceparent"].endswith("-01" if exported else "-00")


def test_baggage_is_not_forwarded_when_switched_off() -> None:
    tracer = GatewayTracer(TracingConfig(enabled=True, propagate_baggage=False))
    params: dict[str, Any] = {}
    meta = {"traceparent": TRACEPARENT, "baggage": "user=alice"}
    with tracer.call_span(make_call({"name": "x", "_meta": meta})), \
            tracer.upstream_span("u", "tools/call", params):
        pass
    assert "baggage" not in params["_meta"]


async def test_spans_follow_asyncio_tasks(memory: Any) -> None:
    tracer, spans = memory

    async def hop(name: str) -> str:
        with tracer.upstream_span(name, "tools/call"):
            await asyncio.sleep(0)
            return current_ids()[1] or ""

    with tracer.call_span(make_call()) as span:
        ids = await asyncio.gather(hop("a"), hop("b"))
    assert len(set(ids)) == 2
    exported = spans()
    assert {s.parent.span_id for s in exported if s.kind is SpanKind.CLIENT} == {span.span_id}


def test_no_tracing_does_nothing() -> None:
    call = make_call({"name": "x", "_meta": {"traceparent": TRACEPARENT}})
    params: dict[str, Any] = {"_meta": {"traceparent": TRACEPARENT}}
    with NO_TRACING.call_span(call) as span:
        with NO_TRACING.upstream_span("u", "tools/call", params) as hop:
            hop.set_result({"isError": True})
        NO_TRACING.inject(params)
        span.finish(Outcome(call, 0.0, 0.0, result={}))
        assert NO_TRACING.current_ids() == (None, None) == current_ids()
    assert params == {"_meta": {"traceparent": TRACEPARENT}}  # passed on untouched
    assert build_tracer(TracingConfig()) is NO_TRACING
    assert NO_TRACING.force_flush() is True


def test_tracer_as_observer_finishes_only_its_own_call(memory: Any) -> None:
    tracer, spans = memory
    call, other = make_call(target=ISOLATE), make_call()
    with tracer.call_span(call):
        tracer.observe(Outcome(other, 0.0, 0.0, error=MCPError("x", code=-32003)))
        tracer.observe(Outcome(call, 0.0, 0.0, result={"isError": True}))
    tracer.observe(Outcome(call, 0.0, 0.0, result={}))  # outside any span: ignored
    (server,) = spans()
    assert server.attributes["bastion.outcome"] == "tool_error"
    assert server.name == "tools/call edr__isolate_host"


# -- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", [
    "ftp://collector/v1/traces", "collector:4318", "http://", "http://u:p@collector/v1/traces",
    "http://collector:99999/v1/traces",
])
def test_bad_otlp_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="otlp_endpoint"):
        TracingConfig(enabled=True, otlp_endpoint=endpoint)


def test_config_section_and_secret_headers() -> None:
    config = BastionConfig.model_validate({
        "mcpServers": {},
        "tracing": {"enabled": True, "otlp_endpoint": "https://otel.example/v1/traces",
                    "headers": {"x-api-key": "canary-otlp-key-7f3a"}, "sample_ratio": 0.5},
        "logging": {"format": "json", "level": "debug"},
    })
    assert config.tracing.export_headers() == {"x-api-key": "canary-otlp-key-7f3a"}
    assert "canary-otlp-key-7f3a" not in repr(config.tracing)
    assert "canary-otlp-key-7f3a" not in str(config.tracing.model_dump())
    for bad in ({"sample_ratio": 1.5}, {"headers": {"bad name": "v"}},
                {"headers": {"x": "a\r\nb"}}, {"headers": {"Content-Type": "text/plain"}},
                {"exporter": "zipkin"}, {"timeout": 0}):
        with pytest.raises(ValidationError):
            TracingConfig.model_validate({"enabled": True, **bad})
    # Enabled without an endpoint: spans and propagation, no exporter.
    tracer = GatewayTracer(TracingConfig(enabled=True))
    assert tracer.sink is None and tracer.force_flush() and tracer.dropped == 0


def test_otlp_export_needs_no_sdk_and_an_sdk_exporter_names_the_extra() -> None:
    # A real interpreter in which `opentelemetry` cannot be imported.
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "import bastion.telemetry.otlp as otlp\n"
            "import bastion.telemetry.tracing as t\n"
            "from bastion.config.tracing import TracingConfig\n"
            "config = TracingConfig(enabled=True, otlp_endpoint='http://127.0.0.1:9/v')\n"
            "assert type(t.build_tracer(config).sink).__name__ == 'OtlpSink'\n"
            "try:\n    t.GatewayTracer(config, exporter=object())\n"
            "except otlp.TracingUnavailable as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20, check=True)
    assert "pip install 'bastion[otel]'" in done.stdout, done.stderr
    assert issubclass(TracingUnavailable, RuntimeError)


# -- export over OTLP/HTTP ---------------------------------------------------------------------

def _as_protobuf(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """OTLP/JSON parsed by the official schema (its ids are hex, protobuf JSON's base64)."""
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(document, ExportTraceServiceRequest())


async def test_spans_reach_a_real_otlp_collector() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def traces(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    task, port = await start_uvicorn(server)
    try:
        tracer = GatewayTracer(TracingConfig(
            enabled=True, otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces",
            service_name="bastion-test", headers={"x-api-key": "k-123"}, timeout=5))
        call = make_call({"name": "x", "_meta": {"traceparent": TRACEPARENT,
                                                 "tracestate": "soc=1"}},
                         target=ISOLATE, principal=AGENT)
        with tracer.call_span(call) as span:
            with tracer.upstream_span("edr", "tools/call", target="isolate_host"):
                pass
            span.finish(Outcome(call, 0.0, 0.0, error=MCPError("no", code=-32003)))
        await tracer.aclose()
        assert tracer.sink is not None and tracer.sink.exported == 2
    finally:
        await stop_uvicorn(server, task)
    (headers, body), = received
    assert headers["x-api-key"] == "k-123"
    assert headers["content-type"] == "application/json"
    export = _as_protobuf(json.loads(body))
    resource_spans = export.resource_spans[0]
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "bastion-test"
    spans = {s.name: s for s in resource_spans.scope_spans[0].spans}
    assert set(spans) == {"tools/call isolate_host", "tools/call edr__isolate_host"}
    assert all(s.trace_id.hex() == TRACE for s in spans.values())
    server_span, hop = spans["tools/call edr__isolate_host"], spans["tools/call isolate_host"]
    assert server_span.parent_span_id.hex() == PARENT and hop.parent_span_id == server_span.span_id
    assert server_span.kind == 2 and hop.kind == 3  # SERVER, CLIENT
    assert server_span.status.code == 2 and server_span.trace_state == "soc=1"
    attributes = {a.key: a.value.string_value for a in server_span.attributes}
    assert attributes["error.type"] == "-32003" and attributes["bastion.client_id"] == "soc-agent"


async def test_a_collector_that_is_down_costs_no_request(caplog: Any) -> None:
    tracer = GatewayTracer(TracingConfig(
        enabled=True, otlp_endpoint="http://127.0.0.1:9/v1/traces", timeout=1,
        headers={"authorization": "Bearer canary-otlp-token-11"}))
    with tracer.call_span(make_call()):
        pass
    await tracer.aclose()  # the failed export is logged, not raised
    assert "exporting 1 spans" in caplog.text
    assert "canary-otlp-token-11" not in caplog.text
    with tracer.call_span(make_call()):  # after closing: dropped, counted
        pass
    assert tracer.dropped == 1


async def test_the_export_queue_is_bounded() -> None:
    config = TracingConfig(enabled=True, otlp_endpoint="http://127.0.0.1:9/v1/traces",
                           timeout=1)
    tracer = GatewayTracer(config)
    tracer.sink = OtlpSink(config, max_queue=3, delay=60)
    for _ in range(5):
        with tracer.call_span(make_call()):
            pass
    assert tracer.dropped == 2
    await tracer.aclose()
