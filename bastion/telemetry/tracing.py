"""OpenTelemetry tracing of the gateway: a span per request, its guard and its upstream hop,
with the W3C trace context carried across the gateway in `_meta` (and HTTP headers).

The gateway uses a few calls, each a context manager or a plain function:

    with tracer.call_span(call) as span:          # SERVER span; parent from the caller
        with tracer.guard_span("request"):        # INTERNAL span (with `guard_spans: true`)
            await pipeline.check_request(call)
        with tracer.upstream_span(upstream.name, method, params):   # CLIENT span; writes
            result = await upstream.request(method, params)         # params["_meta"]
        span.finish(outcome)                       # status and error code of the request
    await tracer.aclose()                          # at shutdown: export what is queued

`NO_TRACING` answers the same calls and does nothing, at the cost of a method call.

Why the spans are not the SDK's: starting and ending two SDK spans with an attached context
costs about 35 µs of CPU per request (bench/telemetry_bench.py), against 20 µs the gateway
may spend on metrics and tracing together. So `Span` is a slotted object holding ids and a
small attribute dict, the current span is a contextvar, the W3C trace context is parsed and
written here, and a sampled span is queued as it is when it ends, in a sink of
`bastion.telemetry.otlp` (`OtlpSink`: OTLP/JSON to a collector; `SdkSink`: an SDK exporter).
Spans made here do not become the current span of the OpenTelemetry API: other
OpenTelemetry instrumentation in the process starts its own traces.

Sampling is parent-based: a caller's sampled flag decides for its trace; a new trace is kept
with probability `sample_ratio` (the SDK's TraceIdRatioBased rule on the low 64 bits).
Attributes are bounded and never hold argument values, tokens or a URI's query.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from bastion.config.tracing import TracingConfig
from bastion.telemetry.otlp import OtlpSink, SdkSink

if TYPE_CHECKING:
    from bastion.guard.outcome import Outcome
    from bastion.guard.pipeline import Call

#: The `_meta` keys (and HTTP header names) of the W3C trace context, as MCP reserves them.
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
#: Longest values accepted from a caller (W3C: tracestate 32 members of at most 256
#: characters, here 512 in all; baggage 8192 bytes); longer ones are ignored, not cut.
MAX_TRACEPARENT = 256
MAX_TRACESTATE = 512
MAX_BAGGAGE = 8192
#: Longest string attribute, and longest target name in a span name.
MAX_ATTRIBUTE = 256
MAX_NAME = 128
# Span kinds, numbered as opentelemetry.trace.SpanKind (`SdkSink` relies on it).
INTERNAL, SERVER, CLIENT = 0, 1, 2

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?",
                          re.DOTALL)
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_MASK64 = (1 << 64) - 1
#: The attribute naming what a request targets, by catalogue kind.
_TARGET_ATTRIBUTE = {"tool": "gen_ai.tool.name", "prompt": "gen_ai.prompt.name",
                     "resource": "mcp.resource.uri", "template": "mcp.resource.uri"}
_PARAM_TARGET = {"tools/call": ("name", "gen_ai.tool.name"),
                 "prompts/get": ("name", "gen_ai.prompt.name"),
                 "resources/read": ("uri", "mcp.resource.uri"),
                 "resources/subscribe": ("uri", "mcp.resource.uri")}

_CURRENT: ContextVar[Span | None] = ContextVar("bastion_span", default=None)


# -- the W3C trace context -------------------------------------------------------------------

class Parent:
    """A caller's trace context: the remote parent of the gateway's server span."""

    __slots__ = ("baggage", "flags", "span_id", "trace_id", "tracestate")

    def __init__(self, trace_id: int, span_id: int, flags: int,
                 tracestate: str | None = None, baggage: str | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.tracestate = tracestate
        self.baggage = baggage


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C `traceparent`, or None when it is not one
    (wrong type or length, upper-case or bad hex, version ff, all-zero ids)."""
    if not isinstance(value, str) or len(value) > MAX_TRACEPARENT:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    # Version 00 has exactly four fields; a later version may append more, which a parser
    # of version 00 reads past (W3C Trace Context, "versioning of traceparent").
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags_hex, 16)


def _list_value(value: object, limit: int) -> str | None:
    """A tracestate or baggage value if it is printable ASCII of at most `limit` chars."""
    if isinstance(value, str) and len(value) <= limit and _PRINTABLE.fullmatch(value):
        return value or None
    return None


