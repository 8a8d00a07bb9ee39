"""One trace id from the caller, through the real gateway's spans, to a real upstream process
(the `_meta` echoing peer of test_tracing_upstream.py), in both eras.

The wiring this expects (bastion/gateway): `Gateway.tracer` (default `NO_TRACING`, read per
request, so a test may set it after construction); `Gateway.handle` runs in
`with self.tracer.call_span(call):` and the tracer finishes the span from the `Outcome`
(`span.finish(outcome)`, or the tracer as one of the observers); the relay's hop runs in
`with tracer.upstream_span(upstream.name, method, params, target=entry.original):` around
`upstream.request(...)`, with `params` from `_upstream_params`.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from bastion.client import connect_http
from tests.gateway.conftest import gateway_http, make_config, stdio_upstream  # noqa: F401
from tests.telemetry.test_tracing import TRACEPARENT, memory  # noqa: F401  (a fixture)
from tests.telemetry.test_tracing_upstream import (  # noqa: F401  (fixtures)
    _check_one_trace,
    _received,
    peer,
)

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("mode", ["modern", "legacy"])
async def test_spec_tp_trace_crosses_the_gateway(
        gateway_http: Any, peer: list[str], memory: Any, mode: str) -> None:  # noqa: F811
    tracer, spans = memory
    live = await gateway_http(make_config({"peer": stdio_upstream(peer)}))
    live.gateway.tracer = tracer
    async with connect_http(live.url, mode=mode) as client:
        result = await client.request("tools/call", {
            "name": "peer__meta", "arguments": {},
            "_meta": {"traceparent": TRACEPARENT, "tracestate": "soc=1"}})
    received = _received(result)
    exported = spans()
    _check_one_trace(exported, received)
    # Other requests of the session (discovery, lists) have spans of their own.
    (server,) = [s for s in exported
                 if s.kind is SpanKind.SERVER and s.name.startswith("tools/call")]
    assert server.name == "tools/call peer__meta"
    assert server.attributes["bastion.upstream"] == "peer"
