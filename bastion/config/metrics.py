"""The `metrics:` and `health:` sections: Prometheus at `/metrics`, upstream probes and the
liveness and readiness routes.

```yaml
metrics:
  enabled: true
  path: /metrics
  require_auth: auto        # auto: a credential when the gateway authenticates; true | false
  roles: [metrics, admin]   # a scrape credential needs one of these roles ...
  scope: bastion:metrics    # ... or this scope
  max_series: 2000          # distinct (upstream, method, tool) label sets; more go to "other"
health:
  enabled: true
  probe_seconds: 15         # how often each connected upstream is pinged
  probe_timeout_seconds: 5  # how long a ping may take before it counts as a failure
  window: 20                # the error rate is over the last `window` probes
  healthz_path: /healthz
  readyz_path: /readyz
  require_auth: auto        # who sees the upstream details (status alone is always public)
```

`require_auth: auto` asks for a credential exactly when the gateway has an authenticator (an
`auth:` section); a loopback gateway without authentication serves both openly. The upstream
details of `/healthz` and `/readyz` (names, states, last errors) are shown to the same
principals as `/metrics` (`metrics.roles` or `metrics.scope`); a liveness or readiness probe
without a credential still gets its status code and `{"status": ...}`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: `require_auth`: "auto", or an explicit yes or no.
RequireAuth = Literal["auto"] | bool


def _route_path(value: str) -> str:
    if not value.startswith("/") or len(value) > 200 or any(c in value for c in "?#{} \t"):
        raise ValueError(f"{value!r} is not a plain absolute path (like /metrics)")
    return value


class _Guarded(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    require_auth: RequireAuth = "auto"

    def needs_auth(self, has_authenticator: bool) -> bool:
        """Whether a request must carry a credential (for health: to see the details)."""
        return has_authenticator if self.require_auth == "auto" else bool(self.require_auth)


class MetricsConfig(_Guarded):
    """Prometheus metrics (see the module doc)."""

    path: str = "/metrics"
    roles: list[str] = Field(default_factory=lambda: ["metrics", "admin"], max_length=64)
    scope: str = Field("bastion:metrics", min_length=1, max_length=200)
    max_series: int = Field(2000, ge=10, le=100_000)

    _path = field_validator("path")(_route_path)


class HealthConfig(_Guarded):
    """Upstream probes, `/healthz` and `/readyz` (see the module doc)."""

    probe_seconds: float = Field(15.0, gt=0, le=3600)
    probe_timeout_seconds: float = Field(5.0, gt=0, le=300)
    window: int = Field(20, ge=1, le=1000)
    healthz_path: str = "/healthz"
    readyz_path: str = "/readyz"

    _paths = field_validator("healthz_path", "readyz_path")(_route_path)
