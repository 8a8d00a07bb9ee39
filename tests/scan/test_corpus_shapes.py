"""Every synthetic attack shape is caught by the layer meant for it; the traps, real tools,
our own benign descriptions and untouched AgentDojo data are not blocked.

Items are loaded by id from ../shared/corpus at run time (nothing of it is copied here);
the module is skipped when the corpus is absent.
"""

from __future__ import annotations

import pytest

from bastion.guard.scan import Scanner, Severity, verdict
from tests.scan import corpus
from tests.scan.benign_tools import BENIGN_TOOLS

pytestmark = pytest.mark.skipif(not corpus.available(), reason="../shared/corpus is absent")

#: The layer (code prefix) meant to catch each shape.
LAYER = {
    "syn-001": "E-HU02", "syn-002": "E-HU02", "syn-003": "E-HU02",
    "syn-004": "E-HU01.zero-width", "syn-005": "E-HU01.bidi", "syn-006": "E-HU01.selector",
    "syn-007": "E-TP02.confusable", "syn-008": "E-HU01.ansi", "syn-009": "E-TP01",
    "syn-010": "E-TP01", "syn-011": "E-TP01", "syn-012": "E-TP01", "syn-013": "E-TP01.line-jump",
    "syn-014": "E-TP01.override", "syn-015": "E-TP01.template", "syn-016": "E-TP01.override",
    "syn-017": "E-TP01.encoded", "syn-018": "E-TP01", "syn-019": "E-FSP.name",
    "syn-020": "E-FSP.default", "syn-021": "E-FSP", "syn-022": "E-FSP", "syn-023": "E-TP01",
    "syn-024": "E-FSP", "syn-025": "E-FSP.ref", "syn-026": "E-FSP.header", "syn-027": "E-RS",
    "syn-028": "E-RS.task-hijack", "syn-029": "E-RS.markdown-image", "syn-030": "E-TP01",
    "syn-031": "E-RS", "syn-032": "E-TP01",
}


def _case(rid: str) -> corpus.Case:
    return next(c for c in corpus.synthetic_cases() if c.id == rid)


@pytest.mark.parametrize("rid", sorted(LAYER))
def test_synthetic_shape_caught_by_its_layer(rid: str) -> None:
    findings = _case(rid).scan(Scanner())
    assert verdict(findings) == "block", findings
    layer = [f for f in findings if f.code.startswith(LAYER[rid])]
    assert layer and max(f.severity for f in layer) >= Severity.HIGH, (rid, findings)


def test_syn_001_evidence_is_the_decoded_message() -> None:
    finding = next(f for f in _case("syn-001").scan(Scanner()) if f.code == "E-HU02")
    assert finding.evidence and "id_rsa" in finding.evidence
    assert finding.path == "/description" and finding.surface == "tool.description"


def test_syn_012_names_another_servers_tool() -> None:
    scanner = Scanner({"send_email": "mail", "get_fact_of_the_day": "facts"})
    findings = scanner.scan_tool(_case("syn-012").obj, server="facts")
    assert any(f.code == "E-TP02.reference" and f.severity >= Severity.HIGH for f in findings)


def test_syn_007_collides_with_a_known_tool() -> None:
    findings = Scanner({"send_email": "mail"}).scan_tool(_case("syn-007").obj, server="other")
    assert any(f.code == "E-TP02.confusable" and f.severity == Severity.CRITICAL
               for f in findings)


def test_syn_030_rug_pull_before_is_clean() -> None:
    before = corpus.synthetic()["syn-030"]["object"]["before"]
    assert verdict(Scanner().scan_tool(before)) == "pass"


def test_syn_023_schema_field_layer_sees_annotation_title() -> None:
    findings = _case("syn-023").scan(Scanner())
    assert any(f.path == "/annotations/title" and f.code.startswith("E-FSP") for f in findings)
    assert any(f.path == "/title" and f.severity >= Severity.HIGH for f in findings)


@pytest.mark.parametrize("rid", [f"ben-{i:03d}" for i in range(1, 13)])
def test_benign_trap_not_blocked(rid: str) -> None:
    findings = _case(rid).scan(Scanner())
    assert verdict(findings) != "block", findings
    assert verdict(findings) == "pass", findings  # the aim: not even a warning


def test_real_tools_false_positive_rate() -> None:
    scanner = Scanner()
    cases = list(corpus.real_tool_cases())
    blocked = [c.id for c in cases if verdict(c.scan(scanner)) == "block"]
    assert len([c for c in cases if c.kind == "tool"]) == 68
    assert len(blocked) <= 0.01 * len(cases), blocked


def test_own_benign_descriptions_not_blocked() -> None:
    assert len(BENIGN_TOOLS) >= 20
    scanner = Scanner()
    blocked = {t["name"]: scanner.scan_tool(t) for t in BENIGN_TOOLS}
    assert {n: f for n, f in blocked.items() if verdict(f) == "block"} == {}


def test_agentdojo_untouched_results_pass_and_filled_ones_block() -> None:
    scanner = Scanner()
    benign = list(corpus.agentdojo_cases(None))
    assert benign and all(verdict(c.scan(scanner)) == "pass" for c in benign)
    attacked = list(corpus.agentdojo_cases("important_instructions"))
    caught = sum(verdict(c.scan(scanner)) == "block" for c in attacked)
    assert caught >= 0.9 * len(attacked)


def test_safetybench_poisoned_descriptions_recall() -> None:
    scanner = Scanner()
    cases = [c for c in corpus.safetybench_cases() if c.surface == "description"]
    caught = sum(verdict(c.scan(scanner)) == "block" for c in cases)
    assert len(cases) == 64 and caught >= 0.95 * len(cases)
