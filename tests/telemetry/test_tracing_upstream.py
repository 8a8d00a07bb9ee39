"""One trace id from the caller, through the gateway's spans (made with the tracer's API as
the gateway uses it), to a real upstream process: a Bastion server that answers with the
`_meta` it received. `test_tracing_e2e.py` runs the same check through the real gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from bastion.client import connect_stdio
from bastion.gateway.catalog import Entry
from bastion.guard.outcome import Outcome
from tests.telemetry.test_tracing import (  # noqa: F401  (memory: a fixture)
    PARENT,
    TRACE,
    TRACEPARENT,
    make_call,
    memory,
)

pytestmark = pytest.mark.timeout(40)

#: An upstream whose one tool answers with the `_meta` of the request it received.
META_PEER = '''
import json
from bastion.server import Context, Server, run_stdio

server = Server("meta-peer", "1.0.0")


@server.tool()
async def meta(ctx: Context) -> str:
    """Returns the request's _meta."""
    return json.dumps(ctx.request.params.get("_meta") or {})


if __name__ == "__main__":
    run_stdio(server)
'''


@pytest.fixture
def peer(tmp_path: Path) -> list[str]:
    script = tmp_path / "meta_peer.py"
    script.write_text(META_PEER)
    return [sys.executable, str(script)]


def _received(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), result
    return json.loads(result["content"][0]["text"])


def _check_one_trace(spans: list[Any], received: dict[str, Any]) -> None:
    """The caller's span → the gateway's SERVER span → its CLIENT span → the upstream."""
    calls = [s for s in spans if s.attributes["mcp.method.name"] == "tools/call"]
    (server,) = [s for s in calls if s.kind is SpanKind.SERVER]
    (hop,) = [s for s in calls if s.kind is SpanKind.CLIENT]
    assert f"{server.context.trace_id:032x}" == TRACE == f"{hop.context.trace_id:032x}"
    assert f"{server.parent.span_id:016x}" == PARENT
    assert hop.parent.span_id == server.context.span_id
    assert received["traceparent"] == f"00-{TRACE}-{hop.context.span_id:016x}-01"
    assert received["tracestate"] == "soc=1"


async def test_spec_tp_trace_crosses_to_a_real_upstream_process(
        peer: list[str], memory: Any) -> None:  # noqa: F811
    tracer, spans = memory
    entry = Entry("tool", "peer__meta", "peer", "meta", {"name": "peer__meta"})
    call = make_call({"name": "peer__meta", "arguments": {},
                      "_meta": {"traceparent": TRACEPARENT, "tracestate": "soc=1"}},
                     target=entry)
    async with connect_stdio(peer) as upstream:
        with tracer.call_span(call) as span:
            params: dict[str, Any] = {"name": "meta", "arguments": {}}
            with tracer.upstream_span("peer", "tools/call", params, target="meta") as hop:
                result = await upstream.request("tools/call", params)
                hop.set_result(result)
            span.finish(Outcome(call, 0.0, 0.0, result=result))
    _check_one_trace(spans(), _received(result))
