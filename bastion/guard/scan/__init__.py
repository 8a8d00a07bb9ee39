"""Tool-poisoning, hidden-text and injection scanner (offline, deterministic, layered).

    from bastion.guard.scan import Scanner, verdict, strip_hidden
    scanner = Scanner(known_tools={"send_email": "mail"})
    findings = scanner.scan_tool(tool, server="weather")
    if verdict(findings) == "block": ...

It scans whole objects: every string and key of a tool (name, title, description, input and
output schemas at any depth, property names, defaults, enums, examples, unknown keys,
annotations, `_meta`), of prompts and resources, the server's instructions and
`serverInfo` (`scan_server_info`), and results (`scan_result`, on every call: its fixed
cost is a few microseconds). `known_tools` is indexed once per Scanner, so a catalogue of
thousands of tools is scanned in linear time; gateway-prefixed names (`edr__isolate_host`)
and their bare names are recognised in references.

Finding codes (stable; the part after the dot is the sub-code):

- E-TP01.*  injection in metadata (MCP03): override, template, task-hijack, concealment,
  exfiltration, harvest, tamper, command, dependency, param-tamper, network, redirect,
  pseudo-tag, destructive, line-jump, preference, encoded, comment, markdown-image, link,
  icon, length, classifier.
- E-TP02.*  shadowing and squatting (MCP03): reference (names another server's tool and
  changes its use), collision, confusable, overlap, name.
- E-HU01.*  hidden Unicode (MCP03; MCP06 in results): tag, zero-width, bidi, bidi-mark,
  selector, private-use, control, ansi, invisible, surrogate, unassigned, padding,
  confusable, multi.
- E-HU02    a decoded Tag-character message; the evidence is the hidden text.
- E-FSP.*   schema-field poisoning (MCP03): name, default, enum, extra, ref, header, and any
  phrasing rule that fires inside a schema field (property descriptions, enums, defaults,
  unknown keys, annotations, `_meta`).
- E-SC01.*  permissions beyond the declared purpose (MCP02, MCP10): conversation,
  credential, side-channel, annotation.
- E-RS.*    result injection (MCP06): the phrasing rules read as data, markdown-image, link,
  encoded, classifier.
- E-LIM.*   too deep, too large, not an object, or a failed classifier: the rest is not
  scanned, so the object is blocked (fail closed).

Severities: info < low < medium < high < critical. `verdict()` blocks at high by default
and warns at medium. Each finding carries `owasp_mcp`, `owasp_llm` and `owasp_asi` ids.
"""

from __future__ import annotations

from typing import Any

from bastion.guard.scan.findings import (
    CODES,
    Finding,
    ScanReport,
    Severity,
    Verdict,
    make_finding,
    verdict,
)
from bastion.guard.scan.inventory import MAX_DEPTH
from bastion.guard.scan.scanner import Classifier, Scanner
from bastion.guard.scan.unicode import strip_text


def strip_hidden(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON value with hidden characters removed from every string and key
    (Tag characters outside emoji flags, zero-width outside emoji ZWJ sequences, bidi
    controls, variation-selector smuggling, control characters, ANSI escapes): the
    gateway's "strip" action. Containers nested deeper than the scan limit are dropped."""
    if isinstance(value, str):
        return strip_text(value)
    if _depth >= MAX_DEPTH:
        return None if isinstance(value, dict | list) else value
    if isinstance(value, dict):
        return {strip_text(str(k)): strip_hidden(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_hidden(v, _depth + 1) for v in value]
    return value


__all__ = ["CODES", "Classifier", "Finding", "ScanReport", "Scanner", "Severity", "Verdict",
           "make_finding", "strip_hidden", "verdict"]