def extract(meta: object, headers: Mapping[str, str] | None = None) -> Parent | None:
    """The caller's trace context: from the request's `_meta`, else from the HTTP headers
    (lower-case names). Malformed values are ignored: the request then starts a new trace."""
    meta = meta if isinstance(meta, dict) else None
    baggage: str | None = None
    for carrier in (meta, headers):
        if carrier is None:
            continue
        if baggage is None and "baggage" in carrier:
            baggage = _list_value(carrier.get("baggage"), MAX_BAGGAGE)
        if "traceparent" in carrier:
            parsed = parse_traceparent(carrier.get("traceparent"))
            if parsed is not None:
                state = _list_value(carrier.get("tracestate"), MAX_TRACESTATE)
                return Parent(*parsed, tracestate=state, baggage=baggage)
    if baggage is not None:  # baggage alone still travels on (W3C Baggage is independent)
        return Parent(0, 0, 0, baggage=baggage)
    return None


def _bounded(value: object, limit: int = MAX_ATTRIBUTE) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit]


def _uri_attribute(uri: str) -> str:
    # The query and fragment of a URI may carry tokens or personal data: the path is enough.
    cut = min((i for i in (uri.find("?"), uri.find("#")) if i >= 0), default=len(uri))
    return _bounded(uri[:cut])


def current_ids() -> tuple[str | None, str | None]:
    """The (trace id, span id) in hex of the span the running code is in, or (None, None)."""
    span = _CURRENT.get()
    if span is None:
        return None, None
    return f"{span.trace_id:032x}", f"{span.span_id:016x}"


# -- spans -------------------------------------------------------------------------------------

class Span:
    """One span of the gateway: use it as a context manager (it becomes the current span)."""

    __slots__ = ("_token", "attributes", "baggage", "end", "error", "kind", "name",
                 "parent_id", "remote", "sampled", "span_id", "start", "trace_id", "tracer",
                 "tracestate")

    def __init__(self, tracer: GatewayTracer, name: str, kind: int,
                 attributes: dict[str, Any], parent: Span | Parent | None) -> None:
        self.tracer = tracer
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.span_id = random.getrandbits(64) or 1
        if parent is not None and parent.trace_id:
            self.trace_id = parent.trace_id
            self.parent_id = parent.span_id
            self.remote = isinstance(parent, Parent)
            self.sampled = bool(parent.flags & 1) if self.remote else parent.sampled
        else:
            self.trace_id = random.getrandbits(128) or 1
            self.parent_id = 0
            self.remote = False
            self.sampled = (self.trace_id & _MASK64) < tracer.bound
        self.tracestate = parent.tracestate if parent is not None else None
        self.baggage = parent.baggage if parent is not None else None
        #: The error description when the span failed (its status is then ERROR).
        self.error: str | None = None
        self.start = time.time_ns()
        self._token: Any = None

    @property
    def flags(self) -> int:
        return 1 if self.sampled else 0

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        self.attributes[key] = _bounded(value) if isinstance(value, str) else value

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed: an exception (its JSON-RPC code when it has one, else its
        type; never its message) or a short description."""
        if isinstance(error, str):
            self.error = self.attributes["error.type"] = _bounded(error, 64)
            return
        code = getattr(error, "code", None)
        if isinstance(code, int) and not isinstance(code, bool):
            self.attributes["rpc.response.status_code"] = str(code)
            self.error = self.attributes["error.type"] = str(code)
        else:
            self.error = self.attributes["error.type"] = type(error).__qualname__

    def inject(self, carrier: dict[str, Any]) -> None:
        """Write this span's trace context into `carrier` (a `_meta` dict or headers),
        replacing what the caller's context said there."""
        carrier["traceparent"] = f"00-{self.trace_id:032x}-{self.span_id:016x}-0{self.flags}"
        if self.tracestate is not None:
            carrier["tracestate"] = self.tracestate
        else:
            carrier.pop("tracestate", None)
        if self.baggage is not None and self.tracer.propagate_baggage:
            carrier["baggage"] = self.baggage
        else:
            carrier.pop("baggage", None)

    def __enter__(self) -> Span:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is not None and self.error is None:
            self.fail(exc)
        try:  # noqa: SIM105  (contextlib.suppress costs 0.5 µs here, on every span)
            _CURRENT.reset(self._token)
        except ValueError:  # left in another context (a task): it ends there
            pass
        if self.sampled:
            self.end = time.time_ns()
            sink = self.tracer.sink
            if sink is not None:
                sink.add(self)


