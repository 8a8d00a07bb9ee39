"""Resources and resource templates (RFC 6570 URI templates, matched back to variables)."""

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

    def __post_init__(self) -> None:
        # A bad template fails where it is registered, not on the first read.
        self._pattern = compile_template(self.uri_template)

    def match(self, uri: str) -> dict[str, str] | None:
        """The template variables if `uri` is an expansion of this template."""
        found = (self._pattern or compile_template(self.uri_template)).fullmatch(uri)
        if found is None:
            return None
        # Query-style variables are optional: one that is absent does not become an argument.
        return {name: value for name, value in found.groupdict().items() if value is not None}


class InvalidTemplate(ValueError):
    """A URI template this module cannot match URIs against; `template` and `reason` say why."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"invalid URI template {template[:200]!r}: {reason}")
        self.template = template
        self.reason = reason


#: Bounds on what `compile_template` accepts (a template may come from an upstream server).
MAX_TEMPLATE_LENGTH = 8192
MAX_TEMPLATE_VARIABLES = 64


@dataclass(frozen=True, slots=True)
class _Operator:
    prefix: str  # emitted before the expression's first variable
    separator: str  # between its variables
    stop: str  # characters a value never contains
    named: bool  # `name=value` pairs, each one optional (query style)


# RFC 6570 section 3.2; `stop` mirrors what expansion percent-encodes (or what structures the
# URI), so that the value's end is found where the URI's structure says it is.
_OPERATORS: dict[str, _Operator] = {
    "": _Operator("", ",", "/?#", False),
    "+": _Operator("", ",", "?#", False),
    "#": _Operator("#", ",", "", False),
    ".": _Operator(".", ".", "./?#", False),
    "/": _Operator("/", "/", "/?#", False),
    ";": _Operator(";", ";", ";/?#", True),
    "?": _Operator("?", "&", "&#", True),
    "&": _Operator("&", "&", "&#", True),
}
_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_VARSPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\*|:([1-9][0-9]{0,3}))?")


def compile_template(template: str) -> re.Pattern[str]:
    """A regex that matches the expansions of an RFC 6570 URI template, one group a variable.

    Level 1 `{name}` matches one path segment, as it always has; `{+path}` (reserved) also
    matches `/`; `{#frag}`, `{.ext}`, `{/seg}` (`{/seg*}` for several segments), `{;param}`,
    `{?q,lang}` and `{&more}` match what expansion produces, the query-style ones pair by
    pair optional (an absent variable's group is None); `{name:3}` bounds a value's length;
    a repeated name must have the same value each time. Matching stays linear in the URI: a
    value never holds the literal between it and an earlier variable that could hold it too
    (the split greedy matching finds, without its backtracking), and two variables with
    nothing between them to tell them apart are refused. Raises `InvalidTemplate`.
    """
    if not isinstance(template, str) or len(template) > MAX_TEMPLATE_LENGTH:
        raise InvalidTemplate(str(template), "not a string of at most "
                              f"{MAX_TEMPLATE_LENGTH} characters")
    pattern: list[str] = []
    seen: set[str] = set()
    position = 0
    # The characters no earlier variable's value can hold (None before the first variable).
    earlier: str | None = None
    for expression in _EXPRESSION.finditer(template):
        literal = template[position : expression.start()]
        pattern.append(_literal(template, literal))
        body = expression.group(1)
        operator = _OPERATORS.get(body[:1]) if body[:1] else None
        names = body[1:] if operator is not None else body
        operator = operator or _OPERATORS[""]
        if earlier is not None and not literal and not operator.prefix:
            raise InvalidTemplate(template, f"{{{body}}} touches the variable before it: put a "
                                  "literal between them so that a URI splits one way only")
        regex, earlier = _expression(template, operator, names, literal, earlier, seen)
        pattern.append(regex)
        position = expression.end()
    pattern.append(_literal(template, template[position:]))
    if len(seen) > MAX_TEMPLATE_VARIABLES:
        raise InvalidTemplate(template, f"more than {MAX_TEMPLATE_VARIABLES} variables")
    return re.compile("".join(pattern), re.DOTALL)


def _literal(template: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise InvalidTemplate(template, "unbalanced brace: write a literal brace as %7B or %7D")
    return re.escape(text)


def _expression(template: str, operator: _Operator, names: str, literal: str,
                earlier: str | None, seen: set[str]) -> tuple[str, str]:
    """The regex for one `{...}` expression after `literal`, and the new `earlier`."""
    specs = names.split(",")
    parts: list[str] = []
    for index, spec in enumerate(specs):
        found = _VARSPEC.fullmatch(spec)
        if found is None:
            raise InvalidTemplate(template, f"{spec!r} is not a variable name (ASCII letters, "
                                  "digits and _, not starting with a digit) with optional * or :N")
        name, modifier, length = found.groups()
        if modifier == "*" and operator.named:
            raise InvalidTemplate(template, f"explode ({spec}) is only supported for "
                                  "simple and path-style variables")
        stop = operator.stop
        if modifier == "*":
            stop = stop.replace(operator.separator, "")
        elif len(specs) > 1 and operator.separator not in stop:
            stop += operator.separator
        between = operator.separator if index else literal + operator.prefix
        # The split is ambiguous only where an earlier value and this one could both hold
        # `between`: this value then ends before it, and the earlier one takes the rest.
        ambiguous = earlier is not None and not set(between) & set(earlier + stop)
        value = _value(name, stop, between if ambiguous else "", length, operator.named, seen)
        earlier = stop if earlier is None else "".join(c for c in earlier if c in stop)
        if not operator.named:
            parts.append(value)
        elif operator.prefix == "?":
            parts.append(f"(?:{'&?' if index else ''}{re.escape(name)}={value})?")
        else:
            assignment = f"(?:={value})?" if operator.prefix == ";" else f"={value}"
            parts.append(f"(?:{re.escape(operator.prefix)}{re.escape(name)}{assignment})?")
    if operator.prefix == "?":
        return f"(?:\\?{''.join(parts)})?", earlier or ""
    if operator.named:
        return "".join(parts), earlier or ""
    return re.escape(operator.prefix) + re.escape(operator.separator).join(parts), earlier or ""


def _value(name: str, stop: str, exclude: str, length: str | None, may_be_empty: bool,
           seen: set[str]) -> str:
    """A named group for one variable's value (a back-reference if the name came before)."""
    if name in seen:
        return f"(?P={name})"
    seen.add(name)
    char = f"[^{re.escape(stop)}]" if stop else "."
    if exclude:
        char = f"(?:(?!{re.escape(exclude)}){char})"
    low = 0 if may_be_empty else 1
    count = f"{{{low},{length}}}" if length else "*" if may_be_empty else "+"
    return f"(?P<{name}>{char}{count})"


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
