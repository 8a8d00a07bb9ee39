"""Which HTTP client should Bastion's MCP client use? A measurement, not an opinion.

Serves a bare ASGI JSON echo with uvicorn (httptools, uvloop) on a loopback port in a child
process, then measures the wall time per request, in µs, for `httpx.AsyncClient` and
`aiohttp.ClientSession`: sequentially and at concurrency 16, each with keep-alive pooling.
The body is an MCP-sized JSON-RPC request (a `tools/call` with `_meta`), so the figures
include what a real call pays: building the request, the round trip, and reading the body.

    python bench/http_client_choice.py [--requests N] [--rounds R] [--uvloop]

Both clients run in the same process on the same event loop, in alternating rounds, so a
slow moment of the machine lands on both; the table reports the median round, and the load
average says how quiet the machine was.
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

import orjson

CONCURRENCY = 16
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


async def run_round(post: Post, requests: int, concurrency: int) -> float:
    """µs per request for `requests` posts, `concurrency` at a time."""
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            body = await post()
            if len(body) != len(BODY):
                raise RuntimeError("the echo came back wrong")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return elapsed / (per_worker * concurrency) * 1e6


class HttpxBench:
    name = "httpx.AsyncClient"

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
            timeout=httpx.Timeout(10.0),
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
            timeout=aiohttp.ClientTimeout(total=10.0),
        )

    async def post(self) -> bytes:
        async with self.session.post(self.url, data=BODY, headers=HEADERS) as response:
            response.raise_for_status()
            return await response.read()

    async def aclose(self) -> None:
        await self.session.close()


async def measure(url: str, requests: int, rounds: int) -> dict[str, dict[int, list[float]]]:
    benches = [HttpxBench(url), AiohttpBench(url)]
    figures: dict[str, dict[int, list[float]]] = {
        b.name: {1: [], CONCURRENCY: []} for b in benches
    }
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop too")
    args = parser.parse_args()

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
    print(f"µs per request (median of {args.rounds} rounds of {args.requests}; client loop: "
          f"{loop_name}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print(f"{'client':<24}{'sequential':>12}{'concurrency 16':>16}")
    for name, by_concurrency in figures.items():
        seq = statistics.median(by_concurrency[1])
        conc = statistics.median(by_concurrency[CONCURRENCY])
        print(f"{name:<24}{seq:>12.0f}{conc:>16.0f}")


if __name__ == "__main__":
    main()
