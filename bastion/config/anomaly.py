"""The `anomalies:` section of the configuration: which unusual traffic raises an alert.

```yaml
anomalies:
  enabled: true
  cooldown: 10m            # one alert per rule and principal (or tool) per cooldown
  queue: 1000              # alerts waiting for delivery; past it they are dropped (counted)
  max_keys: 100000         # principals, tools and upstreams remembered per rule
  webhook:                 # optional, as approvals.webhook: POST {"event": "anomaly.detected"}
    url: https://hooks.example.com/x
    format: json           # json | slack
    secret: ${HOOK_SECRET} # X-Bastion-Signature: sha256=<HMAC of the body>
  rate:                    # requests per principal per window, against its own baseline
    window: 60s
    factor: 5              # fires above max(min_requests, factor x baseline) ...
    min_requests: 30
    warmup_windows: 5      # ... once the principal has this many active windows behind it
    max_per_window: 300    # fires even without history
  denials: {count: 10, within: 60s}               # refusals by one principal
  findings: {count: 5, within: 10m, per: principal}   # scanner findings (or per: upstream)
  first_use: {learning_seconds: 0, max_pairs: 100000} # a principal's first call of a tool
  off_hours:               # off unless enabled: working hours are the organisation's
    enabled: true
    hours: "08:00-19:00"
    days: [mon, tue, wed, thu, fri]
    timezone: Europe/Paris
    exempt_roles: [on-call]
  result_volume: {max_bytes: 10485760, factor: 10, min_bytes: 65536, warmup: 20}
```

Every rule block takes `enabled`, `severity` (low, medium, high) and `cooldown` (overriding
the section's). Durations are seconds or `90s`, `15m`, `2h`, `1d`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.config.approvals import WebhookConfig, duration_seconds
from bastion.config.policy import DAYS, HoursConfig, clock_minutes, time_zone

Severity = Literal["low", "medium", "high"]
#: The longest window, cooldown or learning time (seconds).
MAX_DURATION = 7 * 86400
_HOURS = re.compile(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> int:
    return duration_seconds(value, maximum=MAX_DURATION)


class _RuleConfig(_Model):
    """What every rule block has."""

    enabled: bool = True
    severity: Severity = "medium"
    #: Seconds between two alerts of this rule about the same principal or tool (None: the
    #: section's `cooldown`).
    cooldown: int | None = None

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> int | None:
        return None if value is None else _duration(value)


class RateConfig(_RuleConfig):
    """Requests per principal per window, against the principal's own baseline."""

    window: int = 60
    factor: float = Field(default=5.0, gt=1, le=1000)
    min_requests: int = Field(default=30, gt=0)
    warmup_windows: int = Field(default=5, gt=0, le=10_000)
    max_per_window: int | None = Field(default=300, gt=0)
    #: The weight of the newest window in the baseline (an exponential moving average).
    smoothing: float = Field(default=0.2, gt=0, le=1)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> int:
        return _duration(value)


class BurstConfig(_RuleConfig):
    """At least `count` events within `within` seconds."""

    count: int = Field(default=10, gt=0, le=100_000)
    within: int = 60

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> int:
        return _duration(value)


class FindingsConfig(BurstConfig):
    """Scanner findings on calls, counted per principal or per upstream."""

    severity: Severity = "high"
    count: int = Field(default=5, gt=0, le=100_000)
    within: int = 600
    per: Literal["principal", "upstream"] = "principal"


class FirstUseConfig(_RuleConfig):
    """The first call of a tool by a principal (remembered in memory, least recent forgotten
    first; a restart forgets everything, so `learning_seconds` after start learn quietly)."""

    severity: Severity = "low"
    learning_seconds: int = Field(default=0, ge=0, le=MAX_DURATION)
    max_pairs: int = Field(default=100_000, gt=0, le=10_000_000)


class OffHoursConfig(_RuleConfig):
    """Requests outside working hours (local time in `timezone`)."""

    enabled: bool = False
    hours: str = "08:00-19:00"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(DAYS[:5]), min_length=1, max_length=7)
    timezone: str = "UTC"
    exempt_roles: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("days", mode="before")
    @classmethod
    def _known_days(cls, value: Any) -> Any:
        if isinstance(value, list):
            unknown = [day for day in value if day not in DAYS]
            if unknown:
                raise ValueError(f"unknown day {unknown[0]!r}; days are "
                                 + ", ".join(DAYS))
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a range of hours; write \"HH:MM-HH:MM\", "
                             "e.g. \"08:00-19:00\"")
        if clock_minutes(match[1]) == clock_minutes(match[2], end=True):
            raise ValueError(f"hours {value!r} is an empty range; for the whole day write "
                             "\"00:00-24:00\"")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)
        return value

    def working_hours(self) -> HoursConfig:
        """The working hours as the policy's `hours` (for `TimeWindow`)."""
        match = _HOURS.fullmatch(self.hours)
        assert match is not None  # checked by the validator
        return HoursConfig.model_validate({"days": self.days, "from": match[1],
                                           "to": match[2], "tz": self.timezone})


class ResultVolumeConfig(_RuleConfig):
    """Results larger than `max_bytes`, or than `factor` x the tool's usual size."""

    max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    factor: float = Field(default=10.0, gt=1, le=10_000)
    #: Results below this never count as unusual, whatever the baseline.
    min_bytes: int = Field(default=64 * 1024, ge=0)
    #: Results of a tool seen before its baseline is trusted.
    warmup: int = Field(default=20, gt=0, le=100_000)
    smoothing: float = Field(default=0.1, gt=0, le=1)


class AnomalyConfig(_Model):
    """The whole `anomalies:` section (see the module doc)."""

    enabled: bool = True
    cooldown: int = 600
    queue: int = Field(default=1000, gt=0, le=100_000)
    max_keys: int = Field(default=100_000, gt=0, le=10_000_000)
    webhook: WebhookConfig | None = None
    rate: RateConfig = Field(default_factory=RateConfig)
    denials: BurstConfig = Field(default_factory=BurstConfig)
    findings: FindingsConfig = Field(default_factory=FindingsConfig)
    first_use: FirstUseConfig = Field(default_factory=FirstUseConfig)
    off_hours: OffHoursConfig = Field(default_factory=OffHoursConfig)
    result_volume: ResultVolumeConfig = Field(default_factory=ResultVolumeConfig)

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, value: Any) -> int:
        return _duration(value)

    def cooldown_of(self, rule: _RuleConfig) -> int:
        """The seconds between two alerts of `rule` about the same thing."""
        return rule.cooldown if rule.cooldown is not None else self.cooldown