class CallSpan(Span):
    """The SERVER span of one request; `finish(outcome)` records how it ended."""

    __slots__ = ("call",)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        # A queued span must not keep the request (and its arguments) alive.
        self.call = None
        super().__exit__(exc_type, exc, tb)

    def finish(self, outcome: Outcome) -> None:
        """Take the request's ending from `outcome`: target, upstream, rule, client, status."""
        attributes = self.attributes
        call = outcome.call
        key = outcome.target
        kind = getattr(call.target, "kind", None)
        if isinstance(key, str):
            if kind in ("tool", "prompt"):
                self.name = f"{outcome.method} {key[:MAX_NAME]}"
            attribute = _TARGET_ATTRIBUTE.get(kind, "bastion.target")
            attributes[attribute] = (_uri_attribute(key) if attribute == "mcp.resource.uri"
                                     else _bounded(key))
        upstream = outcome.upstream
        if isinstance(upstream, str):
            attributes["bastion.upstream"] = _bounded(upstream)
        client_id = getattr(call.principal, "client_id", None)
        if isinstance(client_id, str):
            attributes["bastion.client_id"] = _bounded(client_id)
        rule = outcome.rule
        if isinstance(rule, str):
            attributes["bastion.policy.rule"] = _bounded(rule)
        status = outcome.status
        attributes["bastion.outcome"] = status
        if status in ("error", "denied"):
            code = str(outcome.error_code)
            attributes["rpc.response.status_code"] = code
            self.error = attributes["error.type"] = code
        elif status == "tool_error":
            self.error = attributes["error.type"] = "tool_error"


class UpstreamSpan(Span):
    """The CLIENT span of one upstream hop."""

    __slots__ = ("_params",)

    def __enter__(self) -> UpstreamSpan:
        self._token = _CURRENT.set(self)
        params = self._params
        if params is not None:
            meta = params.get("_meta")
            # A copy: the dict may still be the caller's own `_meta`.
            meta = dict(meta) if isinstance(meta, dict) else {}
            self.inject(meta)
            params["_meta"] = meta
            self._params = None  # a queued span must not keep the arguments alive
        return self

    def set_result(self, result: Mapping[str, Any]) -> None:
        """A tool result with `isError` marks the hop failed (`error.type` tool_error)."""
        if result.get("isError") is True:
            self.fail("tool_error")


# -- the tracers -------------------------------------------------------------------------------

