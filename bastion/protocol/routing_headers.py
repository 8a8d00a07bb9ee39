"""Routing headers against the body (2026-07-28): `MCP-Protocol-Version`, `Mcp-Method`,
`Mcp-Name` and the `Mcp-Param-*` headers of `x-mcp-header` arguments.

A router, rate limiter or policy may act on the headers alone, so a server (and a gateway)
must refuse a request whose headers say something other than its body (-32020): otherwise
one value is checked and another executed. This is the one implementation, used by the HTTP
endpoint and by the gateway's header/body guard stage.

Headers are a mapping of lower-case names to values; repeated headers are joined with
commas and their names listed, space-separated, under `DUPLICATES_KEY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bastion.protocol.errors import HeaderMismatch
from bastion.protocol.headers import (
    METHOD_HEADER,
    NAME_FIELDS,
    NAME_HEADER,
    PARAM_HEADER_PREFIX,
    PROTOCOL_VERSION_HEADER,
    decode_value,
    matches,
    value_at,
)

#: A pseudo-header naming the repeated MCP headers of a request (space-separated).
DUPLICATES_KEY = ":duplicated"
#: Repeated, these make a request ambiguous: a router and the server could read different
#: copies. (Repeated unknown `Mcp-Param-*` headers are not our business.)
ROUTING_HEADERS = frozenset({PROTOCOL_VERSION_HEADER, METHOD_HEADER, NAME_HEADER})
#: Methods of the tasks extension whose Mcp-Name mirrors a body field (SEP-2663).
TASK_NAME_FIELDS = {"tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}

#: The `x-mcp-header` parameters of a tool: header name -> argument path.
HeaderParamsLookup = Callable[[str], Mapping[str, tuple[str, ...]]]
#: A check of one request's headers: `(method, params, protocol version, headers)`.
HeaderCheck = Callable[[str, dict[str, Any], str, Mapping[str, str]], None]


def check_routing_headers(
    method: str,
    params: dict[str, Any],
    protocol_version: str,
    headers: Mapping[str, str],
    header_params_of: HeaderParamsLookup,
) -> None:
    """Raise `HeaderMismatch` unless the routing headers agree with the request body."""
    duplicated = set(headers.get(DUPLICATES_KEY, "").split())
    repeated = duplicated & ROUTING_HEADERS
    if repeated:
        raise HeaderMismatch(f"the {min(repeated)} header appears more than once")
    version = headers.get(PROTOCOL_VERSION_HEADER)
    if version is None:
        raise HeaderMismatch("the MCP-Protocol-Version header is required")
    if version.strip(" \t") != protocol_version:
        raise HeaderMismatch(
            f"MCP-Protocol-Version header {version.strip()[:40]!r} does not match "
            f"_meta protocolVersion {protocol_version[:40]!r}")
    raw_method = headers.get(METHOD_HEADER)
    if raw_method is None:
        raise HeaderMismatch("the Mcp-Method header is required")
    if raw_method.strip(" \t") != method:
        raise HeaderMismatch(f"Mcp-Method header {raw_method.strip()[:60]!r} does not match "
                             f"the method {method[:60]!r}")
    raw_name = headers.get(NAME_HEADER)
    field = NAME_FIELDS.get(method)
    if field is None:
        field = TASK_NAME_FIELDS.get(method)
        # The tasks extension (SEP-2663) names the task in Mcp-Name; our spec text does not
        # require the header yet, so only a present one is checked.
        if field is not None and raw_name is not None and (
            decode_value(raw_name) != str(params.get(field))
        ):
            raise HeaderMismatch(f"Mcp-Name header {raw_name.strip()[:60]!r} does not "
                                 f"match params.{field}")
        return
    body_name = params.get(field)
    if isinstance(body_name, str):
        if raw_name is None:
            raise HeaderMismatch(f"the Mcp-Name header is required for {method}")
        if not _plain_equal(raw_name, body_name) and decode_value(raw_name) != body_name:
            raise HeaderMismatch(f"Mcp-Name header {raw_name.strip()[:60]!r} does not "
                                 f"match params.{field}")
    if method == "tools/call" and isinstance(body_name, str):
        _check_param_headers(header_params_of(body_name), params.get("arguments"), headers,
                             duplicated)


def _check_param_headers(header_params: Mapping[str, tuple[str, ...]], arguments: Any,
                         headers: Mapping[str, str], duplicated: set[str]) -> None:
    """Each `x-mcp-header` argument and its `Mcp-Param-*` header: both or neither, equal."""
    for name, path in header_params.items():
        key = PARAM_HEADER_PREFIX + name.lower()
        if key in duplicated:
            raise HeaderMismatch(f"the Mcp-Param-{name} header appears more than once")
        raw = headers.get(key)
        value = value_at(arguments, path)
        if value is None:
            if raw is not None:
                raise HeaderMismatch(f"Mcp-Param-{name} is present but the argument "
                                     f"{'.'.join(path)!r} is not")
            continue
        if raw is None:
            raise HeaderMismatch(f"the Mcp-Param-{name} header is required: the argument "
                                 f"{'.'.join(path)!r} is present")
        if not matches(decode_value(raw), value):
            raise HeaderMismatch(f"Mcp-Param-{name} header does not match the argument "
                                 f"{'.'.join(path)!r}")


def _plain_equal(raw: str, value: str) -> bool:
    """The common case, without decoding: a plain printable-ASCII header equal to the body."""
    raw = raw.strip(" \t")
    return raw == value and raw.isascii() and raw.isprintable()
