"""SSRF-safe egress: fetching URLs that a (possibly malicious) server handed us.

An MCP server's `WWW-Authenticate` names a metadata URL, its metadata names authorization
servers, and their metadata names endpoints: every one of those URLs is chosen by someone
else, and fetching them blindly turns Bastion into a proxy into its own network (cloud
metadata at 169.254.169.254, an admin port on 127.0.0.1). `EgressPolicy` says which URLs may
be fetched, `EgressClient` fetches them:

* https only; plain http only for a loopback host (`localhost`, 127.0.0.0/8, ::1) and only
  with the explicit `allow_insecure_loopback` opt-in, meant for development and tests
  (SPEC-SSRF-01);
* no private, reserved, link-local, shared, multicast or unspecified address, judged by
  `ipaddress`, for literal hosts and for every address a name resolves to; IPv4-mapped IPv6
  is refused and 6to4 / NAT64 addresses are judged by the IPv4 address inside; numeric IPv4
  spellings other than the dotted quad (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`,
  `127.1`) are refused outright, since parsers disagree about them (SPEC-SSRF-02);
* a name is resolved once per connection, every answer is checked, and the connection goes
  to the checked address while TLS SNI and the Host header keep the name, so a resolver that
  answers differently the second time cannot smuggle a request in (SPEC-SSRF-04);
* redirects are never followed: a 3xx is handed back as it is (SPEC-SSRF-03);
* every response is read to a size cap within a total timeout.

`allowed_networks` lets an operator open specific internal ranges (an identity provider on
10.1.2.0/24, say) without opening all of them. `check_browser_url` is the separate, looser
rule for URLs shown to a person to open (authorization and elicitation URLs, SPEC-SSRF-08).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import orjson

from bastion.transport.http.h1client import HTTPClient, HTTPClientError, ResponseHeaders
from bastion.transport.http.wire import USER_AGENT

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: `resolver(host, port)`: every address the name has (tests plug in their own).
NameResolver = Callable[[str, int], Awaitable[list[str]]]

#: The largest body an egress response may have unless the caller says otherwise.
DEFAULT_MAX_RESPONSE = 256 * 1024
#: The whole exchange (connect, send, read) unless the caller says otherwise.
DEFAULT_TIMEOUT = 10.0
MAX_URL_LENGTH = 4096
_LOOPBACK_NAMES = frozenset({"localhost"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\"'<>\\^`{|}]")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class EgressError(Exception):
    """An outgoing request to a server-supplied URL did not happen or did not complete."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        #: The URL without credentials or query, safe to log.
        self.url = url


class EgressRefused(EgressError):
    """The egress policy refused the URL or the address its host resolves to."""


class EgressFailed(EgressError):
    """The request was allowed but failed: connection, timeout, or a response too large."""


