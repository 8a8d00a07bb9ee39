"""Bastion's MCP endpoint without the network: CPU µs per `tools/call` of the ASGI app alone.

    python bench/asgi_inprocess.py [--calls 20000] [--concurrency 1,16]
                                   [--profile] [--profile-top 40] [--legs modern,legacy]

`bench/http_server.py` measures the whole server process: HTTP parsing, socket syscalls and
the event loop included. This script isolates what Bastion adds on top of that: it calls
the endpoint (`bastion.transport.http.asgi_app(build_server())`, the fixture server) the way
uvicorn does (one task per request, the same `receive`/`send` protocol: the body, then
`http.disconnect` once the response is complete), with the headers aiohttp sends, on uvloop,
and measures the process CPU time per call. The same harness drives a bare ASGI echo (the
`bench/servers.py` echo app), the cost of the ASGI protocol alone.

`--profile` runs the Bastion legs a second time under cProfile (no socket, so wall time is
CPU time here) and prints the top functions by own time, with the number of calls per
request. Everything runs in this one process and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
#: The `bastion` measured is the one of this work tree, whatever editable install is active.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen import (  # bench/ is not a package: its own directory is on the path
    BOTH,
    LEGACY_VERSION,
    MODERN_VERSION,
    SIMPLE_TEXT,
    Template,
    call_template,
    check_result,
    response_to,
)
from servers import echo_app

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
TOOL = "test_simple_text"


def base_headers(body_length: int, accept: str) -> list[tuple[bytes, bytes]]:
    """The headers aiohttp sends with a POST (names lowercased, as ASGI has them)."""
    return [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", accept.encode()),
        (b"accept-encoding", b"gzip, deflate"),
        (b"user-agent", b"Python/3.11 aiohttp/3.14.5"),
        (b"content-length", b"%d" % body_length),
        (b"content-type", b"application/json"),
    ]


def scope_for(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "scheme": "http", "method": "POST", "root_path": "", "path": "/mcp",
        "raw_path": b"/mcp", "query_string": b"", "headers": headers, "state": {},
    }


async def exchange(app: App, body: bytes, headers: list[tuple[bytes, bytes]],
                   ) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the app as uvicorn runs it: (status, headers, body)."""
    complete = asyncio.Event()
    sent_body = False
    status = 0
    response_headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        if not complete.is_set():
            await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(message.get("headers", []))
        else:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                complete.set()

    # uvicorn runs each request's app in a task of its own.
    await asyncio.get_running_loop().create_task(app(scope_for(headers), receive, send))
    return status, response_headers, b"".join(chunks)


class Leg:
    """Builds the request of one leg and checks its answer."""

    def __init__(self, name: str, app: App, era: str, *, sse_only: bool = False) -> None:
        self.name = name
        self.app = app
        self.era = era
        self.template = call_template("legacy" if era == "legacy" else "modern", TOOL)
        self.accept = "text/event-stream" if sse_only else BOTH
        self.extra: list[tuple[bytes, bytes]] = []
        if era == "legacy":
            self.extra.append((b"mcp-protocol-version", LEGACY_VERSION.encode()))
        else:
            self.extra += [(b"mcp-protocol-version", MODERN_VERSION.encode()),
                           (b"mcp-method", b"tools/call"), (b"mcp-name", TOOL.encode())]

    async def open(self) -> None:
        if self.era != "legacy":
            return
        init = Template.of("initialize", {
            "protocolVersion": LEGACY_VERSION, "capabilities": {},
            "clientInfo": {"name": "bastion-bench", "version": "0"}}).body(0)
        status, headers, _ = await exchange(self.app, init, base_headers(len(init), BOTH))
        session = headers.get(b"mcp-session-id")
        if status != 200 or session is None:
            raise RuntimeError(f"initialize: HTTP {status}, session {session!r}")
        self.extra.insert(0, (b"mcp-session-id", session))
        note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        status, _, _ = await exchange(self.app, note,
                                      base_headers(len(note), BOTH) + self.extra)
        if status not in (200, 202):
            raise RuntimeError(f"notifications/initialized: HTTP {status}")

    async def call(self, request_id: int) -> None:
        body = self.template.body(request_id)
        status, headers, answer = await exchange(
            self.app, body, base_headers(len(body), self.accept) + self.extra)
        if status != 200:
            raise RuntimeError(f"{self.name}: HTTP {status}: {answer[:200]!r}")
        if self.era == "echo":
            if answer != body:
                raise RuntimeError("the echo came back wrong")
            return
        message = response_to(request_id, headers.get(b"content-type", b"").decode(), answer)
        check_result(message, request_id, SIMPLE_TEXT)


