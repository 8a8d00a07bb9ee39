"""An aiohttp load generator for MCP `tools/call` over Streamable HTTP, in either era.

    python bench/loadgen.py URL [--era modern|legacy|echo] [--concurrency N]
                            [--calls N | --duration S] [--tool NAME] [--arguments JSON]
                            [--expect-text TEXT] [--sse-only] [--warmup N] [--wait-go]
                            [--loop uvloop|asyncio]

Workers (`--concurrency` of them, one keep-alive connection each) POST `tools/call` requests
back to back until `--calls` calls are done or `--duration` seconds have passed. Request
bodies are serialized once: only the JSON-RPC id is spliced in per call; the tool's
`arguments` are `--arguments` (a JSON object, `{}` by default). Every response is checked
(HTTP 200, the id, a successful `result` whose first content item is `--expect-text`,
`resultType: "complete"` if present) and each failure is counted, with a few samples.
The latency of a call is from the POST to the last byte of its response.

Eras (spec-essentials §5):

* `modern` (2026-07-28): stateless POSTs with `MCP-Protocol-Version`, `Mcp-Method`,
  `Mcp-Name` and the per-request `_meta` (protocol version, client capabilities);
* `legacy` (2025-11-25): each worker opens a session (`initialize`, then
  `notifications/initialized`) during the warm-up and sends `Mcp-Session-Id` on every call;
  the answer may be JSON or SSE (a priming event first is fine); sessions are deleted at the
  end. `--sse-only` sends `Accept: text/event-stream` instead of both types, which asks a
  server that would answer JSON to answer SSE;
* `echo`: the modern request to a server that answers with the request body (the floor).

It prints one JSON object on stdout: the counts, calls/s, latency percentiles in ms, the
media types answered and the error samples. With `--wait-go` it runs the warm-up, prints
`READY`, and waits for a line on stdin before the measured run, so that a driver can read a
server's CPU counters around exactly the measured calls (`bench/http_server.py` does).
Timeouts bound every call; the process never waits forever.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"
SIMPLE_TEXT = "This is a simple text response for testing."
BOTH = "application/json, text/event-stream"
CALL_TIMEOUT = 10.0
MAX_ERROR_SAMPLES = 5
ERAS = ("modern", "legacy", "echo")


class CallFailed(Exception):
    """A response that is not a valid successful `tools/call` result."""


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A pre-serialized JSON-RPC request: `prefix + id + suffix`."""

    prefix: bytes
    suffix: bytes

    @classmethod
    def of(cls, method: str, params: dict[str, Any] | None = None) -> Template:
        rest: dict[str, Any] = {"method": method}
        if params is not None:
            rest["params"] = params
        return cls(b'{"jsonrpc":"2.0","id":', b"," + orjson.dumps(rest)[1:])

    def body(self, request_id: int) -> bytes:
        return self.prefix + b"%d" % request_id + self.suffix


def call_template(era: str, tool: str, arguments: dict[str, Any] | None = None) -> Template:
    params: dict[str, Any] = {"name": tool, "arguments": arguments or {}}
    if era != "legacy":
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    return Template.of("tools/call", params)


def call_headers(era: str, tool: str, *, sse_only: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json",
               "Accept": "text/event-stream" if sse_only else BOTH}
    if era == "legacy":
        headers["MCP-Protocol-Version"] = LEGACY_VERSION
    else:
        headers.update({"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call",
                        "Mcp-Name": tool})
    return headers


# -- responses --------------------------------------------------------------------------------


def sse_messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON `data` of each event in an SSE body (events without data are skipped)."""
    messages = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].removeprefix(b" ") for line in block.split(b"\n")
                if line.startswith(b"data:")]
        payload = b"\n".join(data)
        if payload.strip():
            messages.append(orjson.loads(payload))
    return messages


def response_to(request_id: int, content_type: str, body: bytes) -> dict[str, Any]:
    """The JSON-RPC response with `request_id` in a JSON or SSE answer."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json":
        message = orjson.loads(body)
        if not isinstance(message, dict):
            raise CallFailed(f"not a JSON-RPC object: {body[:120]!r}")
        return message
    if media == "text/event-stream":
        for message in sse_messages(body):
            if isinstance(message, dict) and message.get("id") == request_id and (
                    "result" in message or "error" in message):
                return message
            if isinstance(message, dict) and "method" in message and "id" in message:
                raise CallFailed(f"server request on the stream: {message['method']}")
        raise CallFailed(f"no response to id {request_id} in the stream: {body[:160]!r}")
    raise CallFailed(f"unexpected content type {content_type!r}")


