"""What every client-side HTTP exchange shares: the HTTP side of one MCP endpoint URL.

`HTTPWire` owns the HTTP client (`h1client.HTTPClient`), the timeouts and the headers sent on
every request; `failures()` turns client and SSE format errors into an `HTTPTransportError`
that names the cause, and `read_body()` bounds what a response may bring. The channel
(`client.py`) and the 2024-11-05 fallback (`http_sse_fallback.py`) both exchange through it.

Credentials that change (an OAuth client) plug in as an `HTTPAuth`: the wire asks it for the
`Authorization` value of every request, and the channel hands it every 401, and every 403
that asks for more scope, to learn whether re-sending the request once is worth it.

Every client module logs as `bastion.transport.http.client`, the one logger of the client side.
"""

from __future__ import annotations

import logging
import ssl as ssl_module
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

from bastion import __version__
from bastion.protocol.errors import MCPError
from bastion.protocol.jsonrpc import JSONObject
from bastion.transport.http.h1client import (
    HTTPClient,
    HTTPClientError,
    IncompleteBody,
    ProtocolError,
    Response,
    ServerDisconnected,
)
from bastion.transport.http.sse_parser import SSE_MEDIA_TYPE, SSEError

logger = logging.getLogger("bastion.transport.http.client")

ACCEPT_POST = f"application/json, {SSE_MEDIA_TYPE}"
USER_AGENT = f"bastion/{__version__}"
#: How much of an error body is read (it is only quoted in the error message).
ERROR_BODY_LIMIT = 64 * 1024


# -- errors ----------------------------------------------------------------------------------


class HTTPTransportError(Exception):
    """An HTTP exchange failed without a JSON-RPC answer (network, timeout, status, SSE)."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None,
                 www_authenticate: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.www_authenticate = www_authenticate

    def details(self) -> JSONObject:
        """What `data["http"]` of the delivered error says."""
        info: JSONObject = {"error": type(self).__name__}
        if self.status is not None:
            info["status"] = self.status
        if self.url is not None:
            info["url"] = self.url
        if self.www_authenticate is not None:
            info["wwwAuthenticate"] = self.www_authenticate
        return info


class HTTPStatusError(HTTPTransportError):
    """The server answered with an HTTP error status and no JSON-RPC error body."""


def http_failure(exc: MCPError) -> JSONObject | None:
    """The HTTP details of an error this transport delivered itself, or None."""
    data = exc.data
    if isinstance(data, dict) and isinstance(data.get("http"), dict):
        return data["http"]
    return None


def excerpt(body: bytes) -> str:
    """The start of an error body, as text to quote in a message."""
    return body[:200].decode("utf-8", "replace").strip()


# -- changing credentials --------------------------------------------------------------------


class HTTPAuth(Protocol):
    """Credentials for one MCP endpoint that can be obtained and renewed (an OAuth client).

    `generation` changes whenever the credential does, so a challenge to a request sent with
    an older credential is answered by re-sending it, not by authorizing again.
    """

    @property
    def generation(self) -> int: ...

    async def authorization(self) -> str | None:
        """The `Authorization` header value for the next request (None: send none)."""
        ...

    async def challenged(self, status: int, www_authenticate: str | None,
                         generation: int) -> bool:
        """The server answered `status` (401, or 403 with `insufficient_scope`) to a request
        sent at `generation`: obtain better credentials if that can help. True means
        "re-send the request"; an exception means authorization failed (fail closed)."""
        ...


# -- the wire --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPTimeouts:
    """Every HTTP wait is bounded; the session's own request timeout applies on top."""

    #: Opening a TCP (and TLS) connection.
    connect: float = 10.0
    #: Silence on a response (before its headers, or between bytes of its body or stream).
    read: float = 300.0
    #: Whole exchanges that should be quick: notifications, replies, the SSE endpoint.
    short: float = 30.0
    #: The DELETE that ends a legacy session when the channel closes.
    close: float = 5.0


