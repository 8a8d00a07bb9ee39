"""What the scanner reports: severities, findings, the code table and the verdict.

A `Finding` names one suspicious thing in one place: a stable code (the family from
security-requirements §4, a sub-code after a dot), a severity, the JSON pointer of the
string or key inside the scanned object, a message a person can act on, and the evidence
(the decoded hidden text, or a short excerpt made visible). The OWASP ids come from the
code's family and from the surface (a result is context, MCP06; metadata is MCP03).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

Verdict = Literal["block", "warn", "pass"]

#: The longest evidence a finding carries (a decoded message, an excerpt).
EVIDENCE_LIMIT = 400


class Severity(IntEnum):
    """How bad a finding is; ordered, so `max()` and comparisons work."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """A severity from its name ("high") or number; a ValueError names the choices."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            choices = ", ".join(str(s) for s in cls)
            raise ValueError(f"unknown severity {value!r}; use one of: {choices}") from None


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One finding family: what it means and how it maps onto the OWASP lists."""

    title: str
    owasp_mcp: tuple[str, ...]
    owasp_llm: tuple[str, ...]
    owasp_asi: tuple[str, ...]


#: The finding families (security-requirements §4). Sub-codes ("E-HU01.bidi") share the
#: family's entry. The OWASP ids are our own mapping (ids only; the texts are not ours).
CODES: dict[str, CodeInfo] = {
    "E-TP01": CodeInfo("injection in metadata", ("MCP03",), ("LLM01",), ("ASI01",)),
    "E-TP02": CodeInfo("cross-server shadowing or tool squatting", ("MCP03",), ("LLM01",),
                       ("ASI02", "ASI04")),
    "E-HU01": CodeInfo("hidden Unicode or terminal escapes", ("MCP03",), ("LLM01",), ("ASI01",)),
    "E-HU02": CodeInfo("decoded Tag message", ("MCP03",), ("LLM01",), ("ASI01",)),
    "E-FSP": CodeInfo("schema-field poisoning", ("MCP03",), ("LLM01",), ("ASI02",)),
    "E-SC01": CodeInfo("permissions beyond the declared purpose", ("MCP02", "MCP10"),
                       ("LLM06",), ("ASI03",)),
    "E-RS": CodeInfo("result injection", ("MCP06",), ("LLM01",), ("ASI01", "ASI06")),
    "E-LIM": CodeInfo("object too large or too deep to scan", ("MCP03",), ("LLM10",),
                      ("ASI08",)),
}

#: Surfaces whose text is context the model reads as data (results, resource contents,
#: prompt messages): hidden or injected text there is MCP06 rather than MCP03.
CONTEXT_SURFACES = frozenset({"result", "resource.contents", "prompt.messages"})


def family(code: str) -> str:
    """The family of a code: "E-HU01.bidi" -> "E-HU01"."""
    return code.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspicious thing at one place of a scanned object."""

    code: str
    severity: Severity
    #: JSON pointer (RFC 6901) of the string or key inside the scanned object.
    path: str
    message: str
    #: The decoded hidden text, or a short excerpt with invisible characters made visible.
    evidence: str | None
    #: What was scanned: "tool.description", "tool.inputSchema", "result", "instructions" ...
    surface: str
    owasp_mcp: tuple[str, ...] = field(default=())
    owasp_llm: tuple[str, ...] = field(default=())
    owasp_asi: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for the audit record, the admin API and `--json`)."""
        return {
            "code": self.code, "severity": str(self.severity), "path": self.path,
            "message": self.message, "evidence": self.evidence, "surface": self.surface,
            "owasp_mcp": list(self.owasp_mcp), "owasp_llm": list(self.owasp_llm),
            "owasp_asi": list(self.owasp_asi),
        }


def make_finding(code: str, severity: Severity, path: str, message: str,
                 evidence: str | None, surface: str) -> Finding:
    """A finding with its OWASP ids filled in from the code table and the surface."""
    info = CODES[family(code)]
    mcp = info.owasp_mcp
    if surface in CONTEXT_SURFACES and "MCP06" not in mcp:
        mcp = ("MCP06", *mcp[1:]) if mcp == ("MCP03",) else (*mcp, "MCP06")
    if evidence is not None and len(evidence) > EVIDENCE_LIMIT:
        evidence = evidence[:EVIDENCE_LIMIT] + "…"
    return Finding(code, severity, path, message, evidence, surface,
                   mcp, info.owasp_llm, info.owasp_asi)


def verdict(findings: Iterable[Finding], *, block_at: Severity = Severity.HIGH,
            warn_at: Severity = Severity.MEDIUM) -> Verdict:
    """"block" when any finding reaches `block_at`, "warn" at `warn_at`, else "pass"."""
    worst = max((f.severity for f in findings), default=None)
    if worst is None:
        return "pass"
    if worst >= block_at:
        return "block"
    return "warn" if worst >= warn_at else "pass"


@dataclass(slots=True)
class ScanReport:
    """The findings of one scanned object or listing, with the verdict they lead to."""

    findings: list[Finding]
    block_at: Severity = Severity.HIGH

    @property
    def verdict(self) -> Verdict:
        return verdict(self.findings, block_at=self.block_at)

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def codes(self) -> set[str]:
        """The codes found (sub-codes included)."""
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict,
                "findings": [f.to_dict() for f in self.findings]}
