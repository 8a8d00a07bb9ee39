"""`connect_http(url)`: connect to an MCP server over Streamable HTTP, in whichever era it speaks.

The HTTP transport is a `Channel` (`StreamableHTTPChannel`), so the connection is the same
`ClientConnection` that stdio uses, and era detection is the same probe: `server/discover`
first, `initialize` when the server does not speak the modern protocol, and the 2024-11-05
HTTP+SSE transport when even `initialize` is refused with 400/404/405.

With `oauth=` (an `OAuthProvider`, or any `wire.HTTPAuth`) the connection authorizes itself:
the probe's 401 starts discovery and the authorization flow, and the request is re-sent with
the token; the request timeouts (`probe_timeout` included) bound that time too.
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator
from typing import Any

from bastion.client.client import Client
from bastion.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_SIZE
from bastion.session.client_side import ClientConnection, ClientHandlers, ClientMode
from bastion.session.errors import EraDetectionError
from bastion.transport.http.client import StreamableHTTPChannel
from bastion.transport.http.h1client import HTTPClient
from bastion.transport.http.wire import HTTPAuth, HTTPTimeouts


@contextlib.asynccontextmanager
async def connect_http(
    url: str,
    *,
    mode: ClientMode = "auto",
    handlers: ClientHandlers | None = None,
    headers: dict[str, str] | None = None,
    auth: dict[str, str] | None = None,
    bearer_token: str | None = None,
    oauth: HTTPAuth | None = None,
    client_info: dict[str, Any] | None = None,
    log_level: str | None = None,
    probe_timeout: float = 5.0,
    request_timeout: float = 60.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 300.0,
    listen: bool = True,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    http: HTTPClient | None = None,
    ssl: ssl_module.SSLContext | bool = True,
) -> AsyncIterator[Client]:
    """Establish the era with the MCP endpoint at `url` and yield a connected `Client`.

    `headers` go on every HTTP request; `auth` is a header dict for static credentials
    (`{"Authorization": "Bearer …"}`, or pass `bearer_token`); `oauth` obtains and renews
    them instead (`bastion.client.oauth.OAuthProvider`; not closed here, it may outlive the
    connection). `request_timeout` bounds each MCP request (progress resets it);
    `connect_timeout` and `read_timeout` bound the HTTP exchanges underneath. `listen=False`
    skips the legacy GET stream. `max_message_size` bounds a JSON body or SSE event (and the
    session's parser). `http` shares an `HTTPClient` (not closed here).

    On exit a legacy session is ended with DELETE and the connections are closed.
    """
    credentials = dict(auth or {})
    if bearer_token is not None:
        credentials["Authorization"] = f"Bearer {bearer_token}"
    channel = StreamableHTTPChannel(
        url,
        headers=headers,
        auth=credentials,
        timeouts=HTTPTimeouts(connect=connect_timeout, read=read_timeout),
        listen=listen,
        max_message_size=max_message_size,
        http=http,
        ssl=ssl,
        auth_provider=oauth,
    )
    connection = ClientConnection(
        channel,
        handlers=handlers,
        client_info=client_info,
        mode=mode,
        probe_timeout=probe_timeout,
        name=channel.display_url,
        log_level=log_level,
        default_timeout=request_timeout,
        max_message_size=max_message_size,
    )
    try:
        try:
            await connection.connect()
        except EraDetectionError as exc:
            # "Does not speak the modern protocol" hides an HTTP 401 or a refused connection.
            if channel.last_failure is None:
                raise
            raise EraDetectionError(f"{exc} (the server answered: {channel.last_failure})") from exc
        yield Client(connection)
    finally:
        await connection.aclose()


__all__ = ["connect_http"]
