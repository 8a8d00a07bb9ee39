"""What every client-side HTTP exchange shares: the aiohttp side of one MCP endpoint URL.

`HTTPWire` owns the aiohttp session, the timeouts and the headers sent on every request;
`failures()` turns library and SSE format errors into an `HTTPTransportError` that names the
cause, and `read_body()` bounds what a response may bring. The channel (`client.py`) and the
2024-11-05 fallback (`http_sse_fallback.py`) both exchange through it.

Every client module logs as `bastion.transport.http.client`, the one logger of the client side.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bastion import __version__
from bastion.protocol.errors import MCPError
from bastion.protocol.jsonrpc import JSONObject
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


class HTTPWire:
    """One MCP endpoint URL reached with aiohttp.

    `headers` (the caller's, credentials included) go on every request after the User-Agent;
    `http` is a shared aiohttp session, never closed here (None: one of our own, made when
    first needed); `ssl` configures our own session's connector.
    """

    def __init__(self, url: str, headers: dict[str, str], timeouts: HTTPTimeouts,
                 http: aiohttp.ClientSession | None, ssl: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        #: The URL without credentials or query, for messages and logs.
        self.display_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        self.timeouts = timeouts
        #: Sent on every request.
        self.base_headers = {"User-Agent": USER_AGENT, **headers}
        self._http = http
        self._owns_http = http is None
        self._ssl = ssl

    @property
    def connected(self) -> bool:
        """Whether an aiohttp session exists (there is a server to say goodbye to)."""
        return self._http is not None

    def client(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30, ssl=self._ssl),
                # Auto-decompression stays on; cookies are not MCP state: ignore them.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    def timeout(self, *, read: float | None, total: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total, sock_connect=self.timeouts.connect,
                                     sock_read=read)

    def short_timeout(self) -> aiohttp.ClientTimeout:
        """For a whole exchange that should be quick (`HTTPTimeouts.short`)."""
        return self.timeout(read=self.timeouts.short, total=self.timeouts.short)

    async def aclose(self) -> None:
        """Close the aiohttp session, unless the caller shared it."""
        if self._owns_http and self._http is not None:
            await self._http.close()

    @contextlib.contextmanager
    def failures(self, what: str) -> Iterator[None]:
        """Turn library and format errors into an `HTTPTransportError` that names the cause."""
        try:
            yield
        except HTTPTransportError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise HTTPTransportError(
                f"{what}: could not connect within {self.timeouts.connect:g} s",
                url=self.display_url) from None
        except aiohttp.SocketTimeoutError:
            raise HTTPTransportError(
                f"{what}: the server sent nothing for {self.timeouts.read:g} s (read timeout)",
                url=self.display_url) from None
        except TimeoutError:
            raise HTTPTransportError(f"{what}: timed out", url=self.display_url) from None
        except aiohttp.ClientConnectorError as exc:
            raise HTTPTransportError(f"{what}: cannot connect: {exc.os_error}",
                                     url=self.display_url) from None
        except aiohttp.ServerDisconnectedError:
            raise HTTPTransportError(f"{what}: the server closed the connection",
                                     url=self.display_url) from None
        except aiohttp.ClientPayloadError as exc:
            raise HTTPTransportError(f"{what}: the response body was cut off ({exc})",
                                     url=self.display_url) from None
        except aiohttp.ClientError as exc:
            raise HTTPTransportError(f"{what}: {type(exc).__name__}: {exc}",
                                     url=self.display_url) from None
        except SSEError as exc:
            raise HTTPTransportError(f"{what}: invalid SSE stream: {exc}",
                                     url=self.display_url) from None

    async def read_body(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """The whole body, or an `HTTPTransportError` once it passes `limit` bytes."""
        if response.content_length is not None and response.content_length > limit:
            raise HTTPTransportError(
                f"{what}: a body of {response.content_length} bytes exceeds the {limit}-byte "
                "limit", status=response.status, url=self.display_url)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise HTTPTransportError(f"{what}: the body exceeds the {limit}-byte limit",
                                         status=response.status, url=self.display_url)
            chunks.append(chunk)
        return b"".join(chunks)


__all__ = [
    "ACCEPT_POST",
    "ERROR_BODY_LIMIT",
    "HTTPStatusError",
    "HTTPTimeouts",
    "HTTPTransportError",
    "HTTPWire",
    "excerpt",
    "http_failure",
    "logger",
]
