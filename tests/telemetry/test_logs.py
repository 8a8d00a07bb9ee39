"""`bastion.telemetry.logs`: JSON lines with trace and request ids, text lines, and canary
secrets (SPEC-AUTH-12) that no handler's output may contain, whatever logger, argument or
exception carried them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config.tracing import LoggingConfig, TracingConfig
from bastion.telemetry.logs import (
    MAX_MESSAGE,
    SecretMasker,
    configure_logging,
    request_context,
    set_request_id,
    uninstall_masking,
)
from bastion.telemetry.tracing import GatewayTracer
from tests.telemetry.test_tracing import TRACE, TRACEPARENT, make_call

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYW5hcnktdXNlciIsImF1ZCI6ImJhc3Rpb24ifQ"
       ".c2lnbmF0dXJlLWNhbmFyeS1qd3Q")
#: Every canary a log line might carry; none may reach any output.
CANARIES = {
    "bearer": "cAnArYbEaReR0123456789abcdefXYZ",
    "jwt": JWT,
    "api_key": "canary-api-key-5f1e2d",
    "token": "canary-token-9a8b7c6d",
    "password": "canary-P@ssw0rd!",
    "github": "ghp_" + "C4n4ry" * 6,
    "aws": "AKIAIOSFODNN7CANARY1",
    "basic": "Y2FuYXJ5OmJhc2ljLXNlY3JldA==",
}
MESSAGES = [
    ("upstream said 401 to Authorization: Bearer %s", (CANARIES["bearer"],)),
    ("got token %s from the client", (CANARIES["jwt"],)),
    ("calling https://api.example/v1?api_key=%s&q=1", (CANARIES["api_key"],)),
    ("refresh failed: {\"token\": \"%s\"}", (CANARIES["token"],)),
    ("login password=%s rejected", (CANARIES["password"],)),
    ("config had %s in env", (CANARIES["github"],)),
    ("aws key %s found", (CANARIES["aws"],)),
    ("headers: %r", ({"authorization": f"Basic {CANARIES['basic']}"},)),
]


@pytest.fixture
def logs() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    yield stream, root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    uninstall_masking()


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_and_request_id(logs: Any) -> None:
    stream, _ = logs
    configure_logging(LoggingConfig(format="json", level="info"), stream=stream)
    log = logging.getLogger("bastion.gateway.test")
    log.debug("not written at info")
    with request_context(42):
        log.info("relayed %s to %s", "tools/call", "edr")
    log.warning("outside a request")
    first, second = _json_lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["level"] == "info" and first["logger"] == "bastion.gateway.test"
    assert first["message"] == "relayed tools/call to edr"
    assert first["request_id"] == "42" and first["trace_id"] is None
    assert second["request_id"] is None and second["level"] == "warning"


def test_json_lines_carry_the_trace_of_the_current_span(logs: Any) -> None:
    stream, _ = logs
    configure_logging(LoggingConfig(format="json"), stream=stream)
    tracer = GatewayTracer(TracingConfig(enabled=True))
    call = make_call({"name": "x", "_meta": {"traceparent": TRACEPARENT}})
    with tracer.call_span(call) as span:
        logging.getLogger("bastion.relay").info("in the span")
    (line,) = _json_lines(stream)
    assert line["trace_id"] == TRACE and line["span_id"] == f"{span.span_id:016x}"


def test_exceptions_are_written_and_masked(logs: Any) -> None:
    stream, _ = logs
    configure_logging(LoggingConfig(format="json"), stream=stream)
    try:
        raise ValueError(f"upstream rejected Bearer {CANARIES['bearer']}")
    except ValueError:
        logging.getLogger("bastion.x").exception("call failed")
    (line,) = _json_lines(stream)
    assert "ValueError" in line["exception"] and "Traceback" in line["exception"]
    assert CANARIES["bearer"] not in stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_spec_auth_12_canary_secrets_reach_no_handler(logs: Any, fmt: str) -> None:
    stream, _ = logs
    # A handler someone attached to a child logger before Bastion's: it sees the record
    # first, and must still see it masked.
    early = io.StringIO()
    child = logging.getLogger("bastion.upstream.child")
    early_handler = logging.StreamHandler(early)
    child.addHandler(early_handler)
    try:
        configure_logging(LoggingConfig(format=fmt, level="debug"), stream=stream)
        for message, args in MESSAGES:
            child.info(message, *args)
            logging.getLogger("a.library").warning(message, *args)
        child.info("stack", stack_info=True)
    finally:
        child.removeHandler(early_handler)
    assert stream.getvalue().count("\n") >= 2 * len(MESSAGES)
    assert early.getvalue().count("\n") >= len(MESSAGES)  # the child's records only
    for output in (stream.getvalue(), early.getvalue()):
        for name, canary in CANARIES.items():
            assert canary not in output, f"{name} canary leaked: {output}"
    # What is not a secret survives.
    assert "upstream said 401 to Authorization:" in stream.getvalue()
    assert "https://api.example/v1?api_key=" in stream.getvalue()


def test_masking_keeps_ordinary_text() -> None:
    masker = SecretMasker()
    text = ("tool edr__isolate_host took 12 ms; id 3f2b8c1e-5a4d-4c2b-9e1f-0a1b2c3d4e5f, "
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8, 3 tokens left")
    assert masker.mask(text) == text
    assert masker.mask("x" * (MAX_MESSAGE + 100)).endswith(" [truncated]")


def test_text_format_and_bad_records(logs: Any) -> None:
    stream, root = logs
    handler = configure_logging(LoggingConfig(), stream=stream)
    again = configure_logging(LoggingConfig(level="warning"), stream=stream)
    assert handler not in root.handlers and again in root.handlers  # replaced, not stacked
    assert root.level == logging.WARNING
    set_request_id("r-1")
    try:
        logging.getLogger("bastion.t").warning("two args %s %s", "only one")
    finally:
        set_request_id(None)
    line = stream.getvalue().strip()
    assert "WARNING bastion.t:" in line and "unformattable arguments" in line
    assert line.endswith("request_id=r-1")
    with pytest.raises(ValidationError):
        LoggingConfig.model_validate({"format": "xml"})
    with pytest.raises(ValidationError):
        LoggingConfig.model_validate({"level": "verbose"})


def test_clean_records_keep_their_arguments(logs: Any) -> None:
    stream, root = logs
    configure_logging(LoggingConfig(), stream=stream)
    seen: list[Any] = []

    class ArgsReader(logging.Handler):  # like uvicorn's access formatter: reads record.args
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.args)

    reader = ArgsReader()
    root.addHandler(reader)
    try:
        logging.getLogger("a.access").warning('%s "%s %s"', "127.0.0.1", "GET", "/mcp")
        logging.getLogger("a.access").warning('%s "%s %s"', "127.0.0.1", "GET",
                                              f"/mcp?token={CANARIES['token']}")
    finally:
        root.removeHandler(reader)
    assert seen == [("127.0.0.1", "GET", "/mcp"), None]
    assert CANARIES["token"] not in stream.getvalue()
