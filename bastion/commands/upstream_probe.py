"""Reach an MCP server the way the gateway does and list everything it offers.

The review commands (`bastion scan`, `bastion pin`) connect to a configuration's upstreams
with the same command line or URL, environment and credentials as the gateway, list the
tools, prompts, resources and resource templates (every page), and read the server's
`instructions` and `serverInfo`. The whole exchange is bounded in time, so a server that
never answers, or pages forever, cannot hold a review up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from bastion.client import Client, connect_http, connect_stdio
from bastion.config import UpstreamConfig
from bastion.gateway.credentials import CredentialError, upstream_env, upstream_headers
from bastion.protocol.errors import METHOD_NOT_FOUND, MCPError, ProtocolError
from bastion.session.errors import SessionError
from bastion.transport.http.wire import HTTPTransportError
from bastion.transport.stdio import ProcessStartError

#: What reaching a server may fail with; each becomes one line naming the server.
UPSTREAM_ERRORS: tuple[type[BaseException], ...] = (
    MCPError, ProtocolError, SessionError, ProcessStartError, CredentialError,
    HTTPTransportError, OSError, ValueError)

Connector = Callable[[], AbstractAsyncContextManager[Client]]


@dataclass(slots=True)
class Offerings:
    """What one server offers, as it sent it (items are not checked: a list may hold
    anything, and the caller's scanner or validator decides what a bad item means)."""

    server_info: dict[str, Any] | None = None
    instructions: str | None = None
    tools: list[Any] = field(default_factory=list)
    prompts: list[Any] = field(default_factory=list)
    resources: list[Any] = field(default_factory=list)
    templates: list[Any] = field(default_factory=list)


def connect_upstream(upstream: UpstreamConfig) -> AbstractAsyncContextManager[Client]:
    """The client context for an upstream, built as the gateway builds its connection."""
    probe = min(5.0, upstream.connect_timeout / 2)
    if upstream.command is not None:
        return connect_stdio([upstream.command, *upstream.args], env=upstream_env(upstream),
                             cwd=upstream.cwd, mode=upstream.protocol, probe_timeout=probe,
                             request_timeout=upstream.timeout)
    if upstream.auth is not None and upstream.auth.oauth is not None:
        raise ValueError("it uses per-user OAuth, which needs a user's browser; review its "
                         "definitions through a running gateway")
    return connect_http(upstream.url or "", headers=upstream_headers(upstream),
                        mode=upstream.protocol, probe_timeout=probe,
                        request_timeout=upstream.timeout,
                        connect_timeout=upstream.connect_timeout, listen=False)


def upstream_limit(upstream: UpstreamConfig) -> float:
    """How long a review of `upstream` may take: the handshake, then a few list requests."""
    return upstream.connect_timeout + upstream.timeout


async def list_offerings(client: Client, *, resources: bool = True) -> Offerings:
    """Everything a connected server declares (its capabilities say which lists to ask for);
    `resources=False` skips the concrete resources, which may be many."""
    server = client.server
    offered = Offerings(server_info=server.server_info, instructions=server.instructions)
    if "tools" in server.capabilities:
        offered.tools = await client.list_tools()
    if "prompts" in server.capabilities:
        offered.prompts = await client.list_prompts()
    if "resources" in server.capabilities:
        if resources:
            offered.resources = await client.list_resources()
        try:
            offered.templates = await client.list_resource_templates()
        except MCPError as exc:
            # Resources without templates: some servers never implemented the method.
            if exc.code != METHOD_NOT_FOUND:
                raise
    return offered


async def probe(connect: Connector, limit: float, *, resources: bool = True,
                limit_source: str = "") -> Offerings:
    """Connect, list, disconnect, all within `limit` seconds (a TimeoutError says so, and
    names `limit_source`, the setting the limit comes from)."""
    try:
        async with asyncio.timeout(limit):
            async with connect() as client:
                return await list_offerings(client, resources=resources)
    except TimeoutError as exc:
        if str(exc):
            raise
        source = f" ({limit_source})" if limit_source else ""
        raise TimeoutError(f"no complete answer within {limit:g} s{source}") from None


async def probe_upstream(upstream: UpstreamConfig, *, resources: bool = True) -> Offerings:
    """`probe` for a configured upstream, bounded by its connect_timeout + timeout."""
    return await probe(lambda: connect_upstream(upstream), upstream_limit(upstream),
                       resources=resources, limit_source="connect_timeout + timeout")


__all__ = ["UPSTREAM_ERRORS", "Connector", "Offerings", "connect_upstream", "list_offerings",
           "probe", "probe_upstream", "upstream_limit"]
