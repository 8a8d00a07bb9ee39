"""Resources and resource templates (RFC 6570 simple `{var}` expansion, matched back)."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

ResourceFunction = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class Resource:
    uri: str
    name: str
    fn: ResourceFunction
    description: str | None = None
    title: str | None = None
    mime_type: str | None = None
    icons: list[dict[str, Any]] | None = None
    annotations: dict[str, Any] | None = None
    size: int | None = None
    subscribable: bool = False
    context_param: str | None = None

    def definition(self) -> dict[str, Any]:
        item: dict[str, Any] = {"uri": self.uri, "name": self.name}
        for key, value in (("title", self.title), ("description", self.description),
                           ("mimeType", self.mime_type), ("icons", self.icons),
                           ("annotations", self.annotations), ("size", self.size)):
            if value is not None:
                item[key] = value
        return item


@dataclass(slots=True)
class ResourceTemplate:
    uri_template: str
    name: str
    fn: ResourceFunction
    description: str | None = None
    title: str | None = None
    mime_type: str | None = None
    icons: list[dict[str, Any]] | None = None
    context_param: str | None = None
    _pattern: re.Pattern[str] | None = None

    def definition(self) -> dict[str, Any]:
        item: dict[str, Any] = {"uriTemplate": self.uri_template, "name": self.name}
        for key, value in (("title", self.title), ("description", self.description),
                           ("mimeType", self.mime_type), ("icons", self.icons)):
            if value is not None:
                item[key] = value
        return item

    def match(self, uri: str) -> dict[str, str] | None:
        """The template variables if `uri` is an expansion of this template."""
        if self._pattern is None:
            self._pattern = compile_template(self.uri_template)
        found = self._pattern.fullmatch(uri)
        return found.groupdict() if found else None


def compile_template(template: str) -> re.Pattern[str]:
    """A regex for a level-1 URI template: each `{name}` matches one path segment."""
    parts = re.split(r"\{([A-Za-z0-9_]+)\}", template)
    pattern = ""
    for index, part in enumerate(parts):
        pattern += re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/?#]+)"
    return re.compile(pattern)


def to_contents(uri: str, value: Any, mime_type: str | None) -> list[dict[str, Any]]:
    """Handler return value -> ReadResourceResult.contents."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and ("text" in value or "blob" in value):
        return [{"uri": uri, **value}]
    item: dict[str, Any] = {"uri": uri}
    if mime_type:
        item["mimeType"] = mime_type
    if isinstance(value, bytes | bytearray):
        item["blob"] = base64.b64encode(value).decode()
    else:
        item["text"] = value if isinstance(value, str) else str(value)
    return [item]