class _Failures:
    """`HTTPWire.failures()`: a plain context manager, as it wraps every exchange."""

    __slots__ = ("display_url", "what")

    def __init__(self, what: str, display_url: str) -> None:
        self.what = what
        self.display_url = display_url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc is None or isinstance(exc, HTTPTransportError):
            return
        what, url = self.what, self.display_url
        if isinstance(exc, ServerDisconnected):
            raise HTTPTransportError(f"{what}: the server closed the connection", url=url) from None
        if isinstance(exc, IncompleteBody):
            raise HTTPTransportError(f"{what}: the response body was cut off", url=url) from None
        if isinstance(exc, HTTPClientError):  # connect and read failures say what they were
            raise HTTPTransportError(f"{what}: {exc}", url=url) from None
        if isinstance(exc, TimeoutError):
            raise HTTPTransportError(f"{what}: timed out", url=url) from None
        if isinstance(exc, SSEError):
            raise HTTPTransportError(f"{what}: invalid SSE stream: {exc}", url=url) from None


class HTTPWire:
    """One MCP endpoint URL reached with Bastion's HTTP/1.1 client (`h1client`).

    `headers` (the caller's, credentials included) go on every request after the User-Agent;
    `http` is a shared `HTTPClient`, never closed here (None: one of our own, made when first
    needed); `ssl` configures our own client's TLS (True, False or an `ssl.SSLContext`);
    `auth` supplies an `Authorization` that replaces any static one (`authorize()`).
    """

    def __init__(self, url: str, headers: dict[str, str], timeouts: HTTPTimeouts,
                 http: HTTPClient | None, ssl: ssl_module.SSLContext | bool,
                 auth: HTTPAuth | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        #: The URL without credentials or query, for messages and logs.
        self.display_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        self.timeouts = timeouts
        if auth is not None:  # the provider's credential is the only one sent
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        #: Sent on every request.
        self.base_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        self.auth = auth
        self._http = http
        self._owns_http = http is None
        self._ssl = ssl

    @property
    def connected(self) -> bool:
        """Whether a client exists (there is a server to say goodbye to)."""
        return self._http is not None

    def client(self) -> HTTPClient:
        """The HTTP client, created on first use."""
        if self._http is None:
            self._http = HTTPClient(connect_timeout=self.timeouts.connect, ssl=self._ssl)
        return self._http

    async def authorize(self, headers: dict[str, str]) -> None:
        """Add the auth provider's current `Authorization` (if any) to `headers`."""
        if self.auth is not None:
            value = await self.auth.authorization()
            if value is not None:
                headers["Authorization"] = value

    def request(self, method: str, headers: dict[str, str], body: bytes | None = None, *,
                read: float | None, total: float | None = None,
                url: str | None = None) -> Awaitable[Response]:
        """Send one request to the endpoint (or `url`); the response once its headers are in.

        `read` bounds each silence of the server, `total` the whole exchange.
        """
        return self.client().request(method, url or self.url, headers, body,
                                     read_timeout=read, total_timeout=total)

    def short(self, method: str, headers: dict[str, str], body: bytes | None = None, *,
              url: str | None = None) -> Awaitable[Response]:
        """A whole exchange that should be quick (`HTTPTimeouts.short`)."""
        short = self.timeouts.short
        return self.request(method, headers, body, read=short, total=short, url=url)

    async def aclose(self) -> None:
        """Close the client, unless the caller shared it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    def failures(self, what: str) -> _Failures:
        """Turn client and format errors into an `HTTPTransportError` that names the cause."""
        return _Failures(what, self.display_url)

    async def read_body(self, response: Response, limit: int, what: str) -> bytes:
        """The whole body, or an `HTTPTransportError` once it passes `limit` bytes."""
        try:
            return await response.read(limit)
        except ProtocolError as exc:
            raise HTTPTransportError(f"{what}: {exc}", status=response.status,
                                     url=self.display_url) from None


__all__ = [
    "ACCEPT_POST",
    "ERROR_BODY_LIMIT",
    "USER_AGENT",
    "HTTPAuth",
    "HTTPStatusError",
    "HTTPTimeouts",
    "HTTPTransportError",
    "HTTPWire",
    "Response",
    "excerpt",
    "http_failure",
    "logger",
]
