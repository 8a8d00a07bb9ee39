"""Tools: definitions, argument validation, and turning handler returns into results."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from bastion.server.context import call_handler, context_parameter
from bastion.server.schemas import SchemaValidator, infer_input_schema

TaskSupport = Literal["forbidden", "optional", "required"]
ToolFunction = Callable[..., Awaitable[Any]]


class ToolError(Exception):
    """Raise in a tool to return `isError: true` with this message (a tool error, not a
    protocol error, so the model can see it and correct itself)."""


@dataclass(slots=True)
class ToolResult:
    """An explicit tool result, for full control over content and structured content."""

    content: list[dict[str, Any]] = field(default_factory=list)
    structured: Any = None
    is_error: bool = False
    meta: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"content": self.content}
        if self.structured is not None:
            result["structuredContent"] = self.structured
        if self.is_error:
            result["isError"] = True
        if self.meta:
            result["_meta"] = self.meta
        return result


@dataclass(slots=True)
class Tool:
    name: str
    fn: ToolFunction
    input_schema: dict[str, Any]
    description: str | None = None
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    task_support: TaskSupport = "forbidden"
    meta: dict[str, Any] | None = None
    context_param: str | None = None
    _validator: SchemaValidator | None = None

    def definition(self, *, include_execution: bool = True) -> dict[str, Any]:
        tool: dict[str, Any] = {"name": self.name, "inputSchema": self.input_schema}
        if self.title:
            tool["title"] = self.title
        if self.description is not None:
            tool["description"] = self.description
        if self.output_schema is not None:
            tool["outputSchema"] = self.output_schema
        if self.annotations:
            tool["annotations"] = self.annotations
        if self.icons:
            tool["icons"] = self.icons
        if include_execution and self.task_support != "forbidden":
            tool["execution"] = {"taskSupport": self.task_support}
        if self.meta:
            tool["_meta"] = self.meta
        return tool

    def argument_errors(self, arguments: dict[str, Any]) -> list[str]:
        if self._validator is None:
            self._validator = SchemaValidator(self.input_schema)
        return self._validator.errors(arguments)

    async def invoke(self, arguments: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            returned = await call_handler(self.fn, arguments, self.context_param, context)
        except ToolError as exc:
            return ToolResult([{"type": "text", "text": str(exc)}], is_error=True).to_dict()
        return self.to_result(returned)

    def to_result(self, returned: Any) -> dict[str, Any]:
        """Handler return value -> CallToolResult."""
        if isinstance(returned, ToolResult):
            return returned.to_dict()
        if self.output_schema is not None and not isinstance(returned, str | list):
            text = orjson.dumps(returned).decode()
            return {"content": [{"type": "text", "text": text}], "structuredContent": returned}
        if isinstance(returned, str):
            return {"content": [{"type": "text", "text": returned}]}
        if _is_content(returned):
            return {"content": [returned]}
        if isinstance(returned, list) and all(_is_content(item) for item in returned):
            return {"content": returned}
        if returned is None:
            return {"content": []}
        return {"content": [{"type": "text", "text": orjson.dumps(returned).decode()}]}


#: The content block types of a CallToolResult: a returned dict of one of these is content;
#: any other value (a list of records, say) is data, sent as JSON text.
CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


def _is_content(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in CONTENT_TYPES


def make_tool(
    fn: ToolFunction,
    *,
    name: str | None,
    description: str | None,
    input_schema: dict[str, Any] | None,
    **options: Any,
) -> Tool:
    """A Tool from a coroutine function; the schema is inferred unless given."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"tool {fn.__name__!r} must be an async function")
    context_param = context_parameter(fn)
    skip = {context_param} if context_param else set()
    schema = input_schema if input_schema is not None else infer_input_schema(fn, skip)
    return Tool(
        name=name or fn.__name__,
        fn=fn,
        input_schema=schema,
        description=description if description is not None else inspect.getdoc(fn),
        context_param=context_param,
        **options,
    )

