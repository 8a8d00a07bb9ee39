"""The configuration sections of metrics (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