class GatewayTracer:
    """Makes the gateway's spans and exports the sampled ones (see the module doc)."""

    enabled = True

    def __init__(self, config: TracingConfig, *, exporter: Any = None) -> None:
        """`exporter`: an OpenTelemetry SDK `SpanExporter` to hand the spans to instead of
        the configured OTLP endpoint (tests: `InMemorySpanExporter`; needs `bastion[otel]`,
        else `otlp.TracingUnavailable`)."""
        self.config = config
        self.propagate_baggage = config.propagate_baggage
        self.guard_spans = config.guard_spans
        #: New traces whose low 64 bits of trace id are below this are sampled.
        self.bound = round(config.sample_ratio * (_MASK64 + 1))
        #: Where ended, sampled spans go; None: spans are made and propagated, not exported.
        self.sink: SdkSink | OtlpSink | None = None
        if exporter is not None:
            self.sink = SdkSink(exporter, config)
        elif config.otlp_endpoint is not None:
            self.sink = OtlpSink(config)

    # -- spans ---------------------------------------------------------------------------

    def call_span(self, call: Call) -> CallSpan:
        """The SERVER span of `call`, child of the caller's trace context (`_meta`, else
        HTTP headers) or of a new trace."""
        request = call.request
        method = request.method
        params = request.params
        parent: Span | Parent | None = extract(params.get("_meta"), call.headers)
        if parent is None:
            parent = _CURRENT.get()
        # The version is one the protocol layer accepted: short.
        attributes: dict[str, Any] = {"mcp.method.name": method,
                                      "mcp.protocol.version": request.version}
        incoming = request.incoming
        if incoming is not None:
            attributes["jsonrpc.request.id"] = _bounded(incoming.id, 64)
        named = _PARAM_TARGET.get(method)
        if named is not None:
            value = params.get(named[0])
            if isinstance(value, str):
                attributes[named[1]] = (_uri_attribute(value) if named[0] == "uri"
                                        else _bounded(value))
            if method == "tools/call":
                attributes["gen_ai.operation.name"] = "execute_tool"
        span = CallSpan(self, method, SERVER, attributes, parent)
        span.call = call
        return span

    def guard_span(self, phase: str = "request") -> Span | _NoSpan:
        """An INTERNAL span around the guard stages of one phase (request or result), when
        `tracing.guard_spans` asks for it (a third span costs about 5 µs a request); a
        refusal shows on the request's span either way."""
        if not self.guard_spans:
            return _NO_SPAN
        return Span(self, f"guard {phase}", INTERNAL, {"bastion.guard.phase": phase},
                    _CURRENT.get())

    def upstream_span(self, upstream: str, method: str, params: dict[str, Any] | None = None,
                      target: str | None = None) -> UpstreamSpan:
        """The CLIENT span of a hop to `upstream`; on entry it writes its trace context
        into `params["_meta"]` (a copy of the dict there, or a new one)."""
        attributes: dict[str, Any] = {"mcp.method.name": method,
                                      "bastion.upstream": _bounded(upstream)}
        name = method
        if target is not None:
            name = f"{method} {target[:MAX_NAME]}"
            attributes["bastion.upstream.target"] = _bounded(target)
        span = UpstreamSpan(self, name, CLIENT, attributes, _CURRENT.get())
        span._params = params
        return span

    def observe(self, outcome: Outcome) -> None:
        """As a gateway observer: finish the current request span with `outcome` (the
        gateway calls observers inside `call_span`; any other outcome is ignored)."""
        span = _CURRENT.get()
        if isinstance(span, CallSpan) and span.call is outcome.call:
            span.finish(outcome)

    def inject(self, carrier: dict[str, Any]) -> None:
        """Write the current span's trace context into `carrier` (`_meta` or headers);
        nothing outside a span."""
        span = _CURRENT.get()
        if span is not None:
            span.inject(carrier)

    def current_ids(self) -> tuple[str | None, str | None]:
        return current_ids()

    # -- export ----------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Spans dropped because the export queue was full or the tracer closed."""
        return self.sink.dropped if self.sink is not None else 0

    def force_flush(self) -> bool:
        """Hand what is queued to an SDK exporter now (sync; False for OTLP export, which
        needs `await flush()`)."""
        if isinstance(self.sink, SdkSink):
            self.sink.flush_now()
            return True
        return self.sink is None

    async def flush(self) -> None:
        """Export everything queued now."""
        if self.sink is not None:
            await self.sink.flush()

    async def aclose(self) -> None:
        """Export what is queued and stop; spans ending later are dropped."""
        if self.sink is not None:
            await self.sink.aclose()


class _NoSpan:
    """The span of `NoTracing`: every method does nothing."""

    __slots__ = ()
    error = None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def finish(self, outcome: Outcome) -> None:
        pass

    def set_result(self, result: Mapping[str, Any]) -> None:
        pass

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        pass

    def fail(self, error: BaseException | str) -> None:
        pass

    def inject(self, carrier: dict[str, Any]) -> None:
        pass


_NO_SPAN = _NoSpan()


class NoTracing:
    """The tracer when tracing is off: the same API, doing nothing (the trace context a
    caller sent passes to the upstream untouched, in the `_meta` the relay copies)."""

    __slots__ = ()
    enabled = False

    def call_span(self, call: Call) -> _NoSpan:
        return _NO_SPAN

    def guard_span(self, phase: str = "request") -> _NoSpan:
        return _NO_SPAN

    def upstream_span(self, upstream: str, method: str, params: dict[str, Any] | None = None,
                      target: str | None = None) -> _NoSpan:
        return _NO_SPAN

    def observe(self, outcome: Outcome) -> None:
        pass

    def inject(self, carrier: dict[str, Any]) -> None:
        pass

    def current_ids(self) -> tuple[str | None, str | None]:
        return None, None

    def force_flush(self) -> bool:
        return True

    async def flush(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


NO_TRACING = NoTracing()
Tracer = GatewayTracer | NoTracing


def build_tracer(config: TracingConfig) -> Tracer:
    """The tracer `config` asks for: `NO_TRACING` unless enabled (export over OTLP/JSON
    needs no OpenTelemetry SDK)."""
    return GatewayTracer(config) if config.enabled else NO_TRACING
