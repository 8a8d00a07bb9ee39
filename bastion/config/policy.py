"""The `policy:` section of the configuration: who may see and use which tool, prompt, resource.

```yaml
policy:
  default: deny              # allow | deny; absent: deny when auth is on, allow when it is off
  annotations: verify        # trust | verify | ignore: how tool annotations become classes
  annotations_by_upstream: {siem: trust}
  rules:
    - name: analysts-read-only          # required, unique, not "default"
      effect: allow                     # allow | deny
      roles: [analyst]                  # who: subjects, clients, roles, groups, scopes,
                                        #   auth_methods, attributes {claim: [values]}
      upstreams: ["siem", "ti*"]        # globs on upstream names
      tools: ["siem__*"]                # globs on public tool names; prompts, resources too
      classes: [read-only]              # every listed class must hold
      args: {path: {pattern: "^/data/"}}  # JSON Schema per argument; each named one required
      hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", tz: Europe/Berlin}
      audit: before_execute             # the call waits until its audit record is committed
```

Validation compiles what the guard will compile (globs, argument schemas, time zones), so a
configuration that loads is one the policy engine can use; every problem inside a rule is
reported with the rule's name. The compilers live here so that the guard and the validation
share one definition of a glob, an argument schema and a clock time.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema_rs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

Effect = Literal["allow", "deny"]
AnnotationTrust = Literal["trust", "verify", "ignore"]
#: The classes a rule may require (tool classes come from annotations; see guard.policy.classes).
TOOL_CLASSES = ("read-only", "destructive", "open-world", "idempotent")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Bounds on what one file may ask the engine to compile and loop over.
MAX_RULES = 1000
MAX_PATTERNS = 1000
MAX_PATTERN_LENGTH = 1024
#: The name the engine reports when no rule decided.
DEFAULT_RULE = "default"

RuleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Patterns = Annotated[list[str], Field(max_length=MAX_PATTERNS)]
Names = Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=512)]],
                  Field(max_length=MAX_PATTERNS)]
#: One clock time: "HH:MM", or minutes since midnight (YAML 1.1 reads an unquoted 18:00 as
#: the base-60 number 1080, which is exactly that).
ClockTime = str | int


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- compilers (shared with bastion.guard.policy) -------------------------------------------


def glob_regex(pattern: str) -> str:
    """The regular expression (to fullmatch) of one glob: `*` any run of characters (`/`
    included), `?` one character, `[abc]`, `[a-z]` and `[!abc]` a class; everything else,
    backslash included, is literal (`[*]` is a literal star)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a glob must be a non-empty string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"glob longer than {MAX_PATTERN_LENGTH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in pattern):
        raise ValueError(f"glob {pattern!r} holds a control character")
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "*":
            if not parts or parts[-1] != ".*":  # `**` is `*`: no needless backtracking
                parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "[":
            end = pattern.find("]", index)
            if end == -1:
                raise ValueError(f"glob {pattern!r} has an unclosed '['; write [[] for a "
                                 "literal '['")
            body = pattern[index:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise ValueError(f"glob {pattern!r} has an empty [] class")
            escaped = "".join(c if c == "-" else re.escape(c) for c in body)
            parts.append(f"[{'^' if negate else ''}{escaped}]")
            index = end + 1
        else:
            parts.append(re.escape(char))
    source = "".join(parts)
    try:
        re.compile(source)
    except re.error as exc:  # a reversed range such as [z-a]
        raise ValueError(f"glob {pattern!r} is not valid: {exc}") from None
    return source


def compile_globs(patterns: list[str]) -> re.Pattern[str] | None:
    """One regex that fullmatches any of `patterns`, or None for an empty list."""
    if not patterns:
        return None
    return re.compile("(?s:" + "|".join(f"(?:{glob_regex(p)})" for p in patterns) + ")")


def literal_prefix(pattern: str) -> str:
    """What every string a glob matches starts with (the text before its first wildcard)."""
    return re.split(r"[*?\[]", pattern, maxsplit=1)[0]


def _refuse_retrieval(uri: str) -> Any:
    raise ValueError(f"refusing to fetch the external schema {uri!r}; policy schemas are "
                     "self-contained")


def args_schema(args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The object schema a rule's `args` stand for. Every argument a rule names is required:
    a constraint an agent could dodge by leaving the argument out (and letting the server
    pick its default) would be no constraint."""
    return {"type": "object", "properties": args, "required": sorted(args)}


def args_validator(args: dict[str, dict[str, Any]]) -> jsonschema_rs.Validator:
    """The compiled validator (JSON Schema 2020-12, no network) of a rule's `args`."""
    try:
        return jsonschema_rs.validator_for(args_schema(args), retriever=_refuse_retrieval,
                                           validate_formats=True)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"not a valid JSON Schema: {first}") from None


def clock_minutes(value: ClockTime, *, end: bool = False) -> int:
    """Minutes since midnight of "HH:MM" (24:00 only as the end of a window)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time; write \"HH:MM\"")
    if isinstance(value, int):
        minutes = value
    else:
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if match is None or int(match[2]) > 59:
            raise ValueError(f"{value!r} is not a time; write \"HH:MM\" (24-hour clock)")
        minutes = int(match[1]) * 60 + int(match[2])
    if not 0 <= minutes <= (1440 if end else 1439):
        raise ValueError(f"{value!r} is not a time of day (00:00 to "
                         f"{'24:00' if end else '23:59'})")
    return minutes


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as "
                         "Europe/Berlin or UTC") from None


# -- models -------------------------------------------------------------------------------


class HoursConfig(_Model):
    """When a rule applies: on `days`, from `from` (inclusive) to `to` (exclusive), local
    time in `tz`. A window that ends before it starts runs past midnight, and its morning
    part belongs to the day it started on (fri 22:00-06:00 covers Saturday 03:00)."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(DAYS), min_length=1, max_length=7)
    start: ClockTime = Field(default="00:00", alias="from")
    to: ClockTime = "24:00"
    tz: str = "UTC"

    @model_validator(mode="after")
    def _valid_window(self) -> HoursConfig:
        time_zone(self.tz)
        if clock_minutes(self.start) == clock_minutes(self.to, end=True):
            raise ValueError(f"hours from {self.start!r} to {self.to!r} is empty; for the "
                             "whole day write from: \"00:00\", to: \"24:00\"")
        return self


class RuleConfig(_Model):
    """One rule; see the module doc. Within a field any entry may match; fields are AND-ed;
    empty fields do not constrain."""

    name: RuleName
    effect: Effect
    description: str | None = Field(default=None, max_length=1000)
    # Who.
    subjects: Names = Field(default_factory=list)
    clients: Names = Field(default_factory=list)
    roles: Names = Field(default_factory=list)
    groups: Names = Field(default_factory=list)
    scopes: Names = Field(default_factory=list)
    auth_methods: list[Literal["jwt", "api_key", "dev", "local", "anonymous"]] = Field(
        default_factory=list)
    attributes: dict[str, Names] = Field(default_factory=dict, max_length=64)
    # What.
    upstreams: Patterns = Field(default_factory=list)
    tools: Patterns = Field(default_factory=list)
    prompts: Patterns = Field(default_factory=list)
    resources: Patterns = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list, max_length=len(TOOL_CLASSES))
    # When.
    args: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=256)
    hours: HoursConfig | None = None
    # Audit.
    #: `before_execute`: a tool call this rule allows goes upstream only once its audit
    #: record is committed ("no audit, no call"); `after` (default): recorded off the hot
    #: path once the call ends.
    audit: Literal["after", "before_execute"] = "after"

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_rule(cls, data: Any, handler: ModelWrapValidatorHandler[RuleConfig]
                       ) -> RuleConfig:
        # One message naming the rule: a policy is read by rule names, not list indexes.
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            label = f"rule {name!r}" if isinstance(name, str) and name else "a rule without a name"
            problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
            raise ValueError(f"{label}: {problems}") from None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == DEFAULT_RULE:
            raise ValueError(f"{DEFAULT_RULE!r} is reserved for the default decision; "
                             "pick another name")
        return value

    @field_validator("upstreams", "tools", "prompts", "resources")
    @classmethod
    def _valid_globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            glob_regex(pattern)
        return value

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in TOOL_CLASSES:
                raise ValueError(f"unknown class {name!r}; classes are "
                                 + ", ".join(TOOL_CLASSES))
        return value

    @field_validator("args")
    @classmethod
    def _valid_args(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if value:
            args_validator(value)
        return value


class PolicyConfig(_Model):
    """The whole `policy:` section."""

    default: Effect | None = None
    annotations: AnnotationTrust = "verify"
    annotations_by_upstream: dict[str, AnnotationTrust] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyConfig:
        first: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.name in first:
                raise ValueError(f"rule name {rule.name!r} is used by rules #{first[rule.name]} "
                                 f"and #{index}; rule names must be unique")
            first[rule.name] = index
        return self

    def effective_default(self, auth_mode: str | None) -> Effect:
        """`default`, or when absent: deny if the gateway authenticates callers, else allow."""
        if self.default is not None:
            return self.default
        return "allow" if auth_mode in (None, "none") else "deny"


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        model = HoursConfig if error["loc"][:1] == ("hours",) else RuleConfig
        allowed = [field.alias or name for name, field in model.model_fields.items()]
        message = "unknown key; allowed here: " + ", ".join(allowed)
    return f"{where}: {message}" if where else message
