"""The header/body consistency stage: routing headers must say what the body says.

Over HTTP a modern request names its method, target and `x-mcp-header` arguments in headers
as well as in the body. Anything that routes, limits or authorizes on headers is only safe
if they agree, so this stage refuses a disagreement with -32020 before anything else (the
version and method rules included) acts on either copy. Requests without headers (stdio)
and legacy requests, which carry no routing headers, never reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bastion.guard.pipeline import Stage
from bastion.protocol.routing_headers import check_routing_headers

HeaderParamsOf = Callable[[str], Mapping[str, tuple[str, ...]]]


class HeaderBodyStage(Stage):
    """Refuse modern HTTP requests whose routing headers disagree with the body."""

    name = "header_body"

    def __init__(self, header_params_of: HeaderParamsOf) -> None:
        #: The `x-mcp-header` parameters of a tool, by its public name.
        self.header_params_of = header_params_of

    def check_headers(self, method: str, params: dict[str, Any], version: str,
                      headers: Mapping[str, str]) -> None:
        check_routing_headers(method, params, version, headers, self.header_params_of)


def _no_header_params(_name: str) -> Mapping[str, tuple[str, ...]]:
    return {}


def header_body_stage(context: Any) -> HeaderBodyStage:
    """The factory the stage registry uses (`context.header_params_of`: the gateway's)."""
    return HeaderBodyStage(getattr(context, "header_params_of", _no_header_params))
