"""The configuration sections of ratelimit (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RateLimitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

