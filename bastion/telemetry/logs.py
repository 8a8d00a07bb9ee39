"""Bastion's own log lines: text for people or JSON lines for collectors, with the trace and
request ids of the request being served, and secrets masked out of every record.

    configure_logging(config.logging)        # once, at start-up (returns the handler)
    with request_context(request.id):        # the gateway, per request (a contextvar)
        logger.info("relayed %s", name)

A JSON line holds `time` (RFC 3339, UTC), `level`, `logger`, `message`, `trace_id` and
`span_id` (of the current span, bastion.telemetry.tracing), `request_id`, and `exception`
(the traceback text) when there is one.

`SecretMasker` runs on every record as it is made (a log record factory, so before any
handler of any logger sees it): it renders the message with its arguments, then replaces
bearer tokens, JWT-shaped strings, the values of `Authorization:`, `api_key=`, `token=`,
`password=` (and their kin), and whatever the redaction engine's secret detectors find
(AWS, GitHub, Slack, Stripe, OpenAI keys, private keys, URL passwords) with `[REDACTED]`
or `[REDACTED:<kind>]`. The exception text and stack are masked the same way, and the
traceback objects dropped from the record. Records below a logger's level are never made,
so masking costs only what is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

import orjson

from bastion.config.redaction import RedactionConfig
from bastion.config.tracing import LoggingConfig
from bastion.guard.redact import RedactionLimitError, Redactor
from bastion.telemetry.tracing import current_ids

#: The longest message kept (characters); longer ones are cut, with a marker, before masking
#: (so masking stays bounded) and before writing.
MAX_MESSAGE = 16384
MASK = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_REQUEST_ID: ContextVar[str | None] = ContextVar("bastion_request_id", default=None)
_MASKER: SecretMasker | None = None

# The value after a keyword: quoted, or up to a separator. The keyword stays, so a reader
# still sees that a credential was there.
_VALUE = r"""(?P<sep>["']?\s*[:=]\s*["']?)(?P<value>[^\s"',;&}]+(?:[ \t]+[^\s"',;&}]+)?)"""
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # `Authorization: Bearer x`, `Authorization: Basic x`: the scheme and the credential.
    (re.compile(r"(?i)\b(?P<key>(?:proxy-)?authorization)" + _VALUE), r"\g<key>\g<sep>" + MASK),
    (re.compile(r"(?i)\b(?P<key>bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\g<key> " + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)(?P<key>\b[\w.-]*(?:api[_-]?key|apikey|token|secret|passw(?:or)?d|pwd"
                r"|credential|session[_-]?key|cookie|private[_-]?key)[\w.-]*)"
                r"""(?P<sep>["']?\s*[:=]\s*["']?)(?P<value>[^\s"',;&}]+)"""),
     r"\g<key>\g<sep>" + MASK),
)


def _secret_redactor() -> Redactor:
    # The redaction engine's secret detectors only: personal data is not this filter's job.
    return Redactor(RedactionConfig(secrets=True, pii=[], replacement="[REDACTED:{kind}]",
                                    max_chars=MAX_MESSAGE + 64))


class SecretMasker(logging.Filter):
    """Masks secrets in a record's message, arguments, exception and stack (module doc);
    usable as a filter too."""

    def __init__(self) -> None:
        super().__init__()
        self._redactor = _secret_redactor()

    def mask(self, text: str) -> str:
        """`text` with every secret this filter knows replaced."""
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE] + " [truncated]"
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        try:
            text, _ = self._redactor.redact_text(text)
        except RedactionLimitError:  # cannot happen after the cut above; fail closed anyway
            return MASK
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        rendered = True
        try:
            message = record.getMessage()
        except Exception:  # a format string and arguments that do not fit
            message, rendered = f"{record.msg!r} (unformattable arguments)", False
        masked = self.mask(message)
        if masked != message or not rendered:
            record.msg = masked
            # Formatters that read the arguments themselves (uvicorn's access lines) fall
            # back to the message; a record without a secret keeps its arguments.
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
            # The traceback objects keep the raw values: formatters must use exc_text.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


class RequestContext(logging.Filter):
    """Adds `trace_id`, `span_id` and `request_id` to every record (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id, record.span_id = current_ids()
        record.request_id = _REQUEST_ID.get()
        return True


def _rfc3339(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class _TextFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            text += f" request_id={request_id}"
        if trace_id is not None:
            text += f" trace_id={trace_id}"
        return text


@contextmanager
def request_context(request_id: object) -> Iterator[None]:
    """Log records inside carry `request_id` (the JSON-RPC id, as text, at most 64 chars)."""
    token = _REQUEST_ID.set(str(request_id)[:64])
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


def set_request_id(request_id: object | None) -> None:
    """Set the request id of the running task's log records (None: clear it); for code
    that cannot wrap a `with` (a new task inherits it)."""
    _REQUEST_ID.set(None if request_id is None else str(request_id)[:64])


def install_masking() -> SecretMasker:
    """Mask every log record of the process from now on (idempotent; see the module doc)."""
    global _MASKER
    if _MASKER is None:
        masker = SecretMasker()
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            masker.filter(record)
            return record

        factory._bastion_previous = previous  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
        _MASKER = masker
    return _MASKER


def uninstall_masking() -> None:
    """Stop masking (tests); only when Bastion's factory is still the installed one."""
    global _MASKER
    factory = logging.getLogRecordFactory()
    previous = getattr(factory, "_bastion_previous", None)
    if previous is not None:
        logging.setLogRecordFactory(previous)
        _MASKER = None


def configure_logging(config: LoggingConfig, *, stream: IO[str] | None = None,
                      logger: logging.Logger | None = None) -> logging.Handler:
    """Mask secrets in every record (`install_masking`), install Bastion's handler on
    `logger` (default: the root logger), replacing the one an earlier call installed, and
    set the level. Returns the handler (remove it with `logger.removeHandler`)."""
    install_masking()
    target = logger if logger is not None else logging.getLogger()
    for handler in list(target.handlers):
        if getattr(handler, "_bastion", False):
            target.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._bastion = True  # type: ignore[attr-defined]
    handler.addFilter(RequestContext())
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(TEXT_FORMAT))
    target.addHandler(handler)
    target.setLevel(config.level.upper())
    return handler
