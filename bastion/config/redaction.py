"""The `redaction:` section of the configuration: which secrets and personal data Bastion
removes from tool results (and tool-call arguments) before an agent or the audit log sees them.

```yaml
redaction:
  secrets: true            # the built-in secret detectors (SECRET_KINDS)
  pii: [credit_card, iban] # built-in personal-data detectors (PII_KINDS); this is the default
  patterns:                # custom detectors: a name (the kind) and a regular expression
    - {name: employee_id, regex: "EMP-[0-9]{6}"}
  replacement: "[REDACTED:{kind}]"   # `{kind}` becomes the detector's name
  max_chars: 4194304       # a result holding more text is refused, not passed unscanned
```

The default personal-data set is `credit_card` and `iban`: both are checksummed (Luhn, mod 97)
so they almost never fire on ordinary data, and both are regulated. `email`, `phone` and
`ipv4` are everyday operational data in the tools a security team runs (tickets, SIEM hits),
so they are opt-in.

A custom regex runs on every string of every result, so it is checked here: it must compile,
must not match the empty string, is at most MAX_REGEX_LENGTH characters, and may not nest an
unbounded repetition inside another (`(a+)+`, `(\\w*)*`), the classic shape of catastrophic
backtracking.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

#: The kinds the built-in secret detectors report (bastion.guard.redact.detectors).
SECRET_KINDS = (
    "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_token", "stripe_key",
    "openai_key", "google_api_key", "jwt", "private_key", "url_password", "bearer_token",
    "basic_auth", "password", "secret", "token", "api_key", "cookie", "authorization",
)
PII_KINDS = ("email", "credit_card", "iban", "phone", "ipv4")
DEFAULT_PII = ("credit_card", "iban")
PiiKind = Literal["email", "credit_card", "iban", "phone", "ipv4"]

MAX_PATTERNS = 64
MAX_REGEX_LENGTH = 512
MAX_REPLACEMENT_LENGTH = 128
#: The default largest JSON-RPC message (bastion.protocol.jsonrpc): text beyond it cannot
#: arrive in one result anyway.
DEFAULT_MAX_CHARS = 4 * 1024 * 1024

KindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Model(BaseModel):
    # Like the main configuration: a misspelt key is an error, not an ignored setting.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _nested_unbounded(pattern: str) -> bool:
    """Whether `pattern` repeats, without bound, something that itself repeats without bound.

    Uses the stdlib's own regex parser, so the check sees exactly what `re` will run."""
    try:
        from re import _constants, _parser  # the parser `re.compile` uses (3.11+)
    except ImportError:  # pragma: no cover - a future Python without them: length cap only
        return False
    repeats = (_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT)

    def nested(value: Any) -> list[Any]:
        # The sub-patterns inside an operator's argument (groups, branches, lookarounds).
        if isinstance(value, _parser.SubPattern):
            return [value]
        if isinstance(value, (tuple, list)):
            return [sub for item in value for sub in nested(item)]
        return []

    def walk(items: Any, inside_unbounded: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                _low, high, body = arg
                unbounded = high == _constants.MAXREPEAT
                if (unbounded and inside_unbounded) or walk(body, inside_unbounded or unbounded):
                    return True
            elif any(walk(sub, inside_unbounded) for sub in nested(arg)):
                return True
        return False

    return walk(_parser.parse(pattern), False)


def _refuse_repeats(what: str, names: list[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{what} must be unique; listed more than once: {', '.join(repeated)}")


class RedactionPattern(_Model):
    """A custom detector: every match of `regex` is replaced, reported under `name`."""

    name: KindName
    regex: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REGEX_LENGTH)]

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, name: str) -> str:
        if name in SECRET_KINDS or name in PII_KINDS:
            raise ValueError(f"{name!r} is the name of a built-in detector; pick another name "
                             "so reports stay unambiguous")
        return name

    @field_validator("regex")
    @classmethod
    def _compiles_and_is_safe(cls, regex: str) -> str:
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {regex!r}: {exc}") from None
        if compiled.fullmatch(""):
            raise ValueError(f"regular expression {regex!r} matches the empty string, so it "
                             "would match everywhere; make it require at least one character")
        if _nested_unbounded(regex):
            raise ValueError(f"regular expression {regex!r} nests an unbounded repetition in "
                             "another (like (a+)+), which can take exponential time; bound the "
                             "inner or the outer repetition ({1,64})")
        return regex


class RedactionConfig(_Model):
    """What the redactor looks for, and what it writes instead."""

    secrets: bool = True
    pii: list[PiiKind] = Field(default_factory=lambda: list(DEFAULT_PII))
    patterns: list[RedactionPattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    replacement: Annotated[str, StringConstraints(max_length=MAX_REPLACEMENT_LENGTH)] = (
        "[REDACTED:{kind}]")
    max_chars: int = Field(default=DEFAULT_MAX_CHARS, ge=1024, le=256 * 1024 * 1024)

    @field_validator("pii")
    @classmethod
    def _unique_pii(cls, pii: list[str]) -> list[str]:
        _refuse_repeats("PII kinds", pii)
        return pii

    @field_validator("patterns")
    @classmethod
    def _unique_names(cls, patterns: list[RedactionPattern]) -> list[RedactionPattern]:
        _refuse_repeats("pattern names", [pattern.name for pattern in patterns])
        return patterns

    @field_validator("replacement")
    @classmethod
    def _only_kind_placeholder(cls, replacement: str) -> str:
        # Filled with str.replace, never str.format: no attribute lookups through a template.
        rest = replacement.replace("{kind}", "")
        if "{" in rest or "}" in rest:
            raise ValueError(f"replacement {replacement!r} may contain no braces other than "
                             "the {kind} placeholder")
        if any(ord(char) < 32 for char in replacement):
            raise ValueError("replacement may not contain control characters")
        return replacement
