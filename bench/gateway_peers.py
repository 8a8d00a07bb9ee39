"""The processes `bench/gateway.py` measures and drives, each run as its own child process.

    python bench/gateway_peers.py upstream --port N         # the echo upstream, HTTP
    python bench/gateway_peers.py upstream --stdio          # the same server on stdio
    python bench/gateway_peers.py fastmcp --port N --upstream URL
    python bench/gateway_peers.py relay --port N --upstream URL [--client bastion|aiohttp]
    python bench/gateway_peers.py load URL [bench/loadgen.py options]

* `upstream`: a Bastion `Server` with one tool, `echo(text)`, that returns its argument as a
  text block; over HTTP it is served by `bastion.transport.http.uvicorn_server` (httptools,
  uvloop), one process answering both eras, like the conformance fixture.
* `fastmcp`: FastMCP's proxy in front of an upstream URL, set up as its documentation says:
  `fastmcp.server.create_proxy(url)`, then `.run(transport="http", ...)` (log level WARNING,
  so uvicorn's access log is off as it is for the others; no banner). That proxy opens a
  fresh upstream session for every request ("session isolation"); `--shared` passes
  `create_proxy` a connected `fastmcp.Client` instead, which its documentation describes as
  reusing that one session for all requests (and warns about context mixing).
* `relay`: the floor of any HTTP-to-HTTP gateway on this stack: a bare ASGI app under
  uvicorn (httptools, uvloop) that forwards each request's body and MCP headers to the
  upstream with one pooled HTTP client and answers with the upstream's status, body, media
  type and session id; no parsing, no checks. `--client bastion` (the default) forwards with
  Bastion's own `HTTPClient` (bastion/transport/http/h1client.py), as `bastion serve` does;
  `--client aiohttp` with one aiohttp session, to show what the client choice is worth.
* `load`: `bench/loadgen.py` calling `echo` with `--arguments '{"text": ECHO_TEXT}'` and
  `--expect-text ECHO_TEXT`, so every answer must echo that text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
#: Measure the `bastion` of the work tree this file is in (not whatever editable install
#: the environment has).
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import loadgen  # noqa: E402 (bench/ is not a package: its own directory is on the path)

TOOL = "echo"
ECHO_TEXT = "Bastion bench: the quick brown fox jumps over the lazy dog."


# -- the upstream -----------------------------------------------------------------------------


def build_upstream() -> object:
    from bastion.server import Server

    server = Server("bench-echo")

    @server.tool(TOOL)
    async def echo(text: str) -> str:
        """Return the text it was given."""
        return text

    return server


def serve_upstream(port: int | None) -> None:
    server = build_upstream()
    if port is None:
        from bastion.server import run_stdio

        run_stdio(server)  # type: ignore[arg-type]
        return
    from bastion.transport.http.server import uvicorn_server

    uvicorn_server(server, "127.0.0.1", port).run()  # type: ignore[arg-type]


# -- FastMCP's proxy --------------------------------------------------------------------------


def serve_fastmcp(port: int, upstream: str, *, shared: bool) -> None:
    import asyncio

    from fastmcp import Client
    from fastmcp.server import create_proxy

    options = {"transport": "http", "host": "127.0.0.1", "port": port, "path": "/mcp",
               "log_level": "WARNING", "show_banner": False}
    if not shared:
        create_proxy(upstream, name="bench-fastmcp-proxy").run(**options)
        return

    async def run_shared() -> None:
        # A connected client makes the proxy reuse its one session for every request.
        async with Client(upstream) as client:
            await create_proxy(client, name="bench-fastmcp-proxy").run_async(**options)

    asyncio.run(run_shared())


# -- the floor: a bare relay ------------------------------------------------------------------

#: The request headers an MCP request needs upstream (ASGI names are lowercase bytes).
_RELAYED_HEADERS = frozenset({b"content-type", b"accept", b"mcp-protocol-version",
                              b"mcp-session-id", b"mcp-method", b"mcp-name"})
#: The response headers relayed back (besides Content-Length, which the relay sets).
_ANSWERED_HEADERS = ("content-type", "mcp-session-id")
#: The largest upstream answer the relay reads (Bastion's default message size bound).
MAX_ANSWER = 4 * 1024 * 1024
#: Bastion's HTTP client settings (bastion/transport/http/wire.py): connections per origin,
#: and a bound on each exchange.
POOL_LIMIT = 64
EXCHANGE_TIMEOUT = 30.0
RELAY_CLIENTS = ("bastion", "aiohttp")

#: What a forwarder answers: status, response headers (ASGI form), body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class BastionForwarder:
    """Forwards with Bastion's own HTTP client (`bastion.transport.http.h1client`)."""

    def __init__(self, upstream: str) -> None:
        from bastion.transport.http.h1client import HTTPClient

        self.upstream = upstream
        self.http = HTTPClient(connect_timeout=10.0, limit=POOL_LIMIT)

    async def forward(self, method: str, headers: dict[str, str], body: bytes) -> Answer:
        response = await self.http.request(method, self.upstream, headers, body or None,
                                           read_timeout=EXCHANGE_TIMEOUT,
                                           total_timeout=EXCHANGE_TIMEOUT)
        async with response:
            answer = await response.read(MAX_ANSWER)
        return response.status, _answer_headers(response.headers.get, answer), answer

    async def aclose(self) -> None:
        await self.http.aclose()


