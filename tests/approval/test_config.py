"""The `approvals:` section: durations, approvers, webhooks and rule matchers, and the clear
errors a bad one gets (SPEC-TOOL-06)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.config.approvals import DEFAULT_EXPIRY, ApprovalsConfig, duration_seconds
from tests.approval.support import RULE, config


def test_defaults_and_rule_expiry_override() -> None:
    approvals = config()
    assert approvals.expiry == DEFAULT_EXPIRY == 900
    assert approvals.wait == 120
    assert approvals.expiry_of(approvals.rules[0]) == 600
    assert approvals.rules[0].self_approval is False


@pytest.mark.parametrize(("text", "seconds"), [
    (90, 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), (" 3M ", 180)])
def test_durations(text: object, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["5y", "", "-3m", "1.5h", 0, True, None, "8d", 10**9])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="duration"):
        ApprovalsConfig.model_validate({"expiry": bad})


@pytest.mark.parametrize(("rule", "message"), [
    ({**RULE, "classes": ["nuke"]}, "unknown class 'nuke'"),
    ({**RULE, "expiry": "soon"}, "'soon' is not a duration"),
    ({**RULE, "approvers": {}}, "approvers names nobody"),
    ({**RULE, "approvers": {"roles": []}}, "approvers names nobody"),
    ({k: v for k, v in RULE.items() if k != "approvers"}, "approvers: Field required"),
    ({**RULE, "effect": "allow"}, "'effect' is not a key"),
    ({**RULE, "approver": ["x"]}, "unknown key; allowed here: .*approvers"),
    ({**RULE, "tools": ["edr__[z-a]"]}, "is not valid"),
    ({**RULE, "args": {"host": {"type": "nonsense"}}}, "not a valid JSON Schema"),
])
def test_bad_rules_name_the_rule_and_the_problem(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        config([rule])
    assert "isolation-needs-a-second-person" in str(caught.value) or "name" in str(caught.value)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="used twice"):
        config([RULE, RULE])


@pytest.mark.parametrize(("webhook", "message"), [
    ({"url": "http://hooks.example.com/x"}, "must use https"),
    ({"url": "ftp://hooks.example.com/x"}, "https:// URL"),
    ({"url": "https://hooks.example.com/x y"}, "control characters"),
    ({"url": "https://hooks.example.com/x", "format": "teams"}, "'json' or 'slack'"),
    ({"url": "https://hooks.example.com/x", "timeout": 0}, "greater than 0"),
    ({"url": "https://hooks.example.com/x", "secret": "short"}, "at least 16"),
    ({"url": "https://hooks.example.com/x", "retries": 3}, "Extra inputs"),
])
def test_bad_webhooks_are_refused(webhook: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ApprovalsConfig.model_validate({"webhook": webhook})


def test_webhook_secret_is_not_shown() -> None:
    approvals = ApprovalsConfig.model_validate({"webhook": {
        "url": "http://127.0.0.1:9/x", "secret": "s3cret-s3cret-s3cret"}})
    assert "s3cret" not in repr(approvals)


@pytest.mark.parametrize("link", ["https://bastion.example/approvals", "javascript:{id}"])
def test_link_must_be_http_with_an_id(link: str) -> None:
    with pytest.raises(ValidationError, match="link must be"):
        ApprovalsConfig.model_validate({"link": link})


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        ApprovalsConfig.model_validate({"timeout": 3})
