"""What a tool, prompt or resource handler can do while it runs, the same in both eras.

Handlers call `ctx.elicit(...)`, `ctx.sample(...)`, `ctx.list_roots()` or `ctx.gather(...)`.
In a legacy session those are server-to-client requests, awaited in place. In the modern era
they are Multi Round-Trip Requests: when an answer is not yet in the request's
`inputResponses`, the handler is interrupted with `InputRequired`, the server answers
`resultType: "input_required"`, and the client retries with the answers; the handler then
runs again from the start and finds them. Answers from earlier rounds and the handler's own
`ctx.state` travel in the sealed `requestState`, so any replica can finish the request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bastion.protocol.capabilities import (
    capability_for_input_request,
    elicitation_modes,
    has_capability,
)
from bastion.protocol.errors import InvalidParams, MissingRequiredClientCapability
from bastion.protocol.versions import Era

if TYPE_CHECKING:
    from bastion.server.app import Server
    from bastion.session.server_side import ServerRequest


#: Answers input requests some other way (a task's runner installs one): `{key: request}` in,
#: `{key: result}` out.
InputProvider = Callable[[dict[str, dict[str, Any]]], Awaitable[dict[str, Any]]]


class InputRequired(Exception):
    """Raised inside a modern handler that needs answers the client has not given yet."""

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = requests


class Context:
    """The running request: era, client, logging, progress, and input from the client."""

    def __init__(
        self,
        server: Server,
        request: ServerRequest,
        *,
        input_responses: dict[str, Any] | None = None,
        answers: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        input_provider: InputProvider | None = None,
    ) -> None:
        self.server = server
        self.request = request
        #: When set (inside a task), input requests go here instead of the era's own path.
        self.input_provider = input_provider
        #: Handler-owned state that survives MRTR rounds (sealed into requestState).
        self.state: dict[str, Any] = state or {}
        # Answers from earlier rounds (from the sealed state) and from this round.
        self.answers: dict[str, Any] = dict(answers or {})
        if input_responses:
            self.answers.update(input_responses)
        self._keys = 0
        #: Keys whose answers the handler used; only these are sealed into the next round.
        self.consumed: set[str] = set()

    @property
    def era(self) -> Era:
        return self.request.era

    @property
    def protocol_version(self) -> str:
        return self.request.version

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self.request.client_capabilities

    @property
    def client_info(self) -> dict[str, Any] | None:
        return self.request.client_info

    @property
    def request_id(self) -> str | int:
        return self.request.id

    def has_capability(self, path: str) -> bool:
        return has_capability(self.client_capabilities, path)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """A `notifications/message` to the client, if it asked for this level."""
        await self.request.log(level, data, logger)

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Progress for this request, if the client sent a progress token."""
        await self.request.incoming.report_progress(progress, total, message)

    # -- input from the client -----------------------------------------------------------

    async def elicit(
        self, message: str, requested_schema: dict[str, Any], *, key: str | None = None
    ) -> dict[str, Any]:
        """Ask the user for structured input (form mode). Returns the ElicitResult."""
        params = {"mode": "form", "message": message, "requestedSchema": requested_schema}
        return (await self.gather({self._key(key): _input("elicitation/create", params)}))[
            self._last_key
        ]

    async def elicit_url(
        self, message: str, url: str, *, elicitation_id: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Send the user to a URL (URL mode). Returns the ElicitResult."""
        params: dict[str, Any] = {"mode": "url", "message": message, "url": url}
        if self.era is Era.LEGACY:
            params["elicitationId"] = elicitation_id or f"elicit-{self.request_id}"
        return (await self.gather({self._key(key): _input("elicitation/create", params)}))[
            self._last_key
        ]

    async def sample(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        key: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion. Returns the CreateMessageResult."""
        params = {"messages": messages, "maxTokens": max_tokens, **options}
        return (await self.gather({self._key(key): _input("sampling/createMessage", params)}))[
            self._last_key
        ]

    async def list_roots(self, *, key: str | None = None) -> list[dict[str, Any]]:
        """The client's roots."""
        result = (await self.gather({self._key(key): _input("roots/list", None)}))[
            self._last_key
        ]
        roots = result.get("roots")
        if not isinstance(roots, list):
            raise InvalidParams("the client's roots/list answer has no roots list")
        return roots

    async def gather(self, requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Several inputs at once: `{key: {"method": ..., "params": ...}}` to their results.

        Modern: the answers already given are returned; if any is missing, the client gets
        one input_required result that asks for all the missing ones.
        Legacy: the requests go to the client concurrently.
        Inside a task, the task's `input_provider` answers them (the task waits meanwhile).
        """
        for request in requests.values():
            self._require_capability(request)
        if self.input_provider is not None:
            return await self.input_provider(requests)
        if self.era is Era.MODERN:
            missing = {key: req for key, req in requests.items()
                       if not _answers(req, self.answers.get(key))}
            self.consumed.update(key for key in requests if key not in missing)
            if missing:
                raise InputRequired(missing)
            return {key: self.answers[key] for key in requests}
        return await self.server.ask_client(self, requests)

    def _require_capability(self, request: dict[str, Any]) -> None:
        method = request["method"]
        capability = capability_for_input_request(method)
        if method == "elicitation/create":
            mode = (request.get("params") or {}).get("mode", "form")
            if mode not in elicitation_modes(self.client_capabilities):
                raise MissingRequiredClientCapability(
                    f"this needs {mode}-mode elicitation, which the client did not declare",
                    required={"elicitation": {mode: {}}},
                )
        elif not has_capability(self.client_capabilities, capability):
            raise MissingRequiredClientCapability(
                f"this needs the client capability {capability!r}, which it did not declare",
                required={capability: {}},
            )

    def _key(self, key: str | None) -> str:
        if key is None:
            self._keys += 1
            key = f"input-{self._keys}"
        self._last_key = key
        return key


def _input(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": method}
    if params is not None:
        request["params"] = params
    return request


def _answers(request: dict[str, Any], response: Any) -> bool:
    """Whether `response` is a structurally valid answer to `request` (else: ask again)."""
    if not isinstance(response, dict):
        return False
    method = request["method"]
    if method == "elicitation/create":
        return response.get("action") in ("accept", "decline", "cancel")
    if method == "sampling/createMessage":
        return "role" in response and "content" in response
    if method == "roots/list":
        return isinstance(response.get("roots"), list)
    return True


def context_parameter(fn: Callable[..., Any]) -> str | None:
    """The handler parameter that receives the Context: annotated with it, or named `ctx`."""
    for name, parameter in inspect.signature(fn).parameters.items():
        annotation = parameter.annotation
        if annotation is Context or annotation == "Context" or name == "ctx":
            return name
    return None


async def call_handler(
    fn: Callable[..., Awaitable[Any]],
    arguments: dict[str, Any],
    context_param: str | None,
    context: Any,
) -> Any:
    """Call a tool, resource or prompt handler with its arguments and, if it takes one, the
    Context."""
    if context_param is None:
        return await fn(**arguments)
    return await fn(**arguments, **{context_param: context})