async def run_leg(leg: Leg, calls: int, concurrency: int) -> float:
    """CPU µs per call (process time, which is all this one thread)."""
    next_id = 1

    async def worker() -> None:
        nonlocal next_id
        while next_id <= calls:
            request_id = next_id
            next_id += 1
            await leg.call(request_id)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) * 1e6 / calls


def build_legs(names: list[str]) -> list[Leg]:
    import bastion
    from bastion.testing.everything import build_server
    from bastion.transport.http import asgi_app

    print(f"Bastion from {Path(bastion.__file__).parent}")
    endpoint = asgi_app(build_server())
    available = {
        "modern": lambda: Leg("Bastion modern", endpoint, "modern"),
        "legacy": lambda: Leg("Bastion legacy", endpoint, "legacy"),
        "legacy-sse": lambda: Leg("Bastion legacy, SSE asked", endpoint, "legacy",
                                  sse_only=True),
        "echo": lambda: Leg("ASGI echo", echo_app, "echo"),
    }
    return [available[name]() for name in names]


async def measure(args: argparse.Namespace) -> None:
    legs = build_legs(args.legs)
    for leg in legs:
        await leg.open()
        await run_leg(leg, min(args.calls, 2000), 16)  # warm-up
    print(f"CPU µs per call of the ASGI app alone, in process, {args.calls} calls "
          f"(load average {'/'.join(f'{v:.2f}' for v in os.getloadavg())})")
    print(f"{'leg':<28}" + "".join(f"{'conc. ' + str(c):>12}" for c in args.concurrencies))
    for leg in legs:
        figures = [await run_leg(leg, args.calls, c) for c in args.concurrencies]
        print(f"{leg.name:<28}" + "".join(f"{f:>12.1f}" for f in figures))
    if not args.profile:
        return
    for leg in legs:
        if leg.era == "echo":
            continue
        for concurrency in args.concurrencies:
            profile = cProfile.Profile()
            profile.enable()
            await run_leg(leg, args.calls, concurrency)
            profile.disable()
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            total_calls = stats.total_calls  # type: ignore[attr-defined]
            print(f"\n== profile: {leg.name}, concurrency {concurrency}: "
                  f"{total_calls / args.calls:.0f} function calls per request "
                  f"(the harness's own exchange/receive/send included)")
            stats.sort_stats("tottime").print_stats(args.profile_top)
            print(out.getvalue().replace(str(Path.cwd()) + "/", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--legs", default="modern,legacy,legacy-sse,echo",
                        help="comma-separated, of: modern, legacy, legacy-sse, echo")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-top", type=int, default=40)
    args = parser.parse_args(argv)
    args.concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.legs = [name.strip() for name in args.legs.split(",") if name.strip()]
    if not 1 <= args.calls <= 1_000_000 or not args.concurrencies or min(args.concurrencies) < 1:
        parser.error("--calls must be in 1..1e6 and concurrency levels positive")
    unknown = set(args.legs) - {"modern", "legacy", "legacy-sse", "echo"}
    if unknown:
        parser.error(f"unknown legs {sorted(unknown)}")
    import uvloop

    uvloop.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
