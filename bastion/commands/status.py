"""`bastion status`: how a running gateway and its upstreams are doing, in the terminal.

The command GETs the gateway's `/healthz` (with Bastion's own HTTP client) and prints a table
of the upstreams: state, era and version, probe latency, probe error rate, restarts, circuit
breaker and last error. A gateway with authentication shows the upstream details only to a
credential with a metrics or admin role (`--token`, or `BASTION_TOKEN`); without one the
command still says whether the gateway is ready.

Exit codes: 0 ready; 1 serving but not ready; 2 unreachable, refused or a bad answer (one red
line).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.commands.keys import fail
from bastion.transport.http.h1client import HTTPClient, HTTPClientError

console = Console()

#: The largest health answer read (a gateway with many upstreams stays far below).
MAX_ANSWER = 1024 * 1024
DEFAULT_URL = "http://127.0.0.1:8000"


class StatusError(Exception):
    """The gateway could not be asked, or its answer makes no sense."""


def health_url(url: str) -> str:
    """The health URL: `url` itself when it has a path, else its `/healthz`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StatusError(f"{url!r} is not an http(s) URL (like {DEFAULT_URL})")
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/healthz"
    return url


async def fetch_health(url: str, token: str | None = None, timeout: float = 5.0
                       ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON document of the gateway's health answer at `url`."""
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    client = HTTPClient(connect_timeout=timeout, limit=1)
    try:
        async with await client.request("GET", url, headers, read_timeout=timeout,
                                        total_timeout=timeout) as response:
            body = await response.read(MAX_ANSWER)
            status = response.status
    except (HTTPClientError, OSError, ValueError) as exc:
        raise StatusError(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}"
                          ) from None
    finally:
        await client.aclose()
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StatusError(f"{url} answered HTTP {status} with something that is not JSON; "
                          "is this a Bastion gateway's health URL?") from None
    if not isinstance(document, dict):
        document = {}
    if status in (401, 403):
        raise StatusError(f"the gateway refused the credential (HTTP {status}: "
                          f"{document.get('message') or document.get('error') or 'no reason'})"
                          "; pass --token with a metrics or admin role")
    if status not in (200, 503) or "status" not in document:
        raise StatusError(f"{url} answered HTTP {status} without a health status; is this a "
                          "Bastion gateway's health URL?")
    return status, document


def _number(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * scale:.{digits}f}"
    return "-"


_STATE_STYLE = {"up": "green", "starting": "yellow", "down": "red", "stopped": "dim"}


def upstream_table(upstreams: list[Any]) -> Table:
    """The Rich table of the upstreams' health dicts."""
    table = Table("Upstream", "State", "Era / version", "Latency ms", "Error rate", "Restarts",
                  "Breaker", "Last error")
    for item in upstreams:
        if not isinstance(item, dict):
            continue
        state = str(item.get("state", "?"))
        era = " / ".join(str(item[k]) for k in ("era", "version") if item.get(k)) or "-"
        error = item.get("last_probe_error") or item.get("last_error") or ""
        table.add_row(Text(str(item.get("name", "?"))),
                      Text(state, style=_STATE_STYLE.get(state, "")), Text(era),
                      _number(item.get("latency_ewma_ms")),
                      _number(item.get("error_rate"), 100, 0) + ("%" if isinstance(
                          item.get("error_rate"), int | float) else ""),
                      str(item.get("restarts", "-")), Text(str(item.get("breaker", "-"))),
                      Text(str(error)))
    return table


def status(
    url: Annotated[str, typer.Option("--url", help="The gateway (its /healthz is asked), or "
                                     "a full health URL.")] = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="BASTION_TOKEN", show_default=False,
        help="A bearer token or API key with a metrics or admin role (for the details).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gateway's answer as "
                                          "JSON.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=120,
                                           help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Show whether the gateway is ready and how its upstreams are doing."""
    try:
        _, document = asyncio.run(fetch_health(health_url(url), token, timeout))
    except StatusError as exc:
        fail(str(exc), 2)
    ready = document.get("ready") is True
    if as_json:
        console.print_json(orjson.dumps(document).decode())
    else:
        upstreams = document.get("upstreams")
        if isinstance(upstreams, list):
            if upstreams:
                console.print(upstream_table(upstreams))
            else:
                console.print("No upstreams are configured.")
        else:
            console.print("Upstream details are hidden: pass --token with a metrics or admin "
                          "role.")
        for reason in document.get("reasons") or ():
            console.print(Text(f"not ready: {reason}", style="yellow"))
        console.print(Text("gateway ready", style="green") if ready
                      else Text("gateway NOT ready", style="red"))
    if not ready:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `bastion status` to the main CLI."""
    app.command("status")(status)


__all__ = ["StatusError", "fetch_health", "health_url", "register", "status", "upstream_table"]
