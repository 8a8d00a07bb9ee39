"""The gateway's HTTP routes beside the MCP endpoint: what a client or a browser fetches.

The MCP endpoint itself is a raw ASGI app on the hot path; every other path falls through
to this small Starlette app (after the endpoint's Host check): the RFC 9728 protected
resource metadata at `/.well-known/oauth-protected-resource` and its path-inserted form,
so a client that got a 401 can find the authorization server, and whatever later parts of
the gateway mount (OAuth callbacks, the admin API).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

#: The metadata is public and fetched by browser-based clients from other origins.
_PUBLIC = {"access-control-allow-origin": "*", "cache-control": "max-age=300"}


def metadata_route(paths: Sequence[str], document: dict[str, Any]) -> list[BaseRoute]:
    """GET routes answering `document` (JSON) at each of `paths`."""

    async def metadata(_request: Request) -> Response:
        return JSONResponse(document, headers=_PUBLIC)

    return [Route(path, metadata, methods=["GET"]) for path in paths]


def web_app(routes: Sequence[BaseRoute]) -> Starlette:
    """The Starlette app serving `routes` (other paths: 404)."""
    return Starlette(routes=list(routes))
