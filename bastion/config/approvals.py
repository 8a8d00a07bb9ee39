"""The `approvals:` section of the configuration: which calls need a person to say yes.

```yaml
approvals:
  expiry: 15m            # how long a request stays open (90s, 15m, 2h, 1d or seconds)
  wait: 120              # seconds a client without tasks or elicitation waits in the call
  link: https://bastion.example/approvals/{id}   # optional: where approvers act ({id})
  webhook:               # optional: told when an approval opens
    url: https://hooks.example.com/x
    format: json         # json | slack (Slack incoming-webhook shape)
    timeout: 5           # seconds for the whole POST
    secret: ${HOOK_SECRET}   # optional: X-Bastion-Signature: sha256=<HMAC of the body>
  rules:
    - name: isolation-needs-a-second-person
      tools: ["edr__isolate_host"]   # matchers as in policy rules (who, what, args, hours)
      classes: [destructive]
      roles: [responder]             # whose calls need approval
      approvers: {roles: [soc-lead]} # who may approve: roles and/or subjects
      self_approval: false           # the requester never approves their own call unless true
      expiry: 10m                    # overrides the default
```

A rule matches a call when all its matchers match, exactly like a policy allow rule (the
matching is the policy's own, `bastion.guard.policy.rules.CompiledRule`); the first matching
rule applies. An approval rule has no `effect`: it never allows what the policy denies, it
only adds a person to what the policy allows. A request nobody decides before its expiry is
denied (it expires).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bastion.config.policy import MAX_RULES, Names, RuleConfig

#: Defaults and bounds, in seconds.
DEFAULT_EXPIRY = 15 * 60
MAX_EXPIRY = 7 * 86400
DEFAULT_WAIT = 120
MAX_WAIT = 3600
MAX_WEBHOOK_TIMEOUT = 60.0
_DURATION = re.compile(r"(\d{1,9})\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def duration_seconds(value: Any, *, maximum: int = MAX_EXPIRY) -> int:
    """Seconds from `90`, `"90s"`, `"15m"`, `"2h"` or `"1d"`; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a duration; write seconds or 90s, 15m, 2h, 1d")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write seconds or 90s, 15m, 2h, 1d")
        seconds = int(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= maximum:
        raise ValueError(f"{value!r} is out of range: a duration is more than 0 and at most "
                         f"{maximum} seconds")
    return seconds


class ApproversConfig(_Model):
    """Who may decide a request: anyone holding one of `roles`, or one of `subjects`."""

    roles: Names = Field(default_factory=list)
    subjects: Names = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> ApproversConfig:
        if not self.roles and not self.subjects:
            raise ValueError("approvers names nobody; give approvers.roles or approvers.subjects")
        return self


class WebhookConfig(_Model):
    """Where to POST when an approval opens (see the module doc)."""

    url: str = Field(max_length=2048)
    format: Literal["json", "slack"] = "json"
    timeout: float = Field(default=5.0, gt=0, le=MAX_WEBHOOK_TIMEOUT)
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook url must be an https:// URL")
        if any(ord(char) <= 0x20 or char == "\x7f" for char in value):
            raise ValueError("the webhook url contains whitespace or control characters")
        # The body names people and tools (and a Slack URL is itself a credential): plain
        # HTTP only to this machine.
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError("the webhook url must use https (http only for localhost)")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        return value


class ApprovalRuleConfig(RuleConfig):
    """One approval rule: the matchers of a policy rule, plus who approves and how long."""

    # Matching reuses the policy's compiled rules, which read an effect; an approval rule
    # matches like an allow rule, and `effect` is not a key users write (see `_no_effect`).
    effect: Literal["allow"] = Field(default="allow", exclude=True)
    approvers: ApproversConfig
    self_approval: bool = False
    expiry: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_rule(cls, data: Any, handler: ModelWrapValidatorHandler[RuleConfig]
                       ) -> RuleConfig:
        # Overrides the policy's: same one-line message, with this model's keys.
        if isinstance(data, dict) and "effect" in data:
            raise ValueError(f"approval rule {data.get('name')!r}: 'effect' is not a key of an "
                             "approval rule (it only adds a person to what the policy allows)")
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else None
            label = (f"approval rule {name!r}" if isinstance(name, str) and name
                     else "an approval rule without a name")
            problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
            raise ValueError(f"{label}: {problems}") from None

    @field_validator("expiry", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int | None:
        return None if value is None else duration_seconds(value)


class ApprovalsConfig(_Model):
    """The whole `approvals:` section (see the module doc)."""

    expiry: int = DEFAULT_EXPIRY
    wait: int = Field(default=DEFAULT_WAIT, ge=0, le=MAX_WAIT)
    link: str | None = Field(default=None, max_length=2048)
    webhook: WebhookConfig | None = None
    rules: list[ApprovalRuleConfig] = Field(default_factory=list, max_length=MAX_RULES)

    @field_validator("expiry", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_seconds(value)

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("http", "https")
                                  or "{id}" not in value):
            raise ValueError("link must be an http(s) URL holding {id}, e.g. "
                             "https://bastion.example/approvals/{id}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ApprovalsConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"approval rule name {rule.name!r} is used twice; rule names "
                                 "must be unique")
            seen.add(rule.name)
        return self

    def expiry_of(self, rule: ApprovalRuleConfig) -> int:
        """The seconds a request opened under `rule` stays open."""
        return rule.expiry if rule.expiry is not None else self.expiry


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        allowed = [field.alias or name for name, field in ApprovalRuleConfig.model_fields.items()
                   if name != "effect"]
        message = "unknown key; allowed here: " + ", ".join(allowed)
    return f"{where}: {message}" if where else message
