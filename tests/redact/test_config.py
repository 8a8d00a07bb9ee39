"""The `redaction:` configuration: the documented shape loads; every mistake is a clear error."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from bastion.config.redaction import (
    DEFAULT_PII,
    MAX_REGEX_LENGTH,
    PII_KINDS,
    SECRET_KINDS,
    RedactionConfig,
)
from bastion.guard.redact.detectors import KEYWORDS, PII_DETECTORS, SECRETS

DOCUMENTED = """\
secrets: true
pii: [email, credit_card, iban, phone, ipv4]
patterns:
  - {name: employee_id, regex: "EMP-[0-9]{6}"}
replacement: "[REDACTED:{kind}]"
"""


def error_of(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        RedactionConfig.model_validate(fields)
    return str(caught.value)


def test_the_documented_shape_loads() -> None:
    config = RedactionConfig.model_validate(yaml.safe_load(DOCUMENTED))
    assert config.secrets and config.pii == list(PII_KINDS)
    assert config.patterns[0].name == "employee_id"
    assert config.replacement == "[REDACTED:{kind}]"


def test_defaults() -> None:
    config = RedactionConfig()
    assert config.secrets and config.pii == list(DEFAULT_PII) == ["credit_card", "iban"]
    assert not config.patterns and config.max_chars == 4 * 1024 * 1024


def test_kind_names_match_the_detectors() -> None:
    builtin = {detector.kind for detector in SECRETS} | {kind for kind, *_ in KEYWORDS}
    assert builtin == set(SECRET_KINDS)
    assert set(PII_DETECTORS) == set(PII_KINDS)


@pytest.mark.parametrize(("fields", "message"), [
    ({"patterns": [{"name": "bad", "regex": "EMP-[0-9"}]}, "invalid regular expression"),
    ({"patterns": [{"name": "empty", "regex": "x*"}]}, "matches the empty string"),
    ({"patterns": [{"name": "nested", "regex": "(a+)+b"}]}, "nests an unbounded repetition"),
    ({"patterns": [{"name": "nested2", "regex": r"^(?:\w+\s?)*!"}]}, "exponential"),
    ({"patterns": [{"name": "long", "regex": "a" * (MAX_REGEX_LENGTH + 1)}]},
     f"at most {MAX_REGEX_LENGTH} characters"),
    ({"patterns": [{"name": "jwt", "regex": "x+"}]}, "built-in detector"),
    ({"patterns": [{"name": "Bad Name", "regex": "x+"}]}, "string_pattern_mismatch"),
    ({"patterns": [{"name": "a", "regex": "x"}, {"name": "a", "regex": "y"}]},
     "pattern names must be unique"),
    ({"patterns": [{"name": "a", "regex": "x", "flags": "i"}]}, "Extra inputs"),
    ({"pii": ["email", "ssn"]}, "literal_error"),
    ({"pii": ["email", "email"]}, "PII kinds must be unique; listed more than once: email"),
    ({"replacement": "{kind.__class__}"}, "no braces other than"),
    ({"replacement": "[{0}]"}, "no braces other than"),
    ({"replacement": "a\nb"}, "control characters"),
    ({"replacement": "x" * 200}, "at most 128 characters"),
    ({"max_chars": 10}, "greater than or equal to 1024"),
    ({"secret": True}, "Extra inputs"),
])
def test_bad_configuration_is_a_clear_error(fields: dict, message: str) -> None:
    assert message in error_of(**fields)


def test_bounded_repetitions_are_fine() -> None:
    config = RedactionConfig(patterns=[{"name": "ticket", "regex": r"(?:[A-Z]{1,10}-)+[0-9]+"}])
    assert config.patterns[0].regex.startswith("(?:")
