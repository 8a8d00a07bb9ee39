"""The guard pipeline: ordered stages that every request, result and list passes through.

Each stage is a small object with the same interface (`Stage`); the gateway runs them in the
configured order. Identity, policy, scanning, pinning, approval, redaction and rate limits
arrive as stages; `header_body` checks the routing headers against the body.
"""

from bastion.guard.pipeline import Call, GuardError, Pipeline, Stage, build_pipeline

__all__ = ["Call", "GuardError", "Pipeline", "Stage", "build_pipeline"]
