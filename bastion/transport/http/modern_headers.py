"""The headers of a modern (2026-07-28) request, and the tool bookkeeping they need.

Every modern POST carries MCP-Protocol-Version (from `_meta`), Mcp-Method, Mcp-Name and, for
tools/call, an Mcp-Param-* header for each argument the tool's `x-mcp-header` annotations
name. `ModernHeaders` remembers those annotations from the tools/list results it sees; a
tool whose annotations are invalid is removed from the result with a warning and cannot be
called. A -32020 (HeaderMismatch) answer to tools/call means the annotations may have changed
since the listing: `relist()` lists the tools again, and the channel retries once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bastion.protocol.headers import (
    METHOD_HEADER,
    NAME_FIELDS,
    NAME_HEADER,
    PROTOCOL_VERSION_HEADER,
    InvalidHeaderAnnotation,
    encode_value,
    header_params,
    param_headers,
)
from bastion.protocol.jsonrpc import JSONObject
from bastion.protocol.meta import PROGRESS_TOKEN, PROTOCOL_VERSION, get_meta
from bastion.transport.http.wire import HTTPTransportError, logger

#: How many tools/list pages a re-list follows at the most.
MAX_TOOL_PAGES = 100


class ModernHeaders:
    """The routing headers of modern requests to one endpoint, and the tools they rely on."""

    def __init__(self, display_url: str) -> None:
        self.display_url = display_url
        #: `{tool name: {header name: property path}}` from modern tools/list results.
        self.tool_headers: dict[str, dict[str, tuple[str, ...]]] = {}
        #: Tools removed from tools/list for invalid x-mcp-header annotations, and why.
        self.rejected_tools: dict[str, str] = {}

    def for_request(self, message: JSONObject, version: str | None) -> dict[str, str]:
        """The MCP headers of a modern message (`version` when its `_meta` names none)."""
        headers: dict[str, str] = {}
        method = message.get("method")
        params = message.get("params") or {}
        version = get_meta(params).get(PROTOCOL_VERSION) or version
        if isinstance(version, str):
            headers[PROTOCOL_VERSION_HEADER] = version
        if isinstance(method, str):
            headers[METHOD_HEADER] = method
            headers.update(self._routing_headers(method, params))
        return headers

    def _routing_headers(self, method: str, params: JSONObject) -> dict[str, str]:
        headers: dict[str, str] = {}
        field_name = NAME_FIELDS.get(method)
        name = params.get(field_name) if field_name else None
        if isinstance(name, str):
            headers[NAME_HEADER] = encode_value(name)
        if method == "tools/call" and isinstance(name, str):
            if name in self.rejected_tools:
                raise HTTPTransportError(
                    f"tool {name!r} was rejected for invalid x-mcp-header annotations "
                    f"({self.rejected_tools[name]}); it cannot be called over HTTP")
            try:
                headers.update(param_headers(self.tool_headers.get(name, {}),
                                             params.get("arguments")))
            except ValueError as exc:
                raise HTTPTransportError(
                    f"tools/call {name!r}: an argument cannot be mirrored into its "
                    f"Mcp-Param header: {exc}") from None
        return headers

    def learn_tools(self, message: JSONObject) -> bool:
        """Record each listed tool's header parameters and drop invalid tools (True if any)."""
        result = message.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return False
        kept: list[Any] = []
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str):
                kept.append(tool)
                continue
            try:
                params = header_params(tool.get("inputSchema"))
            except InvalidHeaderAnnotation as exc:
                logger.warning("%s: tool %r dropped from tools/list: %s", self.display_url,
                               name, exc)
                self.rejected_tools[name] = str(exc)
                self.tool_headers.pop(name, None)
                continue
            self.rejected_tools.pop(name, None)
            self.tool_headers[name] = params
            kept.append(tool)
        if len(kept) == len(tools):
            return False
        result["tools"] = kept
        return True

    async def relist(self, failed: JSONObject,
                     list_tools: Callable[[JSONObject], Awaitable[JSONObject]]) -> None:
        """After HeaderMismatch on `failed` (a tools/call): learn every tools/list page again.

        `list_tools(params)` sends one tools/list with the same `_meta` and returns its result.
        """
        logger.info("%s: tools/call got HeaderMismatch; re-listing tools and retrying",
                    self.display_url)
        meta = dict(get_meta(failed.get("params")))
        meta.pop(PROGRESS_TOKEN, None)
        cursor: str | None = None
        for _page in range(MAX_TOOL_PAGES):
            params: JSONObject = {"_meta": meta}
            if cursor is not None:
                params["cursor"] = cursor
            result = await list_tools(params)
            self.learn_tools({"result": result})
            cursor = result.get("nextCursor") if isinstance(result.get("nextCursor"), str) else None
            if not cursor:
                return


__all__ = ["MAX_TOOL_PAGES", "ModernHeaders"]
