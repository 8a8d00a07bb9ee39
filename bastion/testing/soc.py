"""A small security-operations MCP server for demos and tests: `python -m bastion.testing.soc
siem|edr`.

It stands in for the servers a SOC puts behind Bastion, with in-memory data and honest tool
annotations: the `siem` role searches alerts and reads an alert (read-only); the `edr` role
lists hosts (read-only) and isolates or releases a host (destructive). The README's policy
walk-through and the identity end-to-end tests run it as two stdio upstreams.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bastion.server import Server, run_stdio
from bastion.server.tools import ToolError

ALERTS = [
    {"id": "A-1001", "host": "ws-017", "severity": "high", "rule": "credential dumping"},
    {"id": "A-1002", "host": "srv-db-02", "severity": "medium", "rule": "unusual login"},
    {"id": "A-1003", "host": "ws-017", "severity": "low", "rule": "new scheduled task"},
]
READ_ONLY = {"readOnlyHint": True, "openWorldHint": False}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True,
               "openWorldHint": False}


def siem_server() -> Server:
    server = Server("soc-siem", version="1.0")

    @server.tool("search", description="Search SIEM alerts by host or text.",
                 annotations=READ_ONLY)
    async def search(query: str, limit: int = 10) -> list[dict[str, Any]]:
        needle = query.lower()
        found = [a for a in ALERTS if needle in a["host"] or needle in a["rule"]]
        return found[:max(0, min(limit, 100))]

    @server.tool("get_alert", description="One alert by its id.", annotations=READ_ONLY)
    async def get_alert(alert_id: str) -> dict[str, Any]:
        for alert in ALERTS:
            if alert["id"] == alert_id:
                return alert
        raise ToolError(f"no alert {alert_id!r}")

    return server


def edr_server() -> Server:
    server = Server("soc-edr", version="1.0")
    isolated: set[str] = set()
    hosts = sorted({a["host"] for a in ALERTS})

    @server.tool("list_hosts", description="Hosts under EDR, with their isolation state.",
                 annotations=READ_ONLY)
    async def list_hosts() -> list[dict[str, Any]]:
        return [{"host": h, "isolated": h in isolated} for h in hosts]

    @server.tool("isolate_host", description="Cut a host off the network (EDR containment).",
                 annotations=DESTRUCTIVE)
    async def isolate_host(host: str, reason: str) -> str:
        if host not in hosts:
            raise ToolError(f"unknown host {host!r}")
        isolated.add(host)
        return f"{host} isolated ({reason})"

    @server.tool("release_host", description="Reconnect an isolated host.",
                 annotations=DESTRUCTIVE)
    async def release_host(host: str) -> str:
        isolated.discard(host)
        return f"{host} released"

    return server


ROLES = {"siem": siem_server, "edr": edr_server}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.soc",
                                     description="A demo SOC MCP server on stdio.")
    parser.add_argument("role", choices=sorted(ROLES))
    args = parser.parse_args(argv)
    run_stdio(ROLES[args.role]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
