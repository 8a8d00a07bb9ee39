"""The `rate_limits:` section of the configuration: token-bucket rate limits and fixed-window
quotas per principal, agent, upstream and tool.

```yaml
rate_limits:
  max_keys: 100000             # buckets and counters kept in memory (least recently used go)
  rules:
    - name: per-user
      per: [principal]         # key parts: principal | agent | upstream | tool ([] = everyone)
      rate: 60/minute          # N/second|minute|hour|day (or s, m, h, d): the refill
      burst: 20                # the bucket's capacity (default: N of the rate)
      match: {upstreams: [edr], tools: ["edr__*"], roles: [analyst]}   # omitted: every call
      methods: [tools/call]    # default: tools/call, prompts/get, resources/read,
                               #   completion/complete
  quotas:
    - name: daily-calls
      per: [principal, tool]
      limit: 1000
      window: 1d               # N followed by s, m, h or d
```

`match` takes the policy's fields and meanings (`subjects`, `clients`, `roles`, `groups`,
`scopes`, and globs on `upstreams`, `tools`, `prompts`, `resources`), so a rule selects calls
exactly as a policy rule would. Every problem is reported with the rule's name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from bastion.config.policy import Names, Patterns, RuleConfig, RuleName, compile_globs

KeyPart = Literal["principal", "agent", "upstream", "tool"]
LimitedMethod = Literal["tools/call", "prompts/get", "resources/read", "completion/complete"]
LIMITED_METHODS: tuple[LimitedMethod, ...] = (
    "tools/call", "prompts/get", "resources/read", "completion/complete")

#: Seconds per unit, by every spelling a rate or a window may use.
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
         "hour": 3600, "d": 86400, "day": 86400}
#: Bounds: a number past them is a typo, and would make the float arithmetic inexact.
MAX_COUNT = 1_000_000_000
MAX_WINDOW = 366 * 86400
MAX_LIMITS = 1000
MAX_KEYS = 10_000_000

_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")
_WINDOW = re.compile(r"\s*(\d+)\s*([a-z]+)\s*")


def parse_rate(text: str) -> tuple[int, int]:
    """`"60/minute"` -> (60, 60): how many calls per how many seconds."""
    match = _RATE.fullmatch(text.lower()) if isinstance(text, str) else None
    if match is None or match[2] not in UNITS:
        raise ValueError(f"rate {text!r} is not N/unit; write e.g. 60/minute (units: second, "
                         "minute, hour, day, or s, m, h, d)")
    # At most 12 digits are read: the bound refuses them, and no huge int is ever parsed.
    return _bounded(int(match[1][:12]), "rate", text), UNITS[match[2]]


def parse_window(text: str | int) -> int:
    """`"1d"` -> 86400 seconds (a bare number is seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    else:
        match = _WINDOW.fullmatch(text.lower()) if isinstance(text, str) else None
        if match is None or match[2] not in UNITS:
            raise ValueError(f"window {text!r} is not N followed by a unit; write e.g. 1d, "
                             "12h, 30m or 90s")
        seconds = int(match[1][:12]) * UNITS[match[2]]
    if not 0 < seconds <= MAX_WINDOW:
        raise ValueError(f"window {text!r} must be between 1 second and 366 days")
    return seconds


def _bounded(count: int, what: str, text: object) -> int:
    if not 0 < count <= MAX_COUNT:
        raise ValueError(f"{what} {text!r}: the number must be between 1 and {MAX_COUNT:,}")
    return count


def _compiled(patterns: list[str]) -> list[str]:
    compile_globs(patterns)  # raises, naming the bad glob, as the policy's validation does
    return patterns


#: Globs the policy's matcher will compile, checked at load time.
Globs = Annotated[Patterns, AfterValidator(_compiled)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatchConfig(_Model):
    """Which calls a limit applies to, in the policy's terms; empty fields do not constrain."""

    subjects: Names = Field(default_factory=list)
    clients: Names = Field(default_factory=list)
    roles: Names = Field(default_factory=list)
    groups: Names = Field(default_factory=list)
    scopes: Names = Field(default_factory=list)
    upstreams: Globs = Field(default_factory=list)
    tools: Globs = Field(default_factory=list)
    prompts: Globs = Field(default_factory=list)
    resources: Globs = Field(default_factory=list)

    def as_policy_rule(self, name: str) -> RuleConfig:
        """The same selection as an allow rule, for the policy's compiled matcher."""
        return RuleConfig(name=name, effect="allow", **self.model_dump())


class _Limit(_Model):
    #: What the messages call this kind of limit.
    _what: ClassVar[str] = "limit"
    name: RuleName
    per: list[KeyPart] = Field(default_factory=lambda: ["principal"], max_length=4)
    match: MatchConfig = Field(default_factory=MatchConfig)
    methods: list[LimitedMethod] = Field(default_factory=lambda: list(LIMITED_METHODS),
                                         min_length=1, max_length=len(LIMITED_METHODS))

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_limit(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # One message naming the limit: a configuration is read by names, not list indexes.
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            label = f"{cls._what} {name!r}" if isinstance(name, str) and name \
                else f"a {cls._what} without a name"
            problems = "; ".join(_describe(error, cls) for error in exc.errors(include_url=False))
            raise ValueError(f"{label}: {problems}") from None

    @field_validator("per", "methods")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({item for item in value if value.count(item) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once")
        return value


class RateRuleConfig(_Limit):
    """A token bucket per key: `burst` calls at once, refilled at `rate`."""

    _what: ClassVar[str] = "rate limit"
    rate: str = Field(max_length=64)
    burst: int | None = Field(default=None, ge=1, le=MAX_COUNT)

    @field_validator("rate")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else parse_rate(self.rate)[0]

    @property
    def refill_per_second(self) -> float:
        count, seconds = parse_rate(self.rate)
        return count / seconds


class QuotaConfig(_Limit):
    """At most `limit` calls per key in each fixed `window` (aligned to the Unix epoch, so a
    `1d` window runs from midnight UTC)."""

    _what: ClassVar[str] = "quota"
    limit: int = Field(ge=1, le=MAX_COUNT)
    window: str | int

    @field_validator("window")
    @classmethod
    def _valid_window(cls, value: str | int) -> str | int:
        parse_window(value)
        return value

    @property
    def window_seconds(self) -> int:
        return parse_window(self.window)


class RateLimitConfig(_Model):
    """The whole `rate_limits:` section (empty: nothing is limited)."""

    #: Where buckets live: this process (a shared store comes with several replicas).
    store: Literal["memory"] = "memory"
    max_keys: int = Field(default=100_000, ge=1, le=MAX_KEYS)
    rules: list[RateRuleConfig] = Field(default_factory=list, max_length=MAX_LIMITS)
    quotas: list[QuotaConfig] = Field(default_factory=list, max_length=MAX_LIMITS)

    @model_validator(mode="after")
    def _unique_names(self) -> RateLimitConfig:
        # Rules and quotas share one namespace: the name keys the buckets and the refusals.
        seen: set[str] = set()
        for limit in (*self.rules, *self.quotas):
            if limit.name in seen:
                raise ValueError(f"the name {limit.name!r} is used twice in rate_limits; rule "
                                 "and quota names must be unique")
            seen.add(limit.name)
        return self


def _describe(error: Any, limit: type[BaseModel]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        model = MatchConfig if error["loc"][:1] == ("match",) else limit
        message = "unknown key; allowed here: " + ", ".join(model.model_fields)
    return f"{where}: {message}" if where else message
