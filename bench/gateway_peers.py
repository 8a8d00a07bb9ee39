"""The processes `bench/gateway.py` measures and drives, each run as its own child process.

    python bench/gateway_peers.py upstream --port N         # the echo upstream, HTTP
    python bench/gateway_peers.py upstream --stdio          # the same server on stdio
    python bench/gateway_peers.py fastmcp --port N --upstream URL
    python bench/gateway_peers.py relay --port N --upstream URL
    python bench/gateway_peers.py gateway-uvloop serve ...  # `bastion serve ...` on uvloop
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
  upstream with one aiohttp session (Bastion's client settings) and answers with the
  upstream's body; no parsing, no checks.
* `gateway-uvloop`: the `bastion` command line with uvloop installed as the event loop policy
  first (`bastion serve` itself runs on `asyncio.run`'s default loop), to measure what the
  loop alone is worth.
* `load`: `bench/loadgen.py`, unchanged, except that its `tools/call` requests carry
  `{"text": ECHO_TEXT}` as arguments and every answer must echo that text (the load
  generator has no option for arguments: see `echo_call_template`).
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


def relay_app(upstream: str) -> Callable[..., Awaitable[None]]:
    """A bare ASGI app that POSTs (or DELETEs) each request's body to `upstream` with one
    aiohttp session and answers with the upstream's body, media type and session id."""
    import aiohttp

    http: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[dict[str, Any]]],
                  send: Callable[..., Awaitable[None]]) -> None:
        nonlocal http
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # Bastion's HTTP client settings (bastion/transport/http/wire.py).
                    http = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                        cookie_jar=aiohttp.DummyCookieJar(),
                        timeout=aiohttp.ClientTimeout(total=30))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if http is not None:
                        await http.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert http is not None
        chunks: list[bytes] = []
        message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        headers = {name.decode(): value.decode() for name, value in scope["headers"]
                   if name in _RELAYED_HEADERS}
        async with http.request(scope["method"], upstream, data=body or None,
                                headers=headers) as response:
            answer = await response.read()
            out = [(b"content-length", b"%d" % len(answer))]
            for name in ("Content-Type", "Mcp-Session-Id"):
                if name in response.headers:
                    out.append((name.lower().encode(), response.headers[name].encode()))
            status = response.status
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": answer})

    return app


def serve_relay(port: int, upstream: str) -> None:
    import uvicorn

    uvicorn.run(relay_app(upstream), host="127.0.0.1", port=port, http="httptools",
                loop="uvloop", log_level="warning", access_log=False, server_header=False)


# -- Bastion's gateway on uvloop --------------------------------------------------------------


def run_cli_on_uvloop(argv: list[str]) -> None:
    import uvloop

    from bastion.cli import main

    uvloop.install()  # asyncio.run (in `bastion serve`) now makes a uvloop loop
    sys.argv = ["bastion", *argv]
    main()


# -- the load ---------------------------------------------------------------------------------


_plain_call_template = loadgen.call_template


def echo_call_template(era: str, tool: str) -> loadgen.Template:
    """The load generator's `tools/call` request, with `{"text": ECHO_TEXT}` as arguments."""
    plain = _plain_call_template(era, tool)
    arguments = b'"arguments":' + orjson.dumps({"text": ECHO_TEXT})
    suffix = plain.suffix.replace(b'"arguments":{}', arguments, 1)
    if suffix == plain.suffix:
        raise RuntimeError("bench/loadgen.py's request has no empty arguments to fill in: "
                           "update echo_call_template to its new shape")
    return loadgen.Template(plain.prefix, suffix)


def run_load(argv: list[str]) -> int:
    # loadgen's Worker builds its request with the module's `call_template`: swapping that
    # one function keeps the load generator itself (workers, checks, timing) unchanged.
    loadgen.call_template = echo_call_template
    return loadgen.main([*argv, "--tool", TOOL, "--expect-text", ECHO_TEXT])


# -- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    # These two hand the rest of the command line on untouched.
    if args_in[:1] == ["load"]:
        return run_load(args_in[1:])
    if args_in[:1] == ["gateway-uvloop"]:
        run_cli_on_uvloop(args_in[1:])
        return 0
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
    relay = sub.add_parser("relay", help="a bare ASGI relay (uvicorn + aiohttp): the floor")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--upstream", required=True, help="the upstream's MCP URL")
    sub.add_parser("load", help="bench/loadgen.py calling echo(text); its options follow")
    sub.add_parser("gateway-uvloop", help="the bastion command line on uvloop")
    args = parser.parse_args(args_in)
    if args.peer == "upstream":
        serve_upstream(args.port)
    elif args.peer == "relay":
        serve_relay(args.port, args.upstream)
    else:
        serve_fastmcp(args.port, args.upstream, shared=args.shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
