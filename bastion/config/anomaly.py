"""The configuration sections of anomaly (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AnomalyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

