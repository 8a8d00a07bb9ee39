"""The configuration sections of tracing (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TracingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoggingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

