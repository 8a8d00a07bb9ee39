"""The `tracing:` and `logging:` sections of the configuration.

```yaml
tracing:
  enabled: true
  otlp_endpoint: http://127.0.0.1:4318/v1/traces   # OTLP/HTTP collector; omit: no export
  service_name: bastion
  sample_ratio: 1.0          # new traces kept; a caller's sampled flag decides for its own
  propagate_baggage: true    # hand the caller's W3C baggage on to the upstream
  guard_spans: false         # a span around the guard stages as well (costs more)
  timeout: 10                # seconds for one export request (connect included)
  headers:                   # sent with every export (an API key): never shown in repr
    x-api-key: ${OTLP_KEY}
logging:
  format: json               # text (default) or json: one JSON object per line
  level: info
```

Tracing enabled without `otlp_endpoint` still creates spans and carries the trace context to
the upstreams (so a trace crosses the gateway and log lines carry trace ids); nothing is
exported. Spans are exported as OTLP/JSON over HTTP by Bastion itself
(bastion.telemetry.tracing), so neither needs the `bastion[otel]` extra; only handing spans
to an OpenTelemetry SDK exporter from code does.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
#: Headers the exporter writes itself: a configured one would be a second, conflicting copy.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding",
                               "connection"})
MAX_EXPORT_HEADERS = 32
MAX_HEADER_VALUE = 4096


class TracingConfig(BaseModel):
    """OpenTelemetry tracing of every request through the gateway (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    otlp_endpoint: str | None = None
    service_name: str = Field(default="bastion", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    propagate_baggage: bool = True
    #: A span around the guard stages too (about 5 µs a request more); refusals show on the
    #: request's own span either way.
    guard_spans: bool = False
    timeout: float = Field(default=10.0, gt=0.0, le=120.0)
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"tracing.otlp_endpoint must be an http(s) URL with a host, such "
                             f"as http://127.0.0.1:4318/v1/traces; got {value!r}")
        if parts.username is not None or parts.password is not None:
            # A URL ends up in error messages and logs: credentials belong in `headers`.
            raise ValueError("tracing.otlp_endpoint must not carry credentials; put them "
                             "in tracing.headers")
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number in range)
        except ValueError as exc:
            raise ValueError(f"tracing.otlp_endpoint has an invalid port: {exc}") from None
        return value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if len(value) > MAX_EXPORT_HEADERS:
            raise ValueError(f"tracing.headers has {len(value)} entries; at most "
                             f"{MAX_EXPORT_HEADERS} are allowed")
        for name, secret in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"tracing.headers: {name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"tracing.headers: {name!r} is set by the exporter itself")
            text = secret.get_secret_value()
            # The value is never echoed: it may be the collector's API key.
            if len(text) > MAX_HEADER_VALUE or any(c in text for c in "\r\n\x00"):
                raise ValueError(f"tracing.headers: the value of {name!r} is longer than "
                                 f"{MAX_HEADER_VALUE} characters or holds a line break")
        return value

    def export_headers(self) -> dict[str, str]:
        """The headers to send with each export, in clear (for the exporter only)."""
        return {name: secret.get_secret_value() for name, secret in self.headers.items()}


class LoggingConfig(BaseModel):
    """How Bastion writes its own log lines: text for people, JSON lines for collectors."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