def display_url(url: str) -> str:
    """`url` without credentials, query or fragment (what messages and logs may show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:200]


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Which server-supplied URLs may be fetched (see the module doc)."""

    #: Plain http to `localhost` / 127.0.0.0/8 / ::1, and loopback addresses at all, for
    #: development and tests. Never on in production.
    allow_insecure_loopback: bool = False
    #: Internal ranges the operator trusts (still https only).
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_response_size: int = DEFAULT_MAX_RESPONSE
    timeout: float = DEFAULT_TIMEOUT

    def check_url(self, url: str) -> SplitResult:
        """The parsed URL if it may be fetched as far as its text says; `EgressRefused`
        otherwise (names are judged again, by address, when they are resolved)."""
        shown = display_url(url) if isinstance(url, str) else repr(url)[:80]
        if not isinstance(url, str) or not url:
            raise EgressRefused("an empty or non-string URL", shown)
        if len(url) > MAX_URL_LENGTH or any(ord(c) <= 0x20 or c == "\x7f" for c in url):
            raise EgressRefused(f"the URL {shown} is too long or contains whitespace or "
                                "control characters", shown)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"the URL {shown} is malformed ({exc})", shown) from None
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if scheme not in ("http", "https") or not host:
            raise EgressRefused(f"only https URLs with a host may be fetched, not {shown}",
                                shown)
        if "@" in parts.netloc:
            raise EgressRefused(f"the URL {shown} carries credentials in its authority", shown)
        if port == 0:
            raise EgressRefused(f"the URL {shown} names port 0", shown)
        loopback_host = self.is_loopback_host(host)
        if scheme == "http" and not (loopback_host and self.allow_insecure_loopback):
            raise EgressRefused(
                f"{shown}: plain http is refused; use https (http is allowed only for a "
                "loopback host with allow_insecure_loopback, for development)", shown)
        literal = ip_literal(host)
        if literal is not None:
            problem = self.address_problem(literal, loopback_host)
            if problem is not None:
                raise EgressRefused(f"{shown}: {problem}", shown)
        elif host.endswith(".") or host.endswith(".localhost"):
            raise EgressRefused(f"{shown}: the host name {host!r} is refused (a trailing dot "
                                "or a .localhost name)", shown)
        return parts

    def is_loopback_host(self, host: str) -> bool:
        """Whether the URL's host is itself loopback (`localhost` or a loopback literal)."""
        if host in _LOOPBACK_NAMES:
            return True
        literal = ip_literal(host)
        return literal is not None and literal.is_loopback

    def address_problem(self, address: IPAddress, loopback_host: bool = False) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed.

        `loopback_host`: the URL named a loopback host itself (not a name that resolved to
        loopback), which the opt-in allows.
        """
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return f"the IPv4-mapped IPv6 address {address} is refused"
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                problem = self.address_problem(embedded)
                return None if problem is None else f"{address} embeds {embedded}: {problem}"
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_loopback:
            if loopback_host and self.allow_insecure_loopback:
                return None
            return f"the loopback address {address} is refused"
        if address.is_multicast:
            return f"the multicast address {address} is refused"
        if address.is_link_local:
            return f"the link-local address {address} is refused (cloud metadata lives there)"
        if address.is_unspecified or not address.is_global or address.is_reserved:
            return f"the private or reserved address {address} is refused"
        return None


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names literally; `EgressRefused` for non-dotted-quad IPv4 forms."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    # inet_aton accepts 127.1, 2852039166, 0xA9FEA9FE, 0251.0376.0251.0376 ...: other parsers
    # read those differently, so none of them is accepted, whatever it points at.
    raise EgressRefused(f"the numeric host {host!r} (= {ipaddress.IPv4Address(packed)}) is not a "
                        "dotted-quad IPv4 address and is refused", host)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_browser_url(url: str) -> str:
    """SPEC-SSRF-08: a URL a person is asked to open must be plain http(s) with no tricks.

    Returns the host to show them. Refuses other schemes (`javascript:`, `data:`, `file:`,
    `vbscript:`), credentials in the authority, and characters a shell or an HTML attribute
    would treat specially.
    """
    shown = display_url(url) if isinstance(url, str) else repr(url)[:80]
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise EgressRefused("the URL is empty, not a string, or too long", shown)
    if _UNSAFE_CHARS.search(url):
        raise EgressRefused(f"the URL {shown} contains whitespace, quotes or control "
                            "characters", shown)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise EgressRefused(f"the URL {shown} is malformed ({exc})", shown) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise EgressRefused(f"only http(s) URLs may be opened, not {parts.scheme or '?'}:",
                            shown)
    if "@" in parts.netloc:
        raise EgressRefused(f"the URL {shown} hides its host behind credentials", shown)
    return parts.hostname


@dataclass(frozen=True, slots=True)
class EgressResponse:
    """A whole response to an egress request (redirects are not followed)."""

    status: int
    headers: ResponseHeaders
    body: bytes
    url: str

    @property
    def location(self) -> str | None:
        """The Location of a redirect, if this is one."""
        return self.headers.get("location") if self.status in _REDIRECTS else None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; `EgressFailed` when it is anything else."""
        try:
            value = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise EgressFailed(f"{display_url(self.url)} answered HTTP {self.status} with a body "
                               "that is not a JSON object", display_url(self.url))
        return value


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver has for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class EgressClient:
    """Fetches server-supplied URLs under an `EgressPolicy` (see the module doc).

    `resolver` lists a name's addresses (the system's by default); `ssl` is passed to the
    underlying `HTTPClient` (True, False for tests only, or an `ssl.SSLContext`).
    """

    def __init__(self, policy: EgressPolicy | None = None, *,
                 resolver: NameResolver | None = None,
                 ssl: ssl_module.SSLContext | bool = True) -> None:
        self.policy = policy or EgressPolicy()
        self._resolver = resolver or system_resolver
        self._ssl = ssl
        self._http: HTTPClient | None = None

    async def pin(self, host: str, port: int) -> str:
        """The address a new connection to `host` goes to: every answer checked, the first
        one used. `EgressRefused` when any answer is refused (fail closed)."""
        loopback_host = self.policy.is_loopback_host(host)
        literal = ip_literal(host)
        if literal is not None:
            problem = self.policy.address_problem(literal, loopback_host)
            if problem is not None:
                raise EgressRefused(f"{host}: {problem}", host)
            return str(literal)
        try:
            answers = await self._resolver(host, port)
        except OSError as exc:
            raise EgressFailed(f"cannot resolve {host}: {exc}", host) from None
        if not answers:
            raise EgressFailed(f"{host} has no address", host)
        addresses = [_parse_answer(host, answer) for answer in answers]
        for address in addresses:
            problem = self.policy.address_problem(address, loopback_host)
            if problem is not None:
                raise EgressRefused(f"{host} resolves to a refused address: {problem}", host)
        return str(addresses[0])

    def _client(self) -> HTTPClient:
        if self._http is None:
            self._http = HTTPClient(connect_timeout=self.policy.timeout, limit=8,
                                    ssl=self._ssl, resolve=self.pin)
        return self._http

    async def fetch(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                    body: bytes | None = None, max_size: int | None = None,
                    timeout: float | None = None) -> EgressResponse:
        """One request, its whole response (a redirect is returned, never followed)."""
        self.policy.check_url(url)
        shown = display_url(url)
        limit = max_size if max_size is not None else self.policy.max_response_size
        total = timeout if timeout is not None else self.policy.timeout
        request_headers = {"User-Agent": USER_AGENT, "Accept": "application/json",
                           "Accept-Encoding": "identity", **(headers or {})}
        try:
            async with asyncio.timeout(total):
                response = await self._client().request(
                    method, url, request_headers, body, read_timeout=total,
                    total_timeout=total)
                async with response:
                    data = await response.read(limit)
        except TimeoutError:
            raise EgressFailed(f"{method} {shown}: no complete answer within {total:g} s",
                               shown) from None
        except HTTPClientError as exc:
            raise EgressFailed(f"{method} {shown}: {exc}", shown) from None
        except ValueError as exc:  # a header value the HTTP client refuses
            raise EgressRefused(f"{method} {shown}: {exc}", shown) from None
        return EgressResponse(response.status, response.headers, data, url)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _parse_answer(host: str, answer: str) -> IPAddress:
    try:
        # A scoped IPv6 answer (fe80::1%eth0) carries its zone after '%'.
        return ipaddress.ip_address(answer.partition("%")[0])
    except ValueError:
        raise EgressFailed(f"{host} resolved to {answer!r}, which is not an address",
                           host) from None


def networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`allowed_networks` from configuration strings (`10.1.2.0/24`)."""
    return tuple(ipaddress.ip_network(value, strict=True) for value in values)


__all__ = [
    "DEFAULT_MAX_RESPONSE",
    "DEFAULT_TIMEOUT",
    "EgressClient",
    "EgressError",
    "EgressFailed",
    "EgressPolicy",
    "EgressRefused",
    "EgressResponse",
    "NameResolver",
    "check_browser_url",
    "display_url",
    "ip_literal",
    "networks",
    "system_resolver",
]
