"""Prompts: definitions with arguments, and turning handler returns into messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bastion.protocol.errors import InvalidParams

PromptFunction = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = False
    title: str | None = None

    def definition(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name}
        if self.title:
            item["title"] = self.title
        if self.description:
            item["description"] = self.description
        if self.required:
            item["required"] = True
        return item


@dataclass(slots=True)
class Prompt:
    name: str
    fn: PromptFunction
    description: str | None = None
    title: str | None = None
    arguments: list[PromptArgument] | None = None
    icons: list[dict[str, Any]] | None = None
    context_param: str | None = None

    def definition(self) -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name}
        if self.title:
            item["title"] = self.title
        if self.description:
            item["description"] = self.description
        if self.arguments:
            item["arguments"] = [argument.definition() for argument in self.arguments]
        if self.icons:
            item["icons"] = self.icons
        return item

    def check_arguments(self, arguments: dict[str, Any]) -> dict[str, str]:
        known = {argument.name for argument in self.arguments or []}
        missing = [a.name for a in self.arguments or [] if a.required and a.name not in arguments]
        if missing:
            raise InvalidParams(
                f"prompt {self.name!r} needs the argument(s) {', '.join(missing)}",
                data={"missing": missing},
            )
        bad = [k for k, v in arguments.items() if not isinstance(v, str)]
        if bad:
            raise InvalidParams(f"prompt arguments must be strings: {', '.join(bad)}")
        return {k: v for k, v in arguments.items() if k in known}


def to_prompt_result(value: Any, description: str | None) -> dict[str, Any]:
    """Handler return value -> GetPromptResult."""
    if isinstance(value, dict) and "messages" in value:
        return value
    if isinstance(value, str):
        messages = [{"role": "user", "content": {"type": "text", "text": value}}]
    else:
        messages = list(value)
    result: dict[str, Any] = {"messages": messages}
    if description:
        result["description"] = description
    return result
