"""Bastion's telemetry: Prometheus metrics, OpenTelemetry traces, structured logs, anomaly
rules and their alerts. The gateway feeds it `bastion.guard.outcome.Outcome`s."""
