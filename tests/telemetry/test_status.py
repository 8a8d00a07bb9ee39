"""`bastion status` as a real child process against real health routes on a real HTTP server:
the table, `--json`, the exit codes (ready, not ready, unreachable, not JSON, refused), and
the token sent only as a bearer header."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.commands.status import StatusError, health_url, upstream_table
from bastion.config.metrics import HealthConfig
from bastion.gateway.health import ViewerCheck, health_routes
from tests.identity.conftest import Idp, idp  # noqa: F401  (a real identity provider)
from tests.live_server import stop_uvicorn
from tests.telemetry.test_metrics import idp_authenticator, serve_routes

pytestmark = pytest.mark.timeout(40)

#: A CLI with only `status` registered, as `bastion.cli` will register it.
RUNNER = ("import typer\n"
          "from bastion.commands.status import register\n"
          "app = typer.Typer(add_completion=False)\n"
          "app.callback()(lambda: None)\n"
          "register(app)\n"
          "app()\n")

UPSTREAMS = [
    {"name": "siem", "transport": "stdio", "state": "up", "era": "legacy",
     "version": "2025-06-18", "restarts": 0, "last_error": None, "breaker": "closed",
     "in_flight": 0, "latency_ms": 1.2, "latency_ewma_ms": 1.5, "error_rate": 0.0,
     "consecutive_failures": 0, "probes": 3},
    {"name": "edr", "transport": "http", "state": "down", "era": None, "version": None,
     "restarts": 4, "last_error": "connection refused", "breaker": "open", "in_flight": 0,
     "latency_ms": None, "latency_ewma_ms": None, "error_rate": 1.0,
     "consecutive_failures": 4, "probes": 4},
]


async def bastion_status(*args: str, env: dict[str, str] | None = None
                         ) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUNNER, "status", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin",
                                             **(env or {})})
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def gateway_health() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Health routes of a gateway whose upstreams are `UPSTREAMS` (the test may change them)."""
    upstreams = [dict(item) for item in UPSTREAMS]
    routes = health_routes(lambda: upstreams, HealthConfig(), ViewerCheck(None, False, [], "x"))
    routes.append(Route("/plain", lambda _request: PlainTextResponse("hello"), methods=["GET"]))
    server, task, base = await serve_routes(routes)
    yield base, upstreams
    await stop_uvicorn(server, task)


async def test_the_table_of_a_ready_gateway(gateway_health) -> None:
    base, _ = gateway_health
    code, out, err = await bastion_status("--url", base)
    assert code == 0, err
    for text in ("siem", "up", "legacy / 2025-06-18", "1.5", "edr", "down", "open",
                 "connection refused", "100%", "gateway ready"):
        assert text in out, text


async def test_json_output_and_a_gateway_that_is_not_ready(gateway_health) -> None:
    base, upstreams = gateway_health
    upstreams[0]["state"] = "down"
    code, out, _ = await bastion_status("--url", base + "/", "--json")
    assert code == 1
    document = orjson.loads(out)
    assert document["ready"] is False and "no upstream is up" in document["reasons"][0]
    code, out, _ = await bastion_status("--url", base + "/readyz")
    assert code == 1 and "NOT ready" in out and "not ready: no upstream is up" in out


async def test_bad_answers_and_unreachable_gateways_exit_2(gateway_health) -> None:
    base, _ = gateway_health
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plain, missing, unreachable, ftp, zero = await asyncio.gather(
        bastion_status("--url", base + "/plain"),
        bastion_status("--url", base + "/nowhere"),
        bastion_status("--url", f"http://127.0.0.1:{port}", "--timeout", "2"),
        bastion_status("--url", "ftp://example.com"),
        bastion_status("--url", base, "--timeout", "0"))
    assert plain[0] == 2 and "not JSON" in plain[2] and "Traceback" not in plain[2]
    assert missing[0] == 2 and "404" in missing[2]
    assert unreachable[0] == 2 and "cannot reach the gateway" in unreachable[2]
    assert "Traceback" not in unreachable[2]
    assert ftp[0] == 2 and "not an http(s) URL" in ftp[2]
    assert zero[0] == 2  # Typer's own check of the option


async def test_the_token_unlocks_the_details_and_a_bad_one_is_refused(
        idp: Idp, tmp_path: Path) -> None:  # noqa: F811
    authenticator = await idp_authenticator(idp, tmp_path)
    routes = health_routes(lambda: UPSTREAMS, HealthConfig(),
                           ViewerCheck(authenticator, True, ["metrics"], "bastion:metrics"))
    server, task, base = await serve_routes(routes)
    try:
        code, out, _ = await bastion_status("--url", base)
        assert code == 0 and "details are hidden" in out and "siem" not in out
        token = idp.mint(roles=["metrics"])
        code, out, _ = await bastion_status("--url", base, env={"BASTION_TOKEN": token})
        assert code == 0 and "siem" in out and token not in out
        bad = idp.mint(roles=["analyst"])
        code, out, err = await bastion_status("--url", base, "--token", bad)
        assert code == 2 and "refused the credential" in err and bad not in err + out
    finally:
        await stop_uvicorn(server, task)
        await authenticator.aclose()


def test_health_url_and_table_with_bad_input() -> None:
    assert health_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/healthz"
    assert health_url("https://gw.example/") == "https://gw.example/healthz"
    assert health_url("http://h/custom/health") == "http://h/custom/health"
    for bad in ("", "127.0.0.1:8000", "file:///etc/passwd", "http://"):
        with pytest.raises(StatusError):
            health_url(bad)
    console = Console(width=200, record=True)
    console.print(upstream_table([*UPSTREAMS, "junk", {"name": "[bold]x[/bold]",
                                                       "error_rate": "NaN"}]))
    text = console.export_text()
    assert "[bold]x[/bold]" in text  # shown as text, never as markup
    assert "junk" not in text
