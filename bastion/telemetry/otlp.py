"""Export of the gateway's spans: as OTLP/JSON (the OTLP/HTTP protocol's JSON encoding),
posted in batches to a collector with Bastion's HTTP client (`OtlpSink`), or handed to an
OpenTelemetry SDK `SpanExporter` (`SdkSink`; tests use `InMemorySpanExporter`), the only part
that needs the `bastion[otel]` extra. `bastion.telemetry.tracing` makes the spans and queues
each sampled one here as it ends.

Why not the SDK's own spans and exporter: starting and ending two SDK spans with an attached
context costs about 35 µs of CPU per request, and the SDK's OTLP exporter encodes each span in
about 25 µs (bench/telemetry_bench.py), against 20 µs the gateway may spend on metrics and
tracing together. The encoder here writes a span in about 2 µs, reusing the encoded form of
the attributes that repeat; the SDK is imported only when an SDK exporter is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from bastion import __version__
from bastion.config.tracing import TracingConfig

if TYPE_CHECKING:
    from bastion.telemetry.tracing import Span

# The tracer's logger name, kept so that logging set up for tracing still covers export.
logger = logging.getLogger("bastion.telemetry.tracing")

#: The export queue (spans), one export request (spans) and the time between exports (s).
MAX_QUEUE = 4096
MAX_BATCH = 512
EXPORT_DELAY = 2.0
#: The most of a collector's answer read (it is only checked for success).
MAX_RESPONSE = 64 * 1024


class TracingUnavailable(RuntimeError):
    """An OpenTelemetry SDK exporter was given, but the SDK is not installed."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"an OpenTelemetry SDK exporter needs {missing}, which cannot be "
                         f"imported; install the extra with: pip install 'bastion[otel]'")
        self.missing = missing



class ExportFailed(RuntimeError):
    """The collector did not accept a batch of spans."""


