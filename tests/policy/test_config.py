"""The `policy:` configuration model: the documented shape loads, every mistake names its rule."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from bastion.config.policy import PolicyConfig, clock_minutes, glob_regex

DOCUMENTED = """\
default: deny
annotations: verify
annotations_by_upstream: {siem: trust}
rules:
  - name: analysts-read-only
    effect: allow
    roles: [analyst]
    upstreams: ["siem", "ti*"]
    tools: ["siem__*"]
    classes: [read-only]
    args: {path: {pattern: "^/data/"}}
    hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", tz: "Europe/Berlin"}
  - {name: ro, effect: allow, roles: [analyst], classes: [read-only]}
  - name: unquoted-times
    effect: deny
    hours: {from: 18:00, to: 8:30}
"""


def rule_error(rule: dict, **policy) -> str:
    with pytest.raises(ValidationError) as caught:
        PolicyConfig.model_validate({"rules": [rule], **policy})
    return str(caught.value)


def test_the_documented_shape_loads() -> None:
    config = PolicyConfig.model_validate(yaml.safe_load(DOCUMENTED))
    first, ro, night = config.rules
    assert first.hours is not None and first.hours.tz == "Europe/Berlin"
    assert first.args == {"path": {"pattern": "^/data/"}}
    assert ro.classes == ["read-only"] and not ro.tools
    assert config.annotations_by_upstream == {"siem": "trust"}
    # YAML 1.1 reads an unquoted 18:00 as 1080 (base 60): exactly the minutes since midnight.
    assert night.hours is not None
    assert clock_minutes(night.hours.start) == 18 * 60
    assert clock_minutes(night.hours.to, end=True) == 8 * 60 + 30


def test_absent_default_follows_authentication() -> None:
    empty = PolicyConfig()
    assert empty.effective_default("none") == "allow"
    assert empty.effective_default(None) == "allow"
    assert empty.effective_default("jwt") == "deny"
    assert PolicyConfig(default="allow").effective_default("jwt") == "allow"


def test_unknown_class_names_the_rule() -> None:
    message = rule_error({"name": "ro", "effect": "allow", "classes": ["read-ony"]})
    assert "rule 'ro'" in message and "unknown class 'read-ony'" in message


@pytest.mark.parametrize("glob", ["x[a", "[]", "[z-a]", "", "tab\there"])
def test_bad_glob_names_the_rule(glob: str) -> None:
    message = rule_error({"name": "bad-glob", "effect": "deny", "tools": [glob]})
    assert "rule 'bad-glob'" in message and "tools" in message


def test_bad_regex_in_args_names_the_rule() -> None:
    message = rule_error({"name": "paths", "effect": "allow",
                          "args": {"path": {"pattern": "^(/data"}}})
    assert "rule 'paths'" in message and "not a valid JSON Schema" in message


def test_args_schema_never_fetches_a_remote_ref() -> None:
    message = rule_error({"name": "remote", "effect": "allow",
                          "args": {"path": {"$ref": "http://127.0.0.1:9/schema.json"}}})
    assert "rule 'remote'" in message and "refusing to fetch" in message


@pytest.mark.parametrize(("hours", "expected"), [
    ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"from": "25:00"}, "'25:00' is not a time of day"),
    ({"from": "8am"}, "is not a time"),
    ({"to": "24:01"}, "is not a time of day"),
    ({"from": "09:00", "to": "09:00"}, "is empty"),
    ({"days": ["monday"]}, "days.0"),
    ({"form": "08:00"}, "unknown key; allowed here: days, from, to, tz"),
])
def test_bad_hours_name_the_rule(hours: dict, expected: str) -> None:
    message = rule_error({"name": "office", "effect": "allow", "hours": hours})
    assert "rule 'office'" in message and expected in message


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="rule name 'ro' is used by rules #0 and #2"):
        PolicyConfig.model_validate({"rules": [
            {"name": "ro", "effect": "allow"}, {"name": "other", "effect": "deny"},
            {"name": "ro", "effect": "deny"}]})


@pytest.mark.parametrize(("rule", "expected"), [
    ({"name": "default", "effect": "deny"}, "reserved"),
    ({"effect": "deny"}, "a rule without a name: name: Field required"),
    ({"name": "x", "effect": "maybe"}, "effect"),
    ({"name": "x", "effect": "allow", "tool": ["a"]}, "tool: unknown key"),
    ({"name": "has space", "effect": "allow"}, "name"),
])
def test_malformed_rules_are_refused(rule: dict, expected: str) -> None:
    assert expected in rule_error(rule)


def test_unknown_policy_keys_and_modes_are_refused() -> None:
    with pytest.raises(ValidationError, match="annotations"):
        PolicyConfig.model_validate({"annotations": "believe"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        PolicyConfig.model_validate({"rule": []})


def test_globs_are_literal_but_for_wildcards() -> None:
    import re

    assert re.fullmatch(glob_regex("siem__*"), "siem__search")
    assert not re.fullmatch(glob_regex("siem__*"), "siem_search")
    assert re.fullmatch(glob_regex("a.b?[!x]"), "a.bcd")
    assert not re.fullmatch(glob_regex("a.b"), "axb")  # a dot is a dot
    assert re.fullmatch(glob_regex("file:///data/*"), "file:///data/a/b.txt")  # * crosses /
    assert re.fullmatch(glob_regex("[*]"), "*") and not re.fullmatch(glob_regex("[*]"), "a")
