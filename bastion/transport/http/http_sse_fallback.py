"""The 2024-11-05 HTTP+SSE transport: the client's fallback for servers that predate
Streamable HTTP.

A GET on the URL opens one SSE stream that carries every server message; its first event,
`endpoint`, names the URL (on the same origin) that every client message is POSTed to. A 2xx
there says no more: answers come on the stream. The channel opens this transport when an
`initialize` is refused with 400/404/405. It has no resumption: the session ends with the
stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from bastion.protocol.jsonrpc import JSONObject, RequestId
from bastion.transport.http.sse_parser import SSE_MEDIA_TYPE, SSEDecoder, SSEEvent
from bastion.transport.http.wire import (
    ERROR_BODY_LIMIT,
    HTTPStatusError,
    HTTPTransportError,
    HTTPWire,
    Response,
    excerpt,
    logger,
)


class HTTPSSETransport:
    """An open HTTP+SSE session: its event stream, and the endpoint that takes the POSTs."""

    def __init__(self, wire: HTTPWire, endpoint: str, response: Response,
                 decoder: SSEDecoder, events: list[SSEEvent]) -> None:
        self.wire = wire
        #: The URL every client message is POSTed to.
        self.endpoint = endpoint
        self._response = response
        self._decoder = decoder
        #: Events read in the same chunk as the `endpoint` event.
        self._early_events = events
        #: Requests posted whose answers have not come on the stream yet, and their methods.
        self._pending: dict[RequestId, str] = {}

    @classmethod
    async def open(cls, wire: HTTPWire, max_message_size: int) -> HTTPSSETransport | None:
        """GET the URL; a first `endpoint` event means the old HTTP+SSE transport."""
        what = f"GET {wire.display_url} (HTTP+SSE endpoint)"
        response: Response | None = None
        decoder = SSEDecoder.for_messages(max_message_size)
        events: list[SSEEvent] = []
        target: str | None = None
        try:
            with wire.failures(what):
                response = await wire.request(
                    "GET", {**wire.base_headers, "Accept": SSE_MEDIA_TYPE}, read=None)
                if response.status == 200 and response.content_type == SSE_MEDIA_TYPE:
                    async with asyncio.timeout(wire.timeouts.short):
                        async for chunk in response.chunks():
                            events = decoder.feed(chunk)
                            if events:
                                break
                if events and events[0].event == "endpoint":
                    target = urljoin(wire.url, events[0].text.strip())
                    if _origin(target) != _origin(wire.url):
                        logger.warning("%s: the HTTP+SSE endpoint %r is on another origin; "
                                       "refused", wire.display_url, target)
                        target = None
        except HTTPTransportError as exc:
            logger.debug("%s: no HTTP+SSE transport either (%s)", wire.display_url, exc)
        finally:
            if target is None and response is not None:
                response.close()
        if target is None or response is None:
            return None
        logger.info("%s speaks the 2024-11-05 HTTP+SSE transport; posting to %s",
                    wire.display_url, target)
        return cls(wire, target, response, decoder, events[1:])

    async def read(self, on_event: Callable[[SSEEvent], None]) -> None:
        """Hand each event of the stream to `on_event` until the stream ends or fails."""
        display_url = self.wire.display_url
        try:
            for event in self._early_events:
                on_event(event)
            with self.wire.failures(f"GET {display_url}"):
                async for chunk in self._response.chunks():
                    for event in self._decoder.feed(chunk):
                        on_event(event)
            logger.info("%s closed the HTTP+SSE stream", display_url)
        except HTTPTransportError as exc:
            logger.warning("%s: the HTTP+SSE stream failed: %s", display_url, exc)
        finally:
            self._response.close()

    def forget(self, request_id: RequestId) -> str | None:
        """Stop waiting for a request's answer; returns its method, if it was awaited."""
        return self._pending.pop(request_id, None)

    async def post_request(self, message: JSONObject, data: bytes) -> None:
        """POST a request; its answer will come on the stream."""
        # Remembered until the answer arrives on the stream (the POST only says 202).
        self._pending[message["id"]] = message["method"]
        try:
            await self.post(data, message["method"])
        except BaseException:
            self._pending.pop(message["id"], None)
            raise

    async def post(self, data: bytes, method: str) -> None:
        """POST one message to the endpoint; anything but a 2xx raises HTTPStatusError."""
        wire = self.wire
        what = f"POST {self.endpoint} ({method})"
        with wire.failures(what):
            async with await wire.short(
                    "POST", {**wire.base_headers, "Content-Type": "application/json"}, data,
                    url=self.endpoint) as response:
                if not 200 <= response.status < 300:
                    body = await wire.read_body(response, ERROR_BODY_LIMIT, what)
                    raise HTTPStatusError(
                        f"{what}: HTTP {response.status}: {excerpt(body)}",
                        status=response.status, url=self.endpoint)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


__all__ = ["HTTPSSETransport"]