def _attribute(key: str, value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


#: Encoded attributes kept for reuse (most repeat: methods, upstreams, tools, clients).
MAX_CACHED_ATTRIBUTES = 4096


class _Encoder:
    """OTLP/JSON of spans, reusing the encoded form of attributes seen before."""

    def __init__(self, service_name: str) -> None:
        #: Encoded string attributes by key, then value.
        self._cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._cached = 0
        self._resource = [_attribute("service.name", service_name),
                          _attribute("service.version", __version__),
                          _attribute("telemetry.sdk.name", "bastion"),
                          _attribute("telemetry.sdk.language", "python")]

    def _attributes(self, attributes: dict[str, Any]) -> list[dict[str, Any]]:
        cache = self._cache
        encoded = []
        for key, value in attributes.items():
            if type(value) is not str:
                encoded.append(_attribute(key, value))
                continue
            values = cache.get(key)
            if values is None:
                values = cache[key] = {}
            cached = values.get(value)
            if cached is None:
                if self._cached >= MAX_CACHED_ATTRIBUTES:
                    cache.clear()
                    self._cached = 0
                    values = cache[key] = {}
                cached = values[value] = {"key": key, "value": {"stringValue": value}}
                self._cached += 1
            encoded.append(cached)
        return encoded

    def span(self, span: Span) -> dict[str, Any]:
        item: dict[str, Any] = {
            "traceId": f"{span.trace_id:032x}", "spanId": f"{span.span_id:016x}",
            "name": span.name, "kind": span.kind + 1,  # OTLP: INTERNAL 1, SERVER 2, CLIENT 3
            "startTimeUnixNano": str(span.start), "endTimeUnixNano": str(span.end),
            "attributes": self._attributes(span.attributes),
        }
        if span.parent_id:
            item["parentSpanId"] = f"{span.parent_id:016x}"
        if span.tracestate is not None:
            item["traceState"] = span.tracestate
        if span.error is not None:
            item["status"] = {"code": 2, "message": span.error}  # STATUS_CODE_ERROR
        return item

    def encode(self, spans: list[Span]) -> bytes:
        """An OTLP/HTTP `ExportTraceServiceRequest` in its JSON encoding (ids in hex)."""
        return orjson.dumps({"resourceSpans": [{
            "resource": {"attributes": self._resource},
            "scopeSpans": [{"scope": {"name": "bastion", "version": __version__},
                            "spans": [self.span(span) for span in spans]}],
        }]})


class OtlpSink:
    """Sampled spans, queued on the hot path and posted by a task on the event loop to an
    OTLP/HTTP collector as JSON, in bounded batches, with Bastion's HTTP client.

    Why not the SDK's exporter: its protobuf encoding costs about 25 µs of CPU a span
    (measured here), more than the whole tracing budget of a request; this encoding costs
    about 2. The queue is bounded (a span that finds it full is dropped and counted); every
    export is bounded by `tracing.timeout`; a collector that fails is logged, never raised."""

    def __init__(self, config: TracingConfig, *, max_queue: int = MAX_QUEUE,
                 max_batch: int = MAX_BATCH, delay: float = EXPORT_DELAY) -> None:
        from bastion.transport.http.h1client import HTTPClient

        assert config.otlp_endpoint is not None
        self.url = config.otlp_endpoint
        self.encoder = _Encoder(config.service_name)
        self.timeout = config.timeout
        self._headers = {**config.export_headers(), "Content-Type": "application/json"}
        self._client = HTTPClient(connect_timeout=min(config.timeout, 10.0))
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.delay = delay
        self.dropped = 0
        self.exported = 0
        self._queue: deque[Span] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue or self._closed:
            self.dropped += 1
            return
        queue.append(span)
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no loop running: `flush` sends it
                self._task = asyncio.get_running_loop().create_task(self._run())
        elif len(queue) == self.max_batch:  # once per batch
            self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.delay)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:  # one export at a time, in queue order
            queue = self._queue
            while queue:
                batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                try:
                    await self._post(self.encoder.encode(batch))
                    self.exported += len(batch)
                except Exception as exc:  # a collector that is down must not stop the loop
                    logger.warning("exporting %d spans to %s failed: %s", len(batch),
                                   self.url, exc)

    async def _post(self, body: bytes) -> None:
        response = await self._client.request("POST", self.url, self._headers, body,
                                              read_timeout=self.timeout,
                                              total_timeout=self.timeout)
        async with response:
            await response.read(MAX_RESPONSE)
        if not 200 <= response.status < 300:
            raise ExportFailed(f"the collector answered HTTP {response.status}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, self.timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), self.timeout)
        await self._client.aclose()


class SdkSink:
    """Sampled spans handed to an OpenTelemetry SDK `SpanExporter` (tests, other backends),
    built into the SDK's `ReadableSpan`s in batches, in the caller's thread."""

    def __init__(self, exporter: Any, config: TracingConfig, *,
                 max_batch: int = MAX_BATCH) -> None:
        sdk = _import_sdk()
        self.exporter = exporter
        self.max_batch = max_batch
        self.dropped = 0
        self._sdk = sdk
        self._queue: list[Span] = []
        self._closed = False
        self._resource = sdk.Resource.create({"service.name": config.service_name,
                                              "service.version": __version__})
        self._scope = sdk.InstrumentationScope("bastion", __version__)
        # The tracer numbers its span kinds as SpanKind does (INTERNAL 0, SERVER 1, CLIENT 2).
        self._kinds = {kind.value: kind for kind in (sdk.SpanKind.INTERNAL,
                                                     sdk.SpanKind.SERVER, sdk.SpanKind.CLIENT)}
        self._unset = sdk.Status(sdk.StatusCode.UNSET)
        self._sampled = sdk.TraceFlags(1)

    def add(self, span: Span) -> None:
        if self._closed:
            self.dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self.max_batch:
            self.flush_now()

    def flush_now(self) -> None:
        batch, self._queue = self._queue, []
        if batch:
            try:
                self.exporter.export([self._readable(span) for span in batch])
            except Exception:  # an exporter's failure must never fail a request
                logger.warning("exporting %d spans failed", len(batch), exc_info=True)

    async def flush(self) -> None:
        self.flush_now()

    async def aclose(self) -> None:
        if not self._closed:
            self.flush_now()
            self._closed = True
            self.exporter.shutdown()

    def _readable(self, span: Span) -> Any:
        sdk = self._sdk
        flags = self._sampled
        trace_id = span.trace_id
        state = (sdk.TraceState.from_header([span.tracestate])
                 if span.tracestate is not None else None)
        parent = (sdk.SpanContext(trace_id, span.parent_id, span.remote, flags, state)
                  if span.parent_id else None)
        status = (self._unset if span.error is None
                  else sdk.Status(sdk.StatusCode.ERROR, span.error))
        return sdk.ReadableSpan(
            name=span.name, context=sdk.SpanContext(trace_id, span.span_id, False, flags, state),
            parent=parent, resource=self._resource, attributes=span.attributes,
            kind=self._kinds[span.kind], status=status, start_time=span.start,
            end_time=span.end, instrumentation_scope=self._scope)


# -- the SDK, imported on first use --------------------------------------------------------------

class _SDK:
    """The OpenTelemetry names the tracer uses, imported together."""

    def __init__(self) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        from opentelemetry.trace.span import TraceState

        self.Resource = Resource
        self.ReadableSpan = ReadableSpan
        self.InstrumentationScope = InstrumentationScope
        self.SpanContext = SpanContext
        self.SpanKind = SpanKind
        self.Status = Status
        self.StatusCode = StatusCode
        self.TraceFlags = TraceFlags
        self.TraceState = TraceState


def _import_sdk() -> _SDK:
    try:
        return _SDK()
    except ImportError as exc:
        raise TracingUnavailable(exc.name or "opentelemetry-sdk") from None
