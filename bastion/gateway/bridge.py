"""The era bridge: an upstream's questions reach the client, whichever era each side speaks.

A server needs input from the client (sampling, elicitation, roots) in one of two ways:

- a legacy server sends a server-to-client request on its session while a call is pending;
- a modern server answers the call with an `input_required` result and expects the client to
  send the call again with `inputResponses` (and the `requestState` it was given).

The gateway holds one session per upstream, shared by many clients, and a legacy server's
request names no call (stdio carries nothing that relates it). `ActiveCalls` therefore
attributes it to the call in flight on that upstream; when several calls are in flight it
cannot know which client to ask, and refuses rather than guess (asking the wrong person is a
confused deputy). The answer then travels as the client's era requires:

- legacy client: forwarded on the client's session (`request_client`);
- modern client: the call is parked (`ParkedCall`) while the upstream request stays pending,
  the client gets `input_required` with a sealed `requestState` that names the parked call,
  and its retry delivers the answers and waits for the next question or the result.

The other direction, a modern upstream's `input_required` to a legacy client, is a loop of
server-to-client requests (`answer_on_session`). Parked calls live in this process: a retry
that reaches another replica is told to send the original request again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bastion.protocol.errors import InternalError, InvalidParams, MCPError, MethodNotFound
from bastion.protocol.results import INPUT_REQUIRED, input_required, result_type
from bastion.protocol.versions import Era
from bastion.session.server_side import ServerRequest

logger = logging.getLogger("bastion.gateway.bridge")

#: How long a parked call waits for the client's next round before it is abandoned.
PARK_TIMEOUT = 300.0
#: At most this many input rounds per call (a server that keeps asking is broken).
MAX_ROUNDS = 16
#: Parked calls kept at once; beyond this new ones are refused (memory bound).
MAX_PARKED = 10_000

_QUESTION_KEYS = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}


@dataclass(eq=False, slots=True)
class ActiveCall:
    """A client request being served by one upstream."""

    request: ServerRequest
    upstream: str
    #: Set while the call is parked for a modern client: where its questions go.
    parked: ParkedCall | None = None


class ActiveCalls:
    """The calls in flight per upstream, to attribute what an upstream sends unprompted."""

    __slots__ = ("_by_upstream",)

    def __init__(self) -> None:
        self._by_upstream: dict[str, set[ActiveCall]] = {}

    @contextlib.contextmanager
    def track(self, call: ActiveCall) -> Iterator[ActiveCall]:
        calls = self._by_upstream.get(call.upstream)
        if calls is None:
            calls = self._by_upstream[call.upstream] = set()
        calls.add(call)
        try:
            yield call
        finally:
            calls.discard(call)

    def count(self, upstream: str) -> int:
        return len(self._by_upstream.get(upstream, ()))

    def sole(self, upstream: str) -> ActiveCall | None:
        """The one call in flight on `upstream` that can be asking something, or None (none,
        or several). A call parked until its client answers cannot: its upstream request is
        blocked on that answer."""
        calls = self._by_upstream.get(upstream)
        if not calls:
            return None
        if len(calls) == 1:
            return next(iter(calls))
        live = [c for c in calls if c.parked is None or not c.parked.waiting]
        return live[0] if len(live) == 1 else None


def client_can_answer(capabilities: dict[str, Any], method: str, params: dict[str, Any]) -> bool:
    """Whether the client declared the capability a server request needs."""
    if method == "sampling/createMessage":
        sampling = capabilities.get("sampling")
        if not isinstance(sampling, dict):
            return False
        return not params.get("tools") or isinstance(sampling.get("tools"), dict)
    if method == "elicitation/create":
        elicitation = capabilities.get("elicitation")
        if not isinstance(elicitation, dict):
            return False
        mode = params.get("mode", "form")
        # An empty elicitation capability means form mode (2025-06-18 clients).
        return mode in elicitation or (mode == "form" and not elicitation)
    if method == "roots/list":
        return isinstance(capabilities.get("roots"), dict)
    return False


@dataclass(eq=False)
class _Question:
    key: str
    method: str
    params: dict[str, Any]
    answer: asyncio.Future[dict[str, Any]]


class ParkedCall:
    """A call to a legacy upstream made for a modern client: it runs as its own task, and is
    parked (registered, with an id the client's `requestState` names) whenever the upstream
    asks the client something, until the client's next round answers."""

    def __init__(self, upstream_call: asyncio.Task[dict[str, Any]]) -> None:
        self.upstream_call = upstream_call
        self.id: str | None = None
        self.rounds = 0
        self.expires = 0.0
        self._asked: list[_Question] = []
        self._new: list[_Question] = []
        self._wake: asyncio.Future[None] | None = None
        self._keys = itertools.count(1)
        self._failure: MCPError | None = None
        upstream_call.add_done_callback(self._wakeup)

    @property
    def waiting(self) -> bool:
        """Parked, with questions out to the client and nothing new from the upstream."""
        return bool(self._asked) and not self._new

    def _wakeup(self, _task: object = None) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Called for the upstream's request: wait for the client's answer."""
        question = _Question(f"{_QUESTION_KEYS.get(method, 'input')}-{next(self._keys)}",
                             method, params, asyncio.get_running_loop().create_future())
        self._new.append(question)
        self._wakeup()
        return await question.answer

    def fail(self, error: MCPError) -> None:
        """End the client's call with `error` (the upstream asked what it cannot answer)."""
        self._failure = error
        self._wakeup()

    def answer(self, responses: Any) -> None:
        """Deliver the client's `inputResponses` to the questions it was asked; questions it
        left unanswered are asked again in the next round."""
        if responses is None:
            responses = {}
        if not isinstance(responses, dict):
            raise InvalidParams("inputResponses must be an object keyed by input request")
        for question in self._asked:
            response = responses.get(question.key)
            if response is not None and not isinstance(response, dict):
                raise InvalidParams(f"inputResponses[{question.key!r}] must be an object")
        unanswered = []
        for question in self._asked:
            response = responses.get(question.key)
            if response is None:
                unanswered.append(question)
            elif not question.answer.done():
                question.answer.set_result(response)
        self._asked = []
        self._new = unanswered + self._new

    async def next_round(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """`(result, None)` when the upstream answered, else `(None, questions)`."""
        if not self.upstream_call.done() and not self._new and self._failure is None:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        if self._failure is not None:
            raise self._failure
        if self.upstream_call.done():
            return self.upstream_call.result(), None
        # Questions asked together (a server gathering several) travel in one round.
        for _ in range(3):
            await asyncio.sleep(0)
        asked, self._new = self._new, []
        self._asked.extend(asked)
        self.rounds += 1
        return None, {q.key: {"method": q.method, "params": q.params} for q in asked}

    def abandon(self, reason: str) -> None:
        for question in (*self._asked, *self._new):
            if not question.answer.done():
                question.answer.set_exception(MCPError(reason))
        self.upstream_call.cancel()


class ParkedCalls:
    """The parked calls of this process, each expiring if its client never comes back."""

    def __init__(self, *, timeout: float = PARK_TIMEOUT, limit: int = MAX_PARKED) -> None:
        self.timeout = timeout
        self.limit = limit
        self._calls: dict[str, ParkedCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def park(self, parked: ParkedCall) -> str:
        """Register (or keep) `parked` until its client's next round; its id."""
        self._expire()
        if parked.id is None:
            if len(self._calls) >= self.limit:
                parked.abandon("too many calls are waiting for client input")
                raise InternalError("too many calls are waiting for client input; "
                                    "try again later")
            parked.id = secrets.token_urlsafe(16)
            self._calls[parked.id] = parked
        parked.expires = time.monotonic() + self.timeout
        return parked.id

    def take(self, parked_id: Any) -> ParkedCall:
        parked = self._calls.get(parked_id) if isinstance(parked_id, str) else None
        if parked is None:
            raise InvalidParams("this call is no longer waiting for input (it expired, or was "
                                "served by another replica): send the original request again")
        return parked

    def release(self, parked: ParkedCall) -> None:
        if parked.id is not None:
            self._calls.pop(parked.id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for parked in [p for p in self._calls.values() if p.expires < now]:
            logger.info("a call parked for client input expired after %.0f s", self.timeout)
            parked.abandon("the client did not answer in time")
            self.release(parked)

    def close(self) -> None:
        for parked in list(self._calls.values()):
            parked.abandon("the gateway is shutting down")
        self._calls.clear()


async def run_round(parked_calls: ParkedCalls, parked: ParkedCall,
                    seal: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Serve one round of a bridged call: its result, or `input_required` with new questions
    and a sealed `requestState` naming the parked call."""
    if parked.rounds >= MAX_ROUNDS:
        parked.abandon("too many input rounds")
        parked_calls.release(parked)
        raise InternalError(f"the upstream asked for client input more than {MAX_ROUNDS} times")
    try:
        result, questions = await parked.next_round()
    except BaseException:
        parked.abandon("the call failed")
        parked_calls.release(parked)
        raise
    if questions is None:
        parked_calls.release(parked)
        assert result is not None
        return result
    return input_required(questions, seal({"parked": parked_calls.park(parked)}))


async def answer_on_session(
    request: ServerRequest,
    result: dict[str, Any],
    again: Callable[[dict[str, Any], Any], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Legacy client, modern upstream: ask each `input_required` question on the client's
    session, send the call again with the answers, until the upstream completes."""
    rounds = 0
    while result_type(result) == INPUT_REQUIRED:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise InternalError(f"the upstream asked for client input more than {MAX_ROUNDS} "
                                "times")
        asks = result.get("inputRequests") or {}
        if not isinstance(asks, dict):
            raise InternalError("the upstream sent malformed inputRequests")
        answers: dict[str, Any] = {}
        if asks:
            answers = dict(zip(asks, await asyncio.gather(
                *(ask_legacy_client(request, a.get("method"), a.get("params") or {})
                  for a in asks.values())), strict=True))
        result = await again(answers, result.get("requestState"))
    return result


async def ask_legacy_client(request: ServerRequest, method: Any, params: dict[str, Any]
                            ) -> dict[str, Any]:
    """One server-to-client request on a legacy client's session, if it can answer it."""
    if not isinstance(method, str) or method not in _QUESTION_KEYS:
        raise InternalError(f"the upstream asked for unsupported input {method!r}")
    connection = request.connection
    if connection is None or request.era is not Era.LEGACY:
        raise MethodNotFound(f"the client cannot be asked {method}: it has no session")
    if not client_can_answer(request.client_capabilities, method, params):
        raise MethodNotFound(f"the client does not support {method}",
                             data={"method": method})
    return await connection.request_client(method, params)
