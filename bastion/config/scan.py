"""The `scan:` section: what the gateway does with the scanner's findings, per severity,
for definitions (tools, prompts, resources, templates, server instructions) and for
results, with overrides per upstream.

```yaml
scan:
  metadata: {critical: block, high: block, medium: warn}    # block|strip|warn|ignore
  results: {critical: block, high: annotate, medium: warn}  # block|strip|annotate|warn|ignore
  upstreams:
    legacy-docs: {metadata: {high: warn}}   # merged over the defaults for that upstream
```

A severity not listed is ignored. The defaults block definitions with high or critical
findings, and annotate results with high findings (block at critical).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEVERITIES = ("info", "low", "medium", "high", "critical")
MetadataAction = Literal["block", "strip", "warn", "ignore"]
ResultAction = Literal["block", "strip", "annotate", "warn", "ignore"]


def _check_severities(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(SEVERITIES))
    if unknown:
        raise ValueError(f"unknown severities {', '.join(unknown)}; use "
                         + ", ".join(SEVERITIES))
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScanActions(_Model):
    """Actions per severity (a partial map; see the module doc)."""

    metadata: dict[str, MetadataAction] | None = None
    results: dict[str, ResultAction] | None = None

    @field_validator("metadata", "results")
    @classmethod
    def _known_severities(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else _check_severities(value)


class ScanConfig(_Model):
    """The whole `scan:` section."""

    enabled: bool = True
    metadata: dict[str, MetadataAction] = Field(
        default_factory=lambda: {"critical": "block", "high": "block", "medium": "warn"})
    results: dict[str, ResultAction] = Field(
        default_factory=lambda: {"critical": "block", "high": "annotate", "medium": "warn"})
    upstreams: dict[str, ScanActions] = Field(default_factory=dict)

    @field_validator("metadata", "results")
    @classmethod
    def _known_severities(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_severities(value)

    def metadata_actions(self, upstream: str) -> dict[str, str]:
        """The metadata actions in force for `upstream`."""
        override = self.upstreams.get(upstream)
        return {**self.metadata, **(override.metadata or {})} if override else self.metadata

    def result_actions(self, upstream: str) -> dict[str, str]:
        override = self.upstreams.get(upstream)
        return {**self.results, **(override.results or {})} if override else self.results
