"""The servers `bench/http_server.py` measures, each run as its own child process.

    python bench/servers.py echo --port N
    python bench/servers.py sdk --port N [--json-response] [--stateless] [--uvloop]
    python bench/servers.py bastion --port N [--profile-to DIR]

* `echo`: the floor. A bare ASGI app under uvicorn (httptools, uvloop, no access log) that
  answers every POST with its own body as `application/json`: HTTP parsing, one ASGI
  receive/send round and nothing else.
* `sdk`: the official MCP Python SDK's `MCPServer` with the one tool `test_simple_text`,
  started the documented way, `srv.run(transport="streamable-http", ...)` (uvicorn picks
  httptools; the loop is the asyncio loop of `anyio.run`). `--uvloop` serves the same
  `streamable_http_app()` with uvicorn on uvloop instead, as Bastion and the echo run.
  The server's log level is WARNING so that uvicorn's access log is filtered, as the other
  two servers have it off.
* `bastion`: the conformance fixture, as `python -m bastion.testing.everything --http`
  runs it, but with an optional cProfile switch for the bench only: with `--profile-to DIR`,
  SIGUSR1 starts a profile of the server's main thread (the event loop) and SIGUSR2 stops it
  and writes `DIR/<n>.prof`, so a profile covers exactly one measured leg. The profile's
  clock is the thread's CPU time (`--profile-wall-clock` for wall time).
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

SIMPLE_TEXT = "This is a simple text response for testing."
#: Measure the `bastion` of the work tree this file is in (not whatever editable install
#: the environment has).
ROOT = Path(__file__).resolve().parent.parent


# -- echo -------------------------------------------------------------------------------------


async def echo_app(scope: dict[str, Any], receive: Callable[..., Any],
                   send: Callable[..., Any]) -> None:
    """A bare ASGI app: answer every request with its own body as application/json."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body))],
    })
    await send({"type": "http.response.body", "body": body})


def serve_echo(port: int) -> None:
    import uvicorn

    uvicorn.run(echo_app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False, server_header=False)


# -- the official SDK -------------------------------------------------------------------------


def serve_sdk(port: int, *, json_response: bool, stateless: bool, uvloop: bool) -> None:
    from mcp.server import MCPServer

    srv = MCPServer("bench", log_level="WARNING")

    @srv.tool()
    def test_simple_text() -> str:
        """Return a fixed text (the conformance fixture's tool of the same name)."""
        return SIMPLE_TEXT

    if not uvloop:
        srv.run(transport="streamable-http", host="127.0.0.1", port=port,
                json_response=json_response, stateless_http=stateless)
        return
    import uvicorn

    app = srv.streamable_http_app(json_response=json_response, stateless_http=stateless,
                                  host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False)


# -- Bastion ----------------------------------------------------------------------------------


class SignalProfiler:
    """cProfile of the main thread between SIGUSR1 (start) and SIGUSR2 (stop and write)."""

    def __init__(self, directory: Path, *, cpu_timer: bool = True) -> None:
        self.directory = directory
        self.cpu_timer = cpu_timer
        self.directory.mkdir(parents=True, exist_ok=True)
        self.profile: cProfile.Profile | None = None
        self.count = 0

    def install(self) -> None:
        signal.signal(signal.SIGUSR1, self.start)
        signal.signal(signal.SIGUSR2, self.stop)

    def start(self, _signum: int, _frame: FrameType | None) -> None:
        if self.profile is None:
            # CPU time of the event loop's thread (what the bench measures), not wall time:
            # a wall clock would charge a send() that gets preempted by the woken client.
            self.profile = (cProfile.Profile(time.thread_time) if self.cpu_timer
                            else cProfile.Profile())
            self.profile.enable()

    def stop(self, _signum: int, _frame: FrameType | None) -> None:
        if self.profile is None:
            return
        self.profile.disable()
        self.count += 1
        self.profile.dump_stats(self.directory / f"{self.count}.prof")
        self.profile = None


def serve_bastion(port: int, *, profile_to: Path | None, wall_clock: bool = False) -> None:
    sys.path.insert(0, str(ROOT))
    from bastion.testing.everything import main

    if profile_to is not None:
        SignalProfiler(profile_to, cpu_timer=not wall_clock).install()
    sys.exit(main(["--http", f"127.0.0.1:{port}"]))


# -- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="server", required=True)
    echo = sub.add_parser("echo", help="bare uvicorn+httptools ASGI echo")
    echo.add_argument("--port", type=int, required=True)
    sdk = sub.add_parser("sdk", help="the official SDK's MCPServer")
    sdk.add_argument("--port", type=int, required=True)
    sdk.add_argument("--json-response", action="store_true")
    sdk.add_argument("--stateless", action="store_true")
    sdk.add_argument("--uvloop", action="store_true",
                     help="serve streamable_http_app() with uvicorn on uvloop")
    bastion = sub.add_parser("bastion", help="the Bastion conformance fixture")
    bastion.add_argument("--port", type=int, required=True)
    bastion.add_argument("--profile-to", type=Path, default=None,
                         help="cProfile between SIGUSR1 and SIGUSR2 into this directory")
    bastion.add_argument("--profile-wall-clock", action="store_true",
                         help="profile wall time instead of the thread's CPU time")
    args = parser.parse_args(argv)
    if args.server == "echo":
        serve_echo(args.port)
    elif args.server == "sdk":
        serve_sdk(args.port, json_response=args.json_response, stateless=args.stateless,
                  uvloop=args.uvloop)
    else:
        serve_bastion(args.port, profile_to=args.profile_to,
                      wall_clock=args.profile_wall_clock)


if __name__ == "__main__":
    main()
