"""The guard pipeline's one interface, and the pipeline that runs the stages in order.

A stage sees a `Call`: the request as the gateway received it (still the parsed JSON, never
rebuilt), who sent it, and what it targets in the catalogue. It may refuse the request by
raising an `MCPError`, rewrite the result on its way back, and filter list items. Stages
that do not override a hook cost nothing on it: the pipeline keeps, per hook, only the
stages that implement it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.session.server_side import ServerRequest


class GuardError(ValueError):
    """The guard configuration is wrong (an unknown stage, a stage listed twice)."""


@dataclass(slots=True)
class Call:
    """One request passing through the gateway, as the stages see it."""

    request: ServerRequest
    #: The transport's headers (lower-case names) of an HTTP request; None on stdio.
    headers: Mapping[str, str] | None = None
    #: Who is behind the request (set by the identity stage; None when anonymous).
    principal: Any = None
    #: The catalogue entry the request targets (tool, prompt, resource), when it has one.
    target: Any = None
    #: Facts stages leave for later stages and for the audit record.
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def params(self) -> dict[str, Any]:
        return self.request.params


class Stage:
    """A pipeline stage. Override the hooks the stage needs; the defaults do nothing."""

    #: The name the configuration uses (`guard.stages`).
    name: str = ""

    async def start(self) -> None:
        """Start what the stage keeps running (store reloads); the gateway calls it once."""

    async def aclose(self) -> None:
        """Stop it again."""

    def check_headers(self, method: str, params: dict[str, Any], version: str,
                      headers: Mapping[str, str]) -> None:
        """A modern HTTP request's headers, before the protocol's own rules run (version,
        method): refuse by raising an `MCPError`."""

    async def check_request(self, call: Call) -> None:
        """Refuse the request by raising an `MCPError`; may annotate `call.notes`."""

    async def check_result(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        """The result the client will see (the same dict, or a rewritten one)."""
        return result

    def filter_list(self, call: Call, kind: str, items: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        """The list items (of `kind`: tools, prompts, resources, resourceTemplates) the
        client may see."""
        return items


def _overrides(stage: Stage, hook: str) -> bool:
    return getattr(type(stage), hook) is not getattr(Stage, hook)


class Pipeline:
    """The configured stages, in order."""

    __slots__ = ("_headers", "_lists", "_requests", "_results", "stages")

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self._headers = tuple(s for s in self.stages if _overrides(s, "check_headers"))
        self._requests = tuple(s for s in self.stages if _overrides(s, "check_request"))
        # Results pass back through the stages in reverse, as in any middleware chain.
        self._results = tuple(s for s in reversed(self.stages) if _overrides(s, "check_result"))
        self._lists = tuple(s for s in self.stages if _overrides(s, "filter_list"))

    def stage(self, name: str) -> Stage | None:
        """The configured stage called `name`, if there is one."""
        return next((stage for stage in self.stages if stage.name == name), None)

    async def start(self) -> None:
        for stage in self.stages:
            await stage.start()

    async def aclose(self) -> None:
        for stage in reversed(self.stages):
            await stage.aclose()

    def check_headers(self, method: str, params: dict[str, Any], version: str,
                      headers: Mapping[str, str]) -> None:
        for stage in self._headers:
            stage.check_headers(method, params, version, headers)

    async def check_request(self, call: Call) -> None:
        for stage in self._requests:
            await stage.check_request(call)

    async def check_result(self, call: Call, result: dict[str, Any]) -> dict[str, Any]:
        for stage in self._results:
            result = await stage.check_result(call, result)
        return result

    def filter_list(self, call: Call, kind: str, items: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        for stage in self._lists:
            items = stage.filter_list(call, kind, items)
        return items

    @property
    def checks_headers(self) -> bool:
        return bool(self._headers)

    @property
    def filters_lists(self) -> bool:
        return bool(self._lists)

    @property
    def checks_results(self) -> bool:
        return bool(self._results)


StageFactory = Callable[[Any], Stage]


def build_pipeline(names: Sequence[str], registry: Mapping[str, StageFactory],
                   context: Any) -> Pipeline:
    """The stages `names` (in that order), each built by its factory from `context`."""
    seen: set[str] = set()
    stages: list[Stage] = []
    for name in names:
        factory = registry.get(name)
        if factory is None:
            raise GuardError(f"unknown guard stage {name!r}; known stages: "
                             + ", ".join(sorted(registry)))
        if name in seen:
            raise GuardError(f"guard stage {name!r} is listed twice")
        seen.add(name)
        stages.append(factory(context))
    return Pipeline(stages)