class AiohttpForwarder:
    """Forwards with one aiohttp session, set up as Bastion's client was before h1client."""

    def __init__(self, upstream: str) -> None:
        import aiohttp

        self.upstream = upstream
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_LIMIT, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=EXCHANGE_TIMEOUT))

    async def forward(self, method: str, headers: dict[str, str], body: bytes) -> Answer:
        async with self.http.request(method, self.upstream, data=body or None,
                                     headers=headers) as response:
            length = response.content_length
            if length is not None and length <= MAX_ANSWER:
                answer = await response.read()  # as Bastion read it: bounded by the length
            else:
                answer = await _read_bounded(response.content)
            return response.status, _answer_headers(response.headers.get, answer), answer

    async def aclose(self) -> None:
        await self.http.close()


async def _read_bounded(stream: Any) -> bytes:
    """An aiohttp body without (or with too large) a Content-Length, up to MAX_ANSWER."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise RuntimeError(f"the upstream's answer exceeds {MAX_ANSWER} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _answer_headers(get: Callable[[str], str | None], answer: bytes) -> list[tuple[bytes, bytes]]:
    out = [(b"content-length", b"%d" % len(answer))]
    for name in _ANSWERED_HEADERS:
        value = get(name)
        if value is not None:
            out.append((name.encode(), value.encode()))
    return out


def relay_app(upstream: str, client: str = "bastion") -> Callable[..., Awaitable[None]]:
    """A bare ASGI app that POSTs (or DELETEs) each request's body to `upstream` with one
    pooled HTTP client (`client`: "bastion" or "aiohttp") and answers with the upstream's
    status, body, media type and session id."""
    if client not in RELAY_CLIENTS:
        raise ValueError(f"unknown relay client {client!r}; choose from {RELAY_CLIENTS}")
    forwarder: BastionForwarder | AiohttpForwarder | None = None

    async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[dict[str, Any]]],
                  send: Callable[..., Awaitable[None]]) -> None:
        nonlocal forwarder
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # Made here: both clients want the server's running loop.
                    forwarder = (BastionForwarder(upstream) if client == "bastion"
                                 else AiohttpForwarder(upstream))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if forwarder is not None:
                        await forwarder.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert forwarder is not None
        chunks: list[bytes] = []
        message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            chunks.append(message.get("body", b""))
        headers = {name.decode(): value.decode() for name, value in scope["headers"]
                   if name in _RELAYED_HEADERS}
        status, out, answer = await forwarder.forward(scope["method"], headers, b"".join(chunks))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": answer})

    return app


def serve_relay(port: int, upstream: str, client: str) -> None:
    import uvicorn

    uvicorn.run(relay_app(upstream, client), host="127.0.0.1", port=port, http="httptools",
                loop="uvloop", log_level="warning", access_log=False, server_header=False)


# -- the load ---------------------------------------------------------------------------------


def run_load(argv: list[str]) -> int:
    """bench/loadgen.py with these options, calling `echo(ECHO_TEXT)` and checking the echo."""
    arguments = orjson.dumps({"text": ECHO_TEXT}).decode()
    return loadgen.main([*argv, "--tool", TOOL, "--arguments", arguments,
                         "--expect-text", ECHO_TEXT])


# -- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    # `load` hands the rest of the command line on to bench/loadgen.py untouched.
    if args_in[:1] == ["load"]:
        return run_load(args_in[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="peer", required=True)
    upstream = sub.add_parser("upstream", help="the echo upstream (Bastion's Server)")
    where = upstream.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT")
    where.add_argument("--stdio", action="store_true", help="serve on stdin/stdout")
    proxy = sub.add_parser("fastmcp", help="FastMCP's proxy (create_proxy) over HTTP")
    proxy.add_argument("--port", type=int, required=True)
    proxy.add_argument("--upstream", required=True, help="the upstream's MCP URL")
    proxy.add_argument("--shared", action="store_true",
                       help="one upstream session for all requests (a connected Client)")
    relay = sub.add_parser("relay", help="a bare ASGI relay (uvicorn + an HTTP client): "
                                         "the floor")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--upstream", required=True, help="the upstream's MCP URL")
    relay.add_argument("--client", choices=RELAY_CLIENTS, default="bastion",
                       help="forward with Bastion's HTTPClient (default) or aiohttp")
    sub.add_parser("load", help="bench/loadgen.py calling echo(text); its options follow")
    args = parser.parse_args(args_in)
    if args.peer == "upstream":
        serve_upstream(args.port)
    elif args.peer == "relay":
        serve_relay(args.port, args.upstream, args.client)
    else:
        serve_fastmcp(args.port, args.upstream, shared=args.shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
