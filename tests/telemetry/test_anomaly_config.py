"""The `anomalies:` section: the documented example loads, defaults are on, and mistakes are
refused with a message that says what to write (issue 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import bastion.config.anomaly as anomaly_module
from bastion.config import BastionConfig
from bastion.config.anomaly import AnomalyConfig
from bastion.config.errors import ConfigError
from bastion.config.loader import load_config


def _example() -> dict[str, Any]:
    doc = anomaly_module.__doc__ or ""
    block = doc.split("```yaml", 1)[1].split("```", 1)[0]
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def test_the_documented_example_is_valid() -> None:
    section = _example()["anomalies"]
    section["webhook"]["secret"] = "s" * 32  # the example interpolates it
    parsed = AnomalyConfig.model_validate(section)
    assert parsed.rate.window == 60 and parsed.findings.within == 600
    assert parsed.off_hours.enabled and parsed.off_hours.exempt_roles == ["on-call"]
    assert parsed.cooldown == 600 and parsed.cooldown_of(parsed.denials) == 600
    assert parsed.webhook is not None and parsed.webhook.format == "json"


def test_defaults_turn_the_generic_rules_on() -> None:
    defaults = BastionConfig().anomalies
    assert defaults.enabled and defaults.webhook is None
    assert [name for name in ("rate", "denials", "findings", "first_use", "off_hours",
                              "result_volume") if getattr(defaults, name).enabled] == [
        "rate", "denials", "findings", "first_use", "result_volume"]
    assert defaults.rate.max_per_window == 300 and defaults.first_use.learning_seconds == 0


def test_durations_and_rule_cooldowns() -> None:
    parsed = AnomalyConfig.model_validate({"cooldown": "1h", "rate": {"window": "5m"},
                                           "denials": {"within": "90s", "cooldown": "2m"}})
    assert parsed.cooldown == 3600 and parsed.rate.window == 300
    assert parsed.denials.within == 90 and parsed.cooldown_of(parsed.denials) == 120
    assert parsed.cooldown_of(parsed.rate) == 3600


@pytest.mark.parametrize(("section", "where", "says"), [
    ({"off_hours": {"hours": "8-19"}}, "off_hours.hours", 'write "HH:MM-HH:MM"'),
    ({"off_hours": {"hours": "08:00-25:00"}}, "off_hours.hours", "not a time of day"),
    ({"off_hours": {"hours": "09:00-09:00"}}, "off_hours.hours", "empty range"),
    ({"off_hours": {"days": ["mon", "funday"]}}, "off_hours.days", "unknown day 'funday'"),
    ({"off_hours": {"timezone": "Mars/Olympus"}}, "off_hours.timezone", "unknown time zone"),
    ({"rate": {"factor": 0}}, "rate.factor", "greater than 1"),
    ({"rate": {"min_requests": -5}}, "rate.min_requests", "greater than 0"),
    ({"rate": {"window": 0}}, "rate.window", "out of range"),
    ({"denials": {"count": 0}}, "denials.count", "greater than 0"),
    ({"findings": {"per": "planet"}}, "findings.per", "'principal' or 'upstream'"),
    ({"result_volume": {"max_bytes": 0}}, "result_volume.max_bytes", "greater than 0"),
    ({"first_use": {"learning_seconds": -1}}, "first_use.learning_seconds", "greater than"),
    ({"cooldown": "soon"}, "cooldown", "is not a duration"),
    ({"denials": {"severity": "urgent"}}, "denials.severity", "'low', 'medium' or 'high'"),
    ({"rate": {"windw": 60}}, "rate.windw", "Extra inputs"),
    ({"webhook": {"url": "http://hooks.example/x"}}, "webhook.url", "must use https"),
    ({"webhook": {"url": "https://h.example/x", "secret": "short"}}, "webhook.secret",
     "at least 16 characters"),
])
def test_mistakes_are_refused_with_a_clear_message(section: dict[str, Any], where: str,
                                                   says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AnomalyConfig.model_validate(section)
    [error] = caught.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == where
    assert says in str(error["msg"])


def test_a_mistake_in_the_file_names_the_section(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("anomalies:\n  off_hours:\n    enabled: true\n"
                    "    timezone: Europe/Nowhere\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "anomalies.off_hours.timezone" in str(caught.value)
    assert "unknown time zone 'Europe/Nowhere'" in str(caught.value)
