"""The `ratelimit` guard stage: token-bucket rate limits and fixed-window quotas per
principal, agent, upstream and tool (`rate_limits:` in the configuration).

For each configured limit whose `methods` and `match` select the call, the stage takes one
token (or counts one call) under the key built from the limit's name and its `per` parts:

- `principal`: the human, as issuer and subject (every agent of theirs shares the budget);
- `agent`: the client id (`-` when there is none);
- `upstream`, `tool`: the catalogue entry the call targets (its public name; a resource read
  through a template counts against the template, so URIs cannot multiply the keys).

Limits are taken in configuration order (rules, then quotas) and the first refusal answers:
`RateLimited` (-32008) with the retry hint. Tokens already taken from earlier limits stay
spent, as in most gateways: a caller hammering one tool pays for it in its overall budget
too. The refusal names the limit and its scope, never the subject or the arguments.

The tightest remaining budget is left in `call.notes["rate_limit"]` for the audit record and
the metrics; `RateLimitStage.limited` counts refusals per limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from bastion.config.ratelimit import (
    LIMITED_METHODS,
    MAX_WINDOW,
    QuotaConfig,
    RateLimitConfig,
    RateRuleConfig,
)
from bastion.guard.pipeline import Call, Stage
from bastion.guard.policy.rules import POSSIBLY, CompiledRule
from bastion.guard.policy.stage import principal_of, target_of
from bastion.protocol.errors import InternalError, MCPError
from bastion.protocol.principal import Principal
from bastion.state import Grant, MemoryState, RateState, StateError

RATE_LIMITED = -32008
#: The note key later stages, the audit record and the metrics read.
NOTE = "rate_limit"


class RateLimited(MCPError):
    """A call refused by the limit `rule`; `retry_after` seconds until it could pass."""

    code = RATE_LIMITED

    def __init__(self, limit: Limit, retry_after: float) -> None:
        scope = " and ".join(limit.per) if limit.per else "gateway"
        # Clamped: a store may answer "never" (inf) for a call larger than the bucket.
        retry_after = min(retry_after, MAX_WINDOW)
        retry_ms = max(1, math.ceil(retry_after * 1000))
        super().__init__(
            f"{limit.kind} {limit.name!r} exceeded for this {scope}: retry in "
            f"{retry_after:.1f} s",
            data={"rule": limit.name, "retryAfterMs": retry_ms, "limit": limit.text,
                  "scope": list(limit.per)})
        self.rule = limit.name
        self.retry_after = retry_after


class Limit:
    """One configured rule or quota, compiled: which calls it selects, and how it keys them."""

    __slots__ = ("_matcher", "_what", "_who", "kind", "methods", "name", "per", "take", "text")

    def __init__(self, config: RateRuleConfig | QuotaConfig) -> None:
        self.name = config.name
        self.per = tuple(config.per)
        self.methods = frozenset(config.methods)
        match = config.match
        self._matcher = CompiledRule(0, match.as_policy_rule(config.name))
        self._who = any((match.subjects, match.clients, match.roles, match.groups,
                         match.scopes))
        self._what = any((match.upstreams, match.tools, match.prompts, match.resources))
        if isinstance(config, RateRuleConfig):
            self.kind = "rate limit"
            self.text = config.rate.strip()
            capacity, refill = config.capacity, config.refill_per_second

            async def take(state: RateState, key: str) -> Grant:
                return await state.take(key, capacity, refill)
        else:
            self.kind = "quota"
            self.text = f"{config.limit}/{config.window}"
            limit, window = config.limit, config.window_seconds

            async def take(state: RateState, key: str) -> Grant:
                return await state.count(key, limit, window)
        self.take = take

    def selects(self, principal: Principal, entry: Any, name: str | None) -> bool:
        if self._who and self._matcher.who_fails(principal) is not None:
            return False
        if not self._what:
            return True
        if entry is None:  # nothing to match against: count the call (fail closed)
            return True
        failure = self._matcher.what_fails(target_of(entry, name), frozenset())
        # POSSIBLY (a template some URI of which may match): counted, to err on the safe side.
        return failure is None or failure == POSSIBLY

    def key(self, principal: Principal, entry: Any) -> str:
        parts: list[str | None] = []
        for part in self.per:
            if part == "principal":
                parts += (principal.issuer, principal.subject)
            elif part == "agent":
                parts.append(principal.client_id or "-")
            elif part == "upstream":
                parts.append(getattr(entry, "upstream", None) or "-")
            else:
                parts.append(getattr(entry, "key", None) or "-")
        # JSON keeps parts apart whatever they hold (no separator a subject could forge).
        return f"ratelimit:{self.name}:" + orjson.dumps(parts).decode()


class RateLimitStage(Stage):
    """Enforce `limits` (see the module doc) on `state`."""

    name = "ratelimit"

    def __init__(self, limits: Sequence[Limit], state: RateState, *,
                 owns_state: bool = True) -> None:
        self.state = state
        #: Whether `aclose` closes the store (not a shared one the gateway hands in).
        self.owns_state = owns_state
        #: The limits each method passes through, in order.
        self._by_method = {method: tuple(limit for limit in limits if method in limit.methods)
                           for method in LIMITED_METHODS}
        #: Refusals per limit name, for the metrics.
        self.limited: Counter[str] = Counter()

    async def aclose(self) -> None:
        if self.owns_state:
            await self.state.aclose()

    async def check_request(self, call: Call) -> None:
        limits = self._by_method.get(call.method)
        if not limits:
            return
        principal = principal_of(call)
        entry = call.target
        name = _called_name(call)
        tightest: dict[str, Any] | None = None
        for limit in limits:
            if not limit.selects(principal, entry, name):
                continue
            try:
                grant = await limit.take(self.state, limit.key(principal, entry))
            except StateError as exc:  # fail closed: no budget known, no call
                raise InternalError(f"the rate-limit store failed ({exc}); the call was not "
                                    "made, retry later", data={"rule": limit.name}) from None
            if not grant.allowed:
                self.limited[limit.name] += 1
                call.notes[NOTE] = {"rule": limit.name, "remaining": 0, "limited": True}
                raise RateLimited(limit, grant.retry_after)
            if tightest is None or grant.remaining < tightest["remaining"]:
                tightest = {"rule": limit.name, "remaining": grant.remaining}
        if tightest is not None:
            call.notes[NOTE] = tightest


class RateLimitOff(Stage):
    """The stage with nothing configured: it overrides no hook, so it costs nothing."""

    name = "ratelimit"


def _called_name(call: Call) -> str | None:
    # The URI a resources/read asked for (its entry may be the template that serves it).
    if call.method == "resources/read":
        uri = call.params.get("uri")
        return uri if isinstance(uri, str) else None
    return None


def build_limits(config: RateLimitConfig) -> list[Limit]:
    return [Limit(limit) for limit in (*config.rules, *config.quotas)]


def ratelimit_stage(context: Any) -> Stage:
    """The factory the stage registry uses: `context.config.rate_limits` says what to limit;
    `context.rate_state` (a shared store, when the gateway has one) holds the buckets, else
    a `MemoryState` of `max_keys` keys."""
    config = getattr(context, "config", None)
    settings = getattr(config, "rate_limits", None) or RateLimitConfig()
    limits = build_limits(settings)
    if not limits:
        return RateLimitOff()
    shared = getattr(context, "rate_state", None)
    if shared is not None:
        return RateLimitStage(limits, shared, owns_state=False)
    return RateLimitStage(limits, MemoryState(max_keys=settings.max_keys))
