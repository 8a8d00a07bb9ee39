"""The scanner: every layer over every string of a tool, prompt, resource, instructions or
result, turned into findings with codes, severities, JSON pointers and evidence.

Layers, in order, on each string (keys included): Unicode forensics on the raw text;
markup (comments, images and links that carry data out); encoded payloads, decoded and
scanned; phrasing rules on the normalised text, read as metadata, as a schema field or as
data depending on where the string sits. Whole-object structure rules run once per object.
Everything is offline and deterministic; the same input gives the same findings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from bastion.guard.scan.confusables import mixed_words
from bastion.guard.scan.findings import Finding, Severity, make_finding
from bastion.guard.scan.inventory import Item, Limits, walk, walk_result
from bastion.guard.scan.names import NameIndex
from bastion.guard.scan.normalize import (
    decoded_payloads,
    may_be_encoded,
    words_of_identifier,
)
from bastion.guard.scan.phrasing import PhraseHit, TextContext, analyze
from bastion.guard.scan.structure import (
    Hit,
    annotation_rules,
    header_rules,
    icon_rules,
    markup_rules,
    name_rules,
    parameter_rules,
    schema_item_rules,
    website_rules,
)
from bastion.guard.scan.unicode import scan_text, visible

H, M = Severity.HIGH, Severity.MEDIUM

#: A description longer than this is itself a signal (payloads hide below the fold).
LONG_DESCRIPTION = 2000
_PROSE_ROLES = frozenset({"description", "title", "text", "extra"})
_SCHEMA_PROSE = frozenset({"default", "const", "examples"})
_NONE: Mapping[str, str] = {}


class Classifier(Protocol):
    """An optional local model (a PromptGuard-class classifier): the probability that a
    text is an injection. Off by default; the rule layers never depend on it."""

    def __call__(self, text: str) -> float: ...


class Scanner:
    """Scans MCP objects for poisoning, hidden text and injected instructions.

    `known_tools` maps every public tool name Bastion knows to its upstream, so the scanner
    can tell a tool of the same server from another server's (shadowing, collisions,
    look-alike names); it is indexed once here (`names.NameIndex`), so build one Scanner
    per catalogue and reuse it. Scans of a tool, prompt or resource pass `server=` (the
    upstream the object comes from); without it, cross-server checks are skipped.
    """

    def __init__(self, known_tools: Mapping[str, str] | None = None, *,
                 classifier: Classifier | None = None, classifier_threshold: float = 0.9
                 ) -> None:
        if known_tools is not None and not isinstance(known_tools, Mapping):
            raise TypeError("known_tools must map tool names to upstream names, got "
                            f"{type(known_tools).__name__}")
        self._names = NameIndex(known_tools or {})
        self.known_tools: dict[str, str] = self._names.known
        self._classifier = classifier
        self._classifier_threshold = classifier_threshold
        #: tool name -> the context its results are read in (built once per name)
        self._result_contexts: dict[str | None, TextContext] = {}

    # -- public entry points ----------------------------------------------------------------

    def scan_tool(self, tool: object, *, server: str | None = None) -> list[Finding]:
        """A tool definition from `tools/list`."""
        if not isinstance(tool, dict):
            return [_not_an_object("tool", tool)]
        name = tool.get("name")
        names = frozenset({name.lower()}) if isinstance(name, str) else frozenset()
        schema = tool.get("inputSchema")
        props = schema.get("properties") if isinstance(schema, dict) else None
        params = frozenset(str(k).lower() for k in props) if isinstance(props, dict) \
            else frozenset()
        ctx = self._context("metadata", names, params, server)
        limits = Limits()
        items = list(walk(tool, limits=limits))
        findings = self._strings_of(items, limits, "tool", ctx, context=False)
        hits = name_rules(name, "/name", server=server, known_tools=self._names)
        if any(item.role == "header" for item in items):
            hits += header_rules(schema, "/inputSchema")
        hits += parameter_rules(tool) + annotation_rules(tool) + icon_rules(tool)
        description = tool.get("description")
        if isinstance(description, str) and len(description) > LONG_DESCRIPTION:
            hits.append(Hit("E-TP01.length", Severity.LOW, "/description",
                            f"a {len(description)}-character description: the end is out of "
                            "view in most clients"))
        findings += [self._hit(h, "tool") for h in hits]
        return _dedupe(findings)

    def scan_prompt(self, prompt: object, *, server: str | None = None) -> list[Finding]:
        """A prompt definition (`prompts/list`) or a `prompts/get` result (messages)."""
        if not isinstance(prompt, dict):
            return [_not_an_object("prompt", prompt)]
        name = prompt.get("name")
        names = frozenset({name.lower()}) if isinstance(name, str) else frozenset()
        ctx = self._context("prompt", names, frozenset(), server)
        findings = self._strings(prompt, "prompt", ctx, context=False)
        if "name" in prompt:
            findings += [self._hit(h, "prompt") for h in name_rules(
                name, "/name", server=None, known_tools={}, kind="prompt")]
        return _dedupe(findings)

    def scan_resource(self, resource: object, *, server: str | None = None) -> list[Finding]:
        """A resource or template definition, or a `resources/read` result (contents)."""
        if not isinstance(resource, dict):
            return [_not_an_object("resource", resource)]
        if "contents" in resource:
            ctx = self._context("result", frozenset(), frozenset(), server)
            limits = Limits()
            return _dedupe(self._strings_of(walk_result(resource, limits), limits,
                                            "resource.contents", ctx, context=True))
        ctx = self._context("metadata", frozenset(), frozenset(), server)
        return _dedupe(self._strings(resource, "resource", ctx, context=False))

    def scan_instructions(self, text: object, *, server: str | None = None) -> list[Finding]:
        """A server's `instructions` (initialize or server/discover)."""
        if not isinstance(text, str):
            return [_not_an_object("instructions", text, expected="a string")]
        ctx = self._context("metadata", frozenset(), frozenset(), server)
        return _dedupe(self._strings_of([Item("", text, "description")], Limits(),
                                        "instructions", ctx, context=False))

    def scan_server_info(self, info: object, *, server: str | None = None) -> list[Finding]:
        """A server's `serverInfo` (initialize or server/discover): name, title, version,
        description, icons, websiteUrl, and any other key it carries."""
        if not isinstance(info, dict):
            return [_not_an_object("serverInfo", info)]
        ctx = self._context("metadata", frozenset(), frozenset(), server)
        limits = Limits()
        # A version is a token; one that reads as a sentence is read as one.
        items = [item._replace(role="description") if item.path == "/version"
                 and _has_words(item.text, 3) else item
                 for item in walk(info, limits=limits)]
        findings = self._strings_of(items, limits, "server", ctx, context=False)
        hits = name_rules(info.get("name"), "/name", server=None, known_tools={},
                          kind="server") + icon_rules(info) + website_rules(info)
        findings += [self._hit(h, "server") for h in hits]
        return _dedupe(findings)

    def scan_result(self, result: object, *, tool: str | None = None) -> list[Finding]:
        """A CallToolResult, GetPromptResult or ReadResourceResult: data the model reads."""
        if not isinstance(result, dict):
            return [_not_an_object("result", result)]
        ctx = self._result_contexts.get(tool) if isinstance(tool, str | None) else None
        if ctx is None:
            if tool is not None and not isinstance(tool, str):
                raise TypeError(f"tool must be the tool's name (a string) or None, got "
                                f"{type(tool).__name__}")
            names = frozenset({tool.lower()}) if tool else frozenset()
            ctx = TextContext("result", names, frozenset(), _NONE)
            if len(self._result_contexts) >= 4096:
                self._result_contexts.clear()
            self._result_contexts[tool] = ctx
        limits = Limits()
        findings = self._strings_of(walk_result(result, limits), limits, "result", ctx,
                                    context=True)
        return _dedupe(findings) if findings else findings

    # -- the layers ---------------------------------------------------------------------------

    def _context(self, surface: str, names: frozenset[str], params: frozenset[str],
                 server: str | None) -> TextContext:
        others = self._names.others(server) if server is not None and self._names else _NONE
        return TextContext(surface, names, params, others)

    def _strings(self, obj: dict[str, Any], kind: str, ctx: TextContext, *,
                 context: bool) -> list[Finding]:
        limits = Limits()
        items = list(walk(obj, limits=limits))
        return self._strings_of(items, limits, kind, ctx, context=context)

    def _strings_of(self, items: Iterable[Item], limits: Limits, kind: str,
                    ctx: TextContext, *, context: bool) -> list[Finding]:
        out: list[Finding] = []
        for item in items:
            raw = item.text
            for u in scan_text(raw, context=context):
                out.append(make_finding(u.code, u.severity, item.path, u.message, u.evidence,
                                        _surface(kind, item.path)))
            in_schema = "Schema/" in item.path or item.path.startswith(
                ("/annotations", "/_meta"))
            if in_schema:
                out += [self._hit(h, kind) for h in schema_item_rules(item)]
            if item.role == "binary" or len(raw) < 8:
                continue
            # Literal checks first (the markup rules need one of these to fire at all);
            # one regular-expression pass is cheaper than four on long non-ASCII text.
            if ("](" in raw or "<!--" in raw or "<img" in raw or "<IMG" in raw) \
                    if len(raw) < 4096 or raw.isascii() else _MARKUP_HINT.search(raw):
                out += [self._hit(h, kind) for h in markup_rules(item, context=context)]
            text = self._readable(item, in_schema, context)
            if text is None:
                continue
            surface = _surface(kind, item.path)
            item_ctx = ctx
            if in_schema and ctx.surface != "result":
                item_ctx = TextContext("schema", ctx.self_names, ctx.params, ctx.other_tools)
            out += self._phrasing(text, item, item_ctx, surface, kind)
            if len(text) >= 20 and may_be_encoded(text):
                out += self._encoded(text, item, item_ctx, surface, kind)
            words = [] if text.isascii() else mixed_words(text[:65_536])
            if words and len(words) >= (3 if context else 1):
                out.append(make_finding("E-HU01.confusable", H if len(words) >= 2 and not context
                                        else M, item.path, f"{len(words)} word(s) mix look-alike "
                                        "letters from different scripts",
                                        visible(" ".join(words[:5])), surface))
            if self._classifier is not None:
                out += self._classify(text, item, ctx, surface)
        if limits.depth or limits.size:
            where = limits.depth or limits.size or ""
            what = "nested deeper than the scan limit" if limits.depth else \
                "larger than the scan limit"
            out.append(make_finding("E-LIM." + ("depth" if limits.depth else "size"), H, where,
                                    f"the object is {what}; the rest was not scanned, so it "
                                    "is blocked (fail closed)", None, kind))
        return out

    @staticmethod
    def _readable(item: Item, in_schema: bool, context: bool) -> str | None:
        """The text the phrasing rules should read for this item, or None."""
        role = item.role
        if role in ("property-name", "name", "extra-key", "key", "enum"):
            if item.is_key and role == "key" and len(item.text) < 30:
                return None
            words = words_of_identifier(item.text)
            return words if len(words.split()) >= 3 else None
        if role in _PROSE_ROLES or (in_schema and role in _SCHEMA_PROSE):
            return item.text if _has_words(item.text, 3) else None
        return None

    def _phrasing(self, text: str, item: Item, ctx: TextContext, surface: str,
                  kind: str) -> list[Finding]:
        return [make_finding(_phrase_code(h, ctx, kind), h.severity, item.path, h.message,
                             h.evidence, surface) for h in analyze(text, ctx)]

    def _encoded(self, text: str, item: Item, ctx: TextContext, surface: str,
                 kind: str) -> list[Finding]:
        if len(text) < 20:
            return []
        out = []
        for encoding, decoded in decoded_payloads(text):
            hits = analyze(decoded, ctx)
            worst = max((h.severity for h in hits), default=None)
            if worst is not None and worst >= M:
                family = "E-RS" if ctx.surface == "result" else (
                    "E-FSP" if ctx.surface == "schema" else "E-TP01")
                out.append(make_finding(f"{family}.encoded", max(worst, H), item.path,
                                        f"{encoding} text decodes to instructions: "
                                        + "; ".join(sorted({h.rule for h in hits})),
                                        visible(decoded, 300), surface))
        return out

    def _classify(self, text: str, item: Item, ctx: TextContext,
                  surface: str) -> list[Finding]:
        assert self._classifier is not None
        try:
            score = float(self._classifier(text))
        except Exception as exc:  # a broken model must not pass content (fail closed)
            return [make_finding("E-LIM.classifier", H, item.path, "the classifier failed "
                                 f"({type(exc).__name__}); treated as a hit", None, surface)]
        if score < self._classifier_threshold:
            return []
        family = "E-RS" if ctx.surface == "result" else "E-TP01"
        return [make_finding(f"{family}.classifier", H, item.path, f"the local classifier "
                             f"scores this text {score:.2f} as an injection",
                             visible(text, 160), surface)]

    @staticmethod
    def _hit(hit: Hit, kind: str) -> Finding:
        return make_finding(hit.code, hit.severity, hit.path, hit.message, hit.evidence,
                            _surface(kind, hit.path))