def check_result(message: dict[str, Any], request_id: int, expect_text: str) -> None:
    if message.get("jsonrpc") != "2.0" or message.get("id") != request_id:
        raise CallFailed(f"wrong envelope or id: {str(message)[:160]}")
    if "error" in message:
        raise CallFailed(f"JSON-RPC error: {str(message['error'])[:160]}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise CallFailed("no result")
    if result.get("isError") is True:
        raise CallFailed(f"tool error: {str(result)[:160]}")
    if result.get("resultType", "complete") != "complete":
        raise CallFailed(f"resultType {result.get('resultType')!r}")
    content = result.get("content")
    if not (isinstance(content, list) and content and isinstance(content[0], dict)
            and content[0].get("text") == expect_text):
        raise CallFailed(f"unexpected content: {str(content)[:160]}")


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    media: Counter[str] = field(default_factory=Counter)

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(reason)


@dataclass
class Plan:
    url: str
    era: str
    concurrency: int
    calls: int | None
    duration: float | None
    tool: str
    sse_only: bool
    warmup: int
    wait_go: bool
    expect_text: str = SIMPLE_TEXT
    arguments: dict[str, Any] = field(default_factory=dict)
    #: An access token sent as `Authorization: Bearer` on every request ($BENCH_TOKEN).
    token: str | None = None


class Worker:
    """One client connection (and, in the legacy era, one session)."""

    def __init__(self, http: aiohttp.ClientSession, plan: Plan) -> None:
        self.http = http
        self.plan = plan
        self.template = call_template(plan.era, plan.tool, plan.arguments)
        self.headers = call_headers(plan.era, plan.tool, sse_only=plan.sse_only)
        if plan.token:
            self.headers["Authorization"] = f"Bearer {plan.token}"
        self.session_id: str | None = None

    async def open(self) -> None:
        """Open a legacy session: `initialize`, then `notifications/initialized`."""
        if self.plan.era != "legacy":
            return
        init = Template.of("initialize", {
            "protocolVersion": LEGACY_VERSION, "capabilities": {},
            "clientInfo": {"name": "bastion-bench", "version": "0"},
        })
        headers = {"Content-Type": "application/json", "Accept": BOTH,
                   **{k: v for k, v in self.headers.items() if k == "Authorization"}}
        async with self.http.post(self.plan.url, data=init.body(0), headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise CallFailed(f"initialize: HTTP {response.status}: {body[:160]!r}")
            message = response_to(0, response.headers.get("Content-Type", ""), body)
            if "result" not in message:
                raise CallFailed(f"initialize failed: {str(message)[:160]}")
            self.session_id = response.headers.get("Mcp-Session-Id")
        if self.session_id is not None:
            self.headers["Mcp-Session-Id"] = self.session_id
        headers = {**self.headers, "Accept": BOTH, "MCP-Protocol-Version": LEGACY_VERSION}
        note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        async with self.http.post(self.plan.url, data=note, headers=headers) as response:
            await response.read()
            if response.status not in (200, 202):
                raise CallFailed(f"notifications/initialized: HTTP {response.status}")

    async def close(self) -> None:
        if self.session_id is None:
            return
        try:
            async with self.http.delete(self.plan.url, headers=self.headers) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError):
            pass

    async def call(self, request_id: int, stats: Stats) -> None:
        body = self.template.body(request_id)
        started = time.perf_counter_ns()
        try:
            async with self.http.post(self.plan.url, data=body, headers=self.headers) as response:
                answer = await response.read()
                elapsed = time.perf_counter_ns() - started
                content_type = response.headers.get("Content-Type", "")
                if response.status != 200:
                    raise CallFailed(f"HTTP {response.status}: {answer[:160]!r}")
            stats.media[content_type.partition(";")[0].strip() or "?"] += 1
            if self.plan.era == "echo":
                if answer != body:
                    raise CallFailed("the echo came back wrong")
            else:
                message = response_to(request_id, content_type, answer)
                check_result(message, request_id, self.plan.expect_text)
        except CallFailed as exc:
            stats.fail(str(exc))
            return
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            stats.fail(f"{type(exc).__name__}: {exc}")
            return
        stats.latencies_ns.append(elapsed)


async def drive(workers: list[Worker], stats: Stats, calls: int | None,
                duration: float | None, first_id: int) -> tuple[int, float]:
    """Run the workers until `calls` are issued or `duration` passes: (calls, seconds)."""
    next_id = first_id
    last_id = first_id + calls if calls is not None else None
    deadline = time.perf_counter() + duration if duration is not None else None

    async def loop(worker: Worker) -> None:
        nonlocal next_id
        while True:
            if last_id is not None and next_id >= last_id:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            request_id = next_id
            next_id += 1
            await worker.call(request_id, stats)

    started = time.perf_counter()
    await asyncio.gather(*(loop(worker) for worker in workers))
    return next_id - first_id, time.perf_counter() - started


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


async def wait_for_go() -> None:
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed before GO")


async def run(plan: Plan) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=plan.concurrency, keepalive_timeout=60,
                                     force_close=False)
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        workers = [Worker(http, plan) for _ in range(plan.concurrency)]
        await asyncio.gather(*(worker.open() for worker in workers))
        warm = Stats()
        if plan.warmup:
            await drive(workers, warm, plan.warmup, None, 1_000_000_000)
        if warm.errors:
            raise CallFailed(f"{warm.errors} errors in the warm-up, e.g. {warm.error_samples[0]}")
        if plan.wait_go:
            await wait_for_go()
        stats = Stats()
        issued, elapsed = await drive(workers, stats, plan.calls, plan.duration, 1)
        await asyncio.gather(*(worker.close() for worker in workers))
    latencies = sorted(stats.latencies_ns)
    ok = len(latencies)
    return {
        "url": plan.url,
        "era": plan.era,
        "sse_only": plan.sse_only,
        "concurrency": plan.concurrency,
        "calls": issued,
        "ok": ok,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "seconds": elapsed,
        "calls_per_s": issued / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p90": percentile(latencies, 0.90) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": latencies[-1] / 1e6 if latencies else 0.0,
            "mean": sum(latencies) / ok / 1e6 if ok else 0.0,
        },
        "media_types": dict(stats.media),
    }


