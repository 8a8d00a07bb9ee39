"""Audit records for a SIEM: JSON Lines and ArcSight CEF (Common Event Format) lines.

JSONL: one object per record, `{"instance", "seq", "hash" (hex), "record"}`, exactly the
logged record, so the chain position and hash can be checked against the database.
CEF: `CEF:0|Bastion|MCP Gateway|<version>|<signature id>|<name>|<severity>|<extension>`.
Header fields escape `\\` and `|`; extension values escape `\\`, `=` and line breaks (as
`\\n`, `\\r`); keys are fixed here. No value can end a field or start a forged key.
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion import __version__
from bastion.audit.query import StoredRecord

#: A header field or extension value longer than this is cut (SIEMs cap line length).
MAX_CEF_VALUE = 1023
_SEVERITY_WORDS = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
_STATUS_SEVERITY = {"ok": 1, "input_required": 2, "task": 2, "tool_error": 3, "error": 5,
                    "denied": 6}
_EVENT_SEVERITY = {"refusal": 6, "alert": 8, "audit.dropped": 9}


def to_jsonl(stored: StoredRecord) -> str:
    """One JSON line (no trailing newline)."""
    return orjson.dumps({"instance": stored.instance, "seq": stored.seq,
                         "hash": stored.hash.hex(), "record": stored.record}).decode()


def cef_header(value: str) -> str:
    """A CEF header field: `\\` and `|` escaped, line breaks become spaces."""
    value = value[:MAX_CEF_VALUE]
    return (value.replace("\\", "\\\\").replace("|", "\\|")
            .replace("\r", " ").replace("\n", " "))


def cef_value(value: str) -> str:
    """A CEF extension value: `\\`, `=` escaped, line breaks as `\\n` / `\\r`."""
    value = value[:MAX_CEF_VALUE]
    return (value.replace("\\", "\\\\").replace("=", "\\=")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r"))


def severity(stored: StoredRecord) -> int:
    """0-10: the record's own `severity` if any, else from its event and status."""
    given = stored.get("severity")
    if isinstance(given, int) and not isinstance(given, bool) and 0 <= given <= 10:
        return given
    if isinstance(given, str) and given.lower() in _SEVERITY_WORDS:
        return _SEVERITY_WORDS[given.lower()]
    event = stored.text("event") or ""
    if event in _EVENT_SEVERITY:
        return _EVENT_SEVERITY[event]
    return _STATUS_SEVERITY.get(stored.text("status") or "", 3)


def _extension(stored: StoredRecord) -> list[tuple[str, Any]]:
    when = stored.time
    remote = stored.text("remote")
    host, _, port = remote.rpartition(":") if remote else ("", "", "")
    return [
        ("rt", None if when is None else int(when * 1000)),
        ("cat", stored.text("event")),
        ("suser", stored.text("principal", "sub")),
        ("src", host.strip("[]") or None), ("spt", port if port.isdigit() else None),
        ("requestClientApplication", stored.text("user_agent")),
        ("requestMethod", stored.text("method")),
        ("act", stored.text("decision", "effect")),
        ("outcome", stored.text("status")),
        ("reason", stored.text("decision", "reason") or stored.text("error", "message")
         or stored.text("alert", "summary")),
        ("externalId", stored.text("request_id")),
        ("cs1Label", "upstream"),
        ("cs1", stored.text("upstream") or stored.text("alert", "upstream")),
        ("cs2Label", "tool"), ("cs2", stored.text("target") or stored.text("alert", "tool")),
        ("cs3Label", "rule"), ("cs3", stored.text("decision", "rule")),
        ("cs4Label", "agent"), ("cs4", stored.text("principal", "client_id")),
        ("cs5Label", "instance"), ("cs5", stored.instance),
        ("cs6Label", "hash"), ("cs6", stored.hash.hex()),
        ("cn1Label", "seq"), ("cn1", stored.seq),
        ("flexString1Label", "traceId"), ("flexString1", stored.text("trace_id")),
        ("cfp1Label", "latencyMs"), ("cfp1", stored.text("latency_ms")),
    ]


def to_cef(stored: StoredRecord, version: str = __version__) -> str:
    """One CEF:0 line (no trailing newline)."""
    event = stored.text("event")
    if event == "alert":  # an anomaly rule: its rule names the signature, its summary says it
        signature = f"anomaly/{stored.text('alert', 'rule') or 'alert'}"
        name = stored.text("alert", "summary") or signature
    elif event == "refusal":  # credentials refused at the HTTP endpoint
        signature = "auth/refusal"
        name = f"credentials refused: {stored.text('error', 'code') or 'refused'}"
    else:
        signature = stored.text("method") or event or "audit"
        target = stored.text("target")
        status = stored.text("status") or event or "record"
        name = f"{signature} {target} {status}" if target else f"{signature} {status}"
    header = "|".join(["CEF:0", "Bastion", "MCP Gateway", cef_header(version),
                       cef_header(signature), cef_header(name), str(severity(stored))])
    # A label whose value is absent is left out with it.
    pairs = _extension(stored)
    present = {key for key, value in pairs if value is not None and not key.endswith("Label")}
    extension = " ".join(
        f"{key}={cef_value(str(value))}" for key, value in pairs
        if value is not None and (not key.endswith("Label") or key[:-5] in present))
    return f"{header}|{extension}"
