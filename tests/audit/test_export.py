"""SPEC-AUDIT: SIEM export lines: JSON Lines carry chain position, hash and the record; CEF:0
lines parse back to the same values, whatever `|`, `=`, `\\` or line breaks the values hold."""

from __future__ import annotations

import hashlib
import re

import orjson
import pytest

from bastion.audit import StoredRecord
from bastion.audit.export import MAX_CEF_VALUE, cef_header, cef_value, severity, to_cef, to_jsonl

HOSTILE = "a|b=c\\d\ne\rf cs1=forged |x"


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict reader of one CEF line: 7 header fields and the extension's key=value pairs."""
    assert "\n" not in line and "\r" not in line
    header: list[str] = []
    field, index = "", 0
    while len(header) < 7:
        char = line[index]
        if char == "\\":
            assert line[index + 1] in "\\|", f"bad header escape at {index}"
            field += line[index + 1]
            index += 2
        elif char == "|":
            header.append(field)
            field, index = "", index + 1
        else:
            field += char
            index += 1
    assert header[0] == "CEF:0"
    extension = line[index:]
    # Keys start where an unescaped `=` follows a bare word preceded by a space (or start).
    starts = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9]+)=", extension)
              if not _escaped(extension, m.end() - 1)]
    pairs: dict[str, str] = {}
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(extension)
        raw = extension[match.end():end]
        assert not re.search(r"(?<!\\)(?:\\\\)*=", raw), f"unescaped = in {raw!r}"
        pairs[match.group(1)] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(
            m.group(1), m.group(1)), raw)
    return header, pairs


def _escaped(text: str, position: int) -> bool:
    backslashes = 0
    while position - 1 - backslashes >= 0 and text[position - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def stored(record: dict[str, object], seq: int = 7) -> StoredRecord:
    return StoredRecord("gw-1", seq, hashlib.sha256(b"x").digest(), record)


CALL = {"v": 1, "event": "call", "time": 1_800_000_000.25, "request_id": "r-1",
        "trace_id": "t-1", "method": "tools/call", "upstream": "github",
        "target": "create_issue", "status": "denied", "latency_ms": 12.5,
        "principal": {"sub": "alice", "client_id": "claude"},
        "decision": {"effect": "deny", "rule": "no-prod", "reason": "not allowed"}}


def test_spec_audit_export_jsonl() -> None:
    line = to_jsonl(stored(CALL))
    assert "\n" not in line
    data = orjson.loads(line)
    assert data == {"instance": "gw-1", "seq": 7, "hash": hashlib.sha256(b"x").hexdigest(),
                    "record": CALL}


def test_spec_audit_export_cef_standard_keys() -> None:
    header, ext = parse_cef(to_cef(stored(CALL), version="1.2.3"))
    assert header == ["CEF:0", "Bastion", "MCP Gateway", "1.2.3", "tools/call",
                      "tools/call create_issue denied", "6"]
    assert ext["rt"] == "1800000000250" and ext["suser"] == "alice"
    assert ext["act"] == "deny" and ext["outcome"] == "denied"
    assert ext["externalId"] == "r-1" and ext["reason"] == "not allowed"
    assert (ext["cs1Label"], ext["cs1"]) == ("upstream", "github")
    assert (ext["cs2Label"], ext["cs2"]) == ("tool", "create_issue")
    assert (ext["cs3Label"], ext["cs3"]) == ("rule", "no-prod")
    assert (ext["cs4Label"], ext["cs4"]) == ("agent", "claude")
    assert (ext["cs5Label"], ext["cs5"]) == ("instance", "gw-1")
    assert ext["cs6"] == hashlib.sha256(b"x").hexdigest() and ext["cn1"] == "7"
    assert ext["flexString1"] == "t-1" and ext["cfp1"] == "12.5"


def test_spec_audit_export_cef_escapes_hostile_values() -> None:
    record = {**CALL, "method": HOSTILE, "target": HOSTILE, "upstream": HOSTILE,
              "principal": {"sub": HOSTILE, "client_id": "x\\"},
              "decision": {"effect": "=", "rule": "\\=|", "reason": "line1\r\nline2"}}
    line = to_cef(stored(record), version="9|9\\")
    header, ext = parse_cef(line)
    assert header[3] == "9|9\\"
    assert header[4] == HOSTILE.replace("\n", " ").replace("\r", " ")
    assert header[6] == "6"
    assert ext["suser"] == ext["cs1"] == ext["cs2"] == ext["requestMethod"] == HOSTILE
    assert ext["cs4"] == "x\\" and ext["act"] == "=" and ext["cs3"] == "\\=|"
    assert ext["reason"] == "line1\nline2"
    assert "forged" not in ext and list(ext).count("cs1") == 1


def test_spec_audit_export_cef_other_shapes_and_limits() -> None:
    dropped = to_cef(stored({"event": "audit.dropped", "count": 3}))
    header, ext = parse_cef(dropped)
    assert header[4] == "audit.dropped" and header[6] == "9"
    assert "suser" not in ext and "cs1Label" not in ext and ext["cat"] == "audit.dropped"
    assert parse_cef(to_cef(stored({})))[0][4] == "audit"
    assert severity(stored({"severity": "critical"})) == 10
    assert severity(stored({"severity": 4})) == 4
    assert severity(stored({"severity": 99, "status": "ok"})) == 1
    assert severity(stored({"event": "alert"})) == 8
    assert len(cef_value("=" * 5000)) == 2 * MAX_CEF_VALUE
    assert cef_header("a|b\\c\nd") == "a\\|b\\\\c d"


@pytest.mark.parametrize("value", ["", "plain", HOSTILE, "\\", "\\\\n", "=\\=", "é ü 中"])
def test_spec_audit_export_cef_value_round_trip(value: str) -> None:
    _, ext = parse_cef(f"CEF:0|a|b|c|d|e|1|k={cef_value(value)} z=1")
    assert ext["k"] == value and ext["z"] == "1"


def test_spec_audit_export_cef_alerts_and_refusals() -> None:
    alert = stored({"v": 1, "event": "alert", "time": 1.5, "severity": "high",
                    "principal": {"sub": "alice"},
                    "alert": {"rule": "first_use", "tool": "edr__isolate_host",
                              "upstream": "edr", "summary": "alice called edr__isolate_host "
                              "for the first time"}})
    header, fields = parse_cef(to_cef(alert))
    assert header[4:7] == ["anomaly/first_use",
                           "alice called edr__isolate_host for the first time", "8"]
    assert (fields["cs1"], fields["cs2"], fields["suser"]) == ("edr", "edr__isolate_host",
                                                               "alice")
    refusal = stored({"v": 1, "event": "refusal", "time": 2.0, "status": "denied",
                      "http_status": 401, "error": {"code": "invalid_token",
                                                    "message": "the token has expired"},
                      "remote": "10.1.2.3:51234", "user_agent": "agent/1.0"})
    header, fields = parse_cef(to_cef(refusal))
    assert header[4:6] == ["auth/refusal", "credentials refused: invalid_token"]
    assert (fields["src"], fields["spt"], fields["requestClientApplication"]) == (
        "10.1.2.3", "51234", "agent/1.0")
    assert fields["reason"] == "the token has expired"