#: Bound on `--arguments`, so the request template stays an MCP-sized message.
MAX_ARGUMENTS_SIZE = 1024 * 1024


def json_object(text: str) -> dict[str, Any]:
    """`--arguments`: a JSON object, or an argparse error that says what is wrong."""
    if len(text) > MAX_ARGUMENTS_SIZE:
        raise argparse.ArgumentTypeError(
            f"{len(text)} characters is more than the {MAX_ARGUMENTS_SIZE} allowed")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc}); pass an object such as '{{\"text\": \"hi\"}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object (the tool's arguments by name), not {type(value).__name__}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the MCP endpoint, e.g. http://127.0.0.1:3001/mcp")
    parser.add_argument("--era", choices=ERAS, default="modern")
    parser.add_argument("--concurrency", type=int, default=1)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--calls", type=int, default=None, help="calls to make (default 3000)")
    amount.add_argument("--duration", type=float, default=None, help="seconds to run")
    parser.add_argument("--tool", default="test_simple_text")
    parser.add_argument("--arguments", type=json_object, default={}, metavar="JSON",
                        help='the tool\'s arguments, a JSON object (default {}), e.g. '
                             '\'{"text": "hi"}\'')
    parser.add_argument("--expect-text", default=SIMPLE_TEXT,
                        help="the text the tool's first content item must carry")
    parser.add_argument("--sse-only", action="store_true",
                        help="send Accept: text/event-stream (legacy: ask for an SSE answer)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first")
    parser.add_argument("--wait-go", action="store_true",
                        help="print READY after the warm-up and wait for a line on stdin")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    if args.calls is None and args.duration is None:
        args.calls = 3000
    if args.concurrency < 1 or (args.calls is not None and args.calls < 1):
        parser.error("--concurrency and --calls must be positive")
    if args.duration is not None and not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600] seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(url=args.url, era=args.era, concurrency=args.concurrency, calls=args.calls,
                duration=args.duration, tool=args.tool, sse_only=args.sse_only,
                warmup=args.warmup, wait_go=args.wait_go, expect_text=args.expect_text,
                arguments=args.arguments, token=os.environ.get("BENCH_TOKEN") or None)
    try:
        if args.loop == "uvloop":
            import uvloop

            result = uvloop.run(run(plan))
        else:
            result = asyncio.run(run(plan))
    except (CallFailed, aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0 if result["errors"] == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
