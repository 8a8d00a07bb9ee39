"""`Client`: an MCP client for both eras, over any connected `ClientConnection`.

Lists follow every page; calls that the server answers with `input_required` (modern MRTR)
are answered through the same handlers that serve a legacy server's sampling, elicitation
and roots requests, and retried with a new id, `inputResponses`, and the `requestState`
echoed byte for byte.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bastion.protocol.errors import MCPError, ProtocolError
from bastion.protocol.results import INPUT_REQUIRED, result_type
from bastion.protocol.versions import Era
from bastion.session.client_side import ClientConnection, ServerDescription
from bastion.session.core import ProgressCallback

#: A bound on MRTR rounds, so a server that keeps asking cannot loop a client forever.
DEFAULT_MAX_ROUNDS = 16


class Client:
    """High-level MCP operations on a connected server."""

    def __init__(
        self, connection: ClientConnection, *, max_rounds: int = DEFAULT_MAX_ROUNDS
    ) -> None:
        self.connection = connection
        self.max_rounds = max_rounds

    @property
    def server(self) -> ServerDescription:
        if self.connection.server is None:
            raise RuntimeError("not connected")
        return self.connection.server

    @property
    def era(self) -> Era:
        return self.connection.era

    @property
    def protocol_version(self) -> str:
        return self.connection.version

    # -- lists -----------------------------------------------------------------------------

    async def _list_all(self, method: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page_params = dict(params)
            if cursor is not None:
                page_params["cursor"] = cursor
            result = await self.connection.request(method, page_params or None)
            page = result.get(key)
            if not isinstance(page, list):
                raise ProtocolError(f"{method} result has no {key!r} list")
            items.extend(page)
            cursor = result.get("nextCursor")
            if not cursor:
                return items
            if cursor in seen:
                raise ProtocolError(f"{method}: the server repeated cursor {cursor!r}")
            seen.add(cursor)

    async def list_tools(self) -> list[dict[str, Any]]:
        return await self._list_all("tools/list", "tools")

    async def list_resources(self) -> list[dict[str, Any]]:
        return await self._list_all("resources/list", "resources")

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        return await self._list_all("resources/templates/list", "resourceTemplates")

    async def list_prompts(self) -> list[dict[str, Any]]:
        return await self._list_all("prompts/list", "prompts")

    # -- requests that may need input (MRTR) ----------------------------------------------

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Call a tool; a tool failure is a result with `isError: true`, not an exception."""
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self._request_with_inputs("tools/call", params, timeout, on_progress)

    async def read_resource(self, uri: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await self._request_with_inputs("resources/read", {"uri": uri}, timeout, None)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return await self._request_with_inputs("prompts/get", params, timeout, None)

    async def _request_with_inputs(
        self,
        method: str,
        params: dict[str, Any],
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        current = params
        for _round in range(self.max_rounds):
            result = await self.connection.request(
                method, current, timeout=timeout, on_progress=on_progress
            )
            if result_type(result) != INPUT_REQUIRED:
                return result
            requests = result.get("inputRequests") or {}
            if not isinstance(requests, dict):
                raise ProtocolError(f"{method}: inputRequests must be an object")
            current = dict(params)
            if requests:
                current["inputResponses"] = await self._answer_all(requests)
            if "requestState" in result:
                current["requestState"] = result["requestState"]
        raise ProtocolError(
            f"{method}: the server still asked for input after {self.max_rounds} rounds"
        )

    async def _answer_all(self, requests: dict[str, Any]) -> dict[str, Any]:
        keys = list(requests)
        answers = await asyncio.gather(*(self._answer(requests[k]) for k in keys))
        return dict(zip(keys, answers, strict=True))

    async def _answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise ProtocolError(f"malformed input request: {request!r:.100}")
        handlers = self.connection.handlers
        method = request["method"]
        params = request.get("params") or {}
        if method == "sampling/createMessage" and handlers.sampling is not None:
            return await handlers.sampling(params)
        if method == "elicitation/create" and handlers.elicitation is not None:
            return await handlers.elicitation(params)
        if method == "roots/list" and handlers.roots is not None:
            return {"roots": await handlers.roots()}
        raise ProtocolError(
            f"the server asked for {method!r}, which this client did not declare"
        )

    # -- other operations ------------------------------------------------------------------

    async def complete(
        self,
        ref: dict[str, Any],
        argument: dict[str, str],
        context_arguments: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"ref": ref, "argument": argument}
        if context_arguments:
            params["context"] = {"arguments": context_arguments}
        result = await self.connection.request("completion/complete", params)
        return result.get("completion") or {}

    async def ping(self) -> None:
        """Legacy only: the modern era has no ping."""
        self._require_legacy("ping")
        await self.connection.request("ping")

    async def set_logging_level(self, level: str) -> None:
        """Legacy: logging/setLevel. Modern clients pass `log_level` when connecting."""
        self._require_legacy("logging/setLevel")
        await self.connection.request("logging/setLevel", {"level": level})

    async def subscribe_resource(self, uri: str) -> None:
        self._require_legacy("resources/subscribe")
        await self.connection.request("resources/subscribe", {"uri": uri})

    async def unsubscribe_resource(self, uri: str) -> None:
        self._require_legacy("resources/unsubscribe")
        await self.connection.request("resources/unsubscribe", {"uri": uri})

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Any request, in the connection's era (raw result)."""
        return await self.connection.request(method, params)

    def _require_legacy(self, method: str) -> None:
        if self.era is Era.MODERN:
            raise MCPError(f"{method} does not exist in the modern protocol "
                           f"({self.protocol_version})")

    async def aclose(self) -> None:
        await self.connection.aclose()
