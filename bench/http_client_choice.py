"""Which HTTP client should Bastion's MCP client use? A measurement, not an opinion.

Serves a bare ASGI JSON echo with uvicorn (httptools, uvloop) on a loopback port in a child
process, then measures, per request, the wall time and the client's CPU time, in µs, for
`httpx.AsyncClient`, `aiohttp.ClientSession` and Bastion's own `HTTPClient`
(bastion/transport/http/h1client.py): sequentially and at concurrency 16, each with
keep-alive pooling. The body is an MCP-sized JSON-RPC request (a `tools/call` with `_meta`),
so the figures include what a real call pays: building the request, the round trip, and
reading the whole body.

    python bench/http_client_choice.py [--requests N] [--rounds R] [--uvloop]

The CPU figure is what matters for a gateway (every proxied call is one POST upstream, and
a busy gateway is CPU-bound): it is `time.process_time()` around each round, which counts
this process only (the client and its event loop), not the echo server's process. Wall time
on loopback also holds the server's share and the scheduler's, so it separates the clients
less. All clients run in the same process on the same event loop, in alternating rounds, so
a slow moment of the machine lands on all of them; the table reports the median round, the
CPU of each client relative to the cheapest, and the load average says how quiet the machine
was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

#: Measure the `bastion` of the work tree this file is in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONCURRENCY = 16
#: Bound on the echo's body read by the clients that take one.
MAX_BODY = 64 * 1024
TIMEOUT = 10.0
BODY = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "get_weather",
            "arguments": {"location": "Seattle, WA", "units": "metric"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
            },
        },
    }
)
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "get_weather",
}


# -- the server (child process) ----------------------------------------------------------


def serve(port: int) -> None:
    import uvicorn
    from servers import echo_app  # the one bare ASGI echo of the benchmarks (bench/servers.py)

    uvicorn.run(echo_app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the echo server did not listen on port {port} within {timeout} s")


# -- the clients -------------------------------------------------------------------------

Post = Callable[[], Awaitable[bytes]]


@dataclass
class Round:
    """One round's cost per request, in µs."""

    wall_us: float
    cpu_us: float


async def run_round(post: Post, requests: int, concurrency: int) -> Round:
    """Wall and CPU µs per request for `requests` posts, `concurrency` at a time."""
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            body = await post()
            if len(body) != len(BODY):
                raise RuntimeError("the echo came back wrong")

    done = per_worker * concurrency
    cpu_started = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return Round(elapsed / done * 1e6, cpu / done * 1e6)


class HttpxBench:
    name = "httpx.AsyncClient"

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
            timeout=httpx.Timeout(TIMEOUT),
        )

    async def post(self) -> bytes:
        response = await self.client.post(self.url, content=BODY, headers=HEADERS)
        response.raise_for_status()
        return response.content

    async def aclose(self) -> None:
        await self.client.aclose()


class AiohttpBench:
    name = "aiohttp.ClientSession"

    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )

    async def post(self) -> bytes:
        async with self.session.post(self.url, data=BODY, headers=HEADERS) as response:
            response.raise_for_status()
            return await response.read()

    async def aclose(self) -> None:
        await self.session.close()


class BastionBench:
    name = "bastion HTTPClient"

    def __init__(self, url: str) -> None:
        from bastion.transport.http.h1client import HTTPClient

        self.url = url
        self.client = HTTPClient(connect_timeout=TIMEOUT, limit=CONCURRENCY)

    async def post(self) -> bytes:
        response = await self.client.request("POST", self.url, HEADERS, BODY,
                                             read_timeout=TIMEOUT, total_timeout=TIMEOUT)
        async with response:
            if response.status != 200:
                raise RuntimeError(f"the echo answered HTTP {response.status}")
            return await response.read(MAX_BODY)

    async def aclose(self) -> None:
        await self.client.aclose()


Figures = dict[str, dict[int, list[Round]]]


async def measure(url: str, requests: int, rounds: int) -> Figures:
    benches = [HttpxBench(url), AiohttpBench(url), BastionBench(url)]
    figures: Figures = {b.name: {1: [], CONCURRENCY: []} for b in benches}
    try:
        for bench in benches:  # warm up: open the pools, JIT-free but cache-warm
            await run_round(bench.post, 200, CONCURRENCY)
        for _ in range(rounds):
            for concurrency in (1, CONCURRENCY):
                for bench in benches:
                    figures[bench.name][concurrency].append(
                        await run_round(bench.post, requests, concurrency)
                    )
    finally:
        for bench in benches:
            await bench.aclose()
    return figures


def report(figures: Figures) -> list[str]:
    """The table (median wall and CPU µs per request, CPU relative to the cheapest client),
    clients ordered by CPU, and a closing line that names the cheapest."""
    medians = {name: {c: Round(statistics.median(r.wall_us for r in runs),
                               statistics.median(r.cpu_us for r in runs))
                      for c, runs in by_concurrency.items()}
               for name, by_concurrency in figures.items()}
    levels = (1, CONCURRENCY)
    cheapest = {c: min(m[c].cpu_us for m in medians.values()) for c in levels}
    ranked = sorted(medians, key=lambda name: sum(medians[name][c].cpu_us for c in levels))
    lines = [f"{'':<24}{'sequential':>30}{f'concurrency {CONCURRENCY}':>30}",
             f"{'client':<24}" + f"{'wall µs':>10}{'CPU µs':>10}{'CPU x':>10}" * len(levels)]
    for name in ranked:
        lines.append(f"{name:<24}" + "".join(
            f"{medians[name][c].wall_us:>10.0f}{medians[name][c].cpu_us:>10.0f}"
            f"{medians[name][c].cpu_us / cheapest[c]:>10.1f}" for c in levels))
    best, next_best = ranked[0], ranked[1]
    times = " and ".join(f"{medians[next_best][c].cpu_us / medians[best][c].cpu_us:.1f}x at "
                         f"concurrency {c}" for c in levels)
    lines.append(f"Least CPU per request: {best}; the next best, {next_best}, takes {times} "
                 "of its CPU.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop too")
    args = parser.parse_args()
    if not CONCURRENCY <= args.requests <= 1_000_000 or not 1 <= args.rounds <= 100:
        parser.error(f"--requests must be in {CONCURRENCY}..1000000 and --rounds in 1..100")

    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,),
                                                           daemon=True)
    server.start()
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/mcp"
        if args.uvloop:
            import uvloop

            figures = uvloop.run(measure(url, args.requests, args.rounds))
        else:
            figures = asyncio.run(measure(url, args.requests, args.rounds))
    finally:
        server.terminate()
        server.join(5)

    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(f"µs per request, the client's wall time and its process's CPU time (median of "
          f"{args.rounds} rounds of {args.requests}; client loop: {loop_name}; Python "
          f"{sys.version.split()[0]}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end); CPU x: relative to the cheapest client")
    print("\n".join(report(figures)))


if __name__ == "__main__":
    main()
