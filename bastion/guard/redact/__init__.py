"""Secret and personal-data redaction for tool results and arguments.

`Redactor(config.redaction)` finds API keys, tokens, private keys, passwords in URLs and
assignments, and the configured personal data (card numbers, IBANs, emails, phone numbers,
IPv4 addresses, custom patterns), and replaces each with `[REDACTED:<kind>]`. Every call
returns the redacted value and a `RedactionReport` (counts per kind and JSON Pointers, never a
value) for the audit record. The configuration model is `bastion.config.redaction`.
"""

from bastion.guard.redact.redactor import (
    MAX_REPORT_PATHS,
    NOTHING,
    RedactionLimitError,
    RedactionReport,
    Redactor,
    json_pointer,
    secret_field_kind,
)

__all__ = [
    "MAX_REPORT_PATHS",
    "NOTHING",
    "RedactionLimitError",
    "RedactionReport",
    "Redactor",
    "json_pointer",
    "secret_field_kind",
]