def _has_words(text: str, n: int) -> bool:
    """At least `n` blank-separated words (without splitting a megabyte of text)."""
    if len(text) <= 4096:
        return len(text.split(None, n - 1)) >= n
    pos = 0
    for _ in range(n - 1):
        pos = _BLANK.search(text, pos)
        if pos is None:
            return False
        pos = pos.end()
    return pos < len(text)


_BLANK = re.compile(r"\S\s+(?=\S)")
# One of these is needed for any markup rule to fire (one pass instead of four).
_MARKUP_HINT = re.compile(r"\]\(|<!--|<img|<IMG")


def _phrase_code(hit: PhraseHit, ctx: TextContext, kind: str) -> str:
    if hit.rule == "shadowing":
        return "E-TP02.reference"
    if ctx.surface == "result":
        return f"E-RS.{hit.rule}"
    if ctx.surface == "schema":
        return f"E-FSP.{hit.rule}"
    return f"E-TP01.{hit.rule}"


def _surface(kind: str, path: str) -> str:
    if kind in ("result", "resource.contents", "instructions"):
        return kind
    if kind == "prompt" and path.startswith("/messages"):
        return "prompt.messages"
    if kind == "resource" and path.startswith("/contents"):
        return "resource.contents"
    head = path.split("/", 2)[1] if path.count("/") >= 1 and len(path) > 1 else ""
    return f"{kind}.{head}" if head else kind


def _not_an_object(kind: str, value: object, expected: str = "a JSON object") -> Finding:
    return make_finding("E-LIM.type", H, "", f"the {kind} is {type(value).__name__}, not "
                        f"{expected}; drop it", None, kind)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per (code, path): the most severe."""
    best: dict[tuple[str, str], Finding] = {}
    for f in findings:
        key = (f.code, f.path)
        if key not in best or f.severity > best[key].severity:
            best[key] = f
    return sorted(best.values(), key=lambda f: (-f.severity, f.path, f.code))
