"""Phrasing rules: signals combined by target and intent, never a bare word.

Each rule names a shape (concealment, exfiltration, credential harvesting, a command to run,
a dictated call to another tool, parameter tampering, tool redirection, pseudo-tags,
words addressed to the AI, task hijacking, role overrides, preference manipulation,
cross-server references) and the signals that must appear together, close to each other
(in one window of text), for it to fire. "IMPORTANT", "must", "API key" or "ignore" alone
never block; "do not tell the user" next to an action does.

Where the text sits changes the reading: in a schema field (a parameter description, an
enum, an unknown key) any order given to the model is out of place and counts more; in a
result (data the model reads), imperatives aimed at a human reader are normal, so only
shapes aimed at the AI or its tools count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from bastion.guard.scan.findings import Severity
from bastion.guard.scan.normalize import fold
from bastion.guard.scan.signals import Signal, find_signals, tool_target

H, M, L = Severity.HIGH, Severity.MEDIUM, Severity.LOW

#: Text up to this long is judged as one window; longer text in windows around signals.
WHOLE_TEXT = 1200
_REACH = 400


@dataclass(frozen=True, slots=True)
class TextContext:
    """What the phrasing rules know about where a string sits."""

    #: "metadata" (descriptions, titles, instructions, prompts), "schema" (parameter
    #: descriptions, enums, defaults, unknown keys), "result" (data the model reads).
    surface: str = "metadata"
    #: The names of the object itself ("call this tool" is not a reference to another).
    self_names: frozenset[str] = frozenset()
    #: The tool's parameter names ("append it to id" names a side channel).
    params: frozenset[str] = frozenset()
    #: Lower-cased tool names of OTHER upstreams -> their upstream (cross-server refs).
    other_tools: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """One rule that fired: its sub-code, severity, message and the span as evidence."""

    rule: str
    severity: Severity
    message: str
    evidence: str


_DIRECTIVE = frozenset({"oblig", "ask", "precond"})
_ACTION = frozenset({"oblig", "ask", "c_strong", "c_weak", "egress", "sink", "command", "param",
                     "toolcall", "exec", "output", "destructive", "pseudotag", "regardless",
                     "precond", "redirect", "harvest", "tamper", "xref"})
#: What turns "you must call X" (a dependency honest servers state too) into an attack:
#: dictated output, rewritten arguments, authority claims, secrecy, data leaving.
_DEP_PARTNERS = frozenset({"auth", "output", "param", "c_strong", "egress", "secrecy", "relay",
                           "secrecy_user", "destructive", "pseudotag", "mandate", "trigger",
                           "promo", "redirect", "addressee", "xref", "regardless"})
_DEP_RESULT = _DEP_PARTNERS | {"pinned", "dest", "pretext"}
_ORDER = frozenset({"oblig", "toolcall", "c_strong", "exec", "command", "secrecy",
                    "secrecy_user", "param", "egress", "sink", "override", "harvest", "tamper"})
_TO_AI = frozenset({"taskhijack", "pseudotag", "addressee", "secrecy_user"})
_STOP = frozenset({"this", "the", "it", "them", "that", "these", "those", "me", "you", "us",
                   "back", "again", "up", "out", "tool", "tools", "function", "and", "or",
                   "only", "when", "same", "with", "for", "caution", "care", "case", "a",
                   "an", "your", "our", "its", "their", "any", "all", "other", "here"})
_PARAM_WORDS = re.compile(r"\s+(?:parameter|param|argument|arg|field|option|flag|key"
                          r"|property|value|format|mode|prefix|syntax)\b")
_DESTRUCTIVE_NAME = re.compile(r"(?:^|[_-])(?:delete|remove|drop|destroy|wipe|purge|erase)"
                               r"(?:[_-]|$)")
_EGRESS_NAME = re.compile(r"(?:^|[_-])(?:send|post|email|mail|upload|share|forward|publish"
                          r"|transfer|export)(?:[_-]|$)")
# A match never starts right after a letter (the letter would have started it), so the
# look-behind changes nothing but the time: the engine stops trying inside words.
_IDENT_TOKEN = re.compile(r"(?<![a-z])[a-z][a-z0-9]*(?:(?:__|[_.-])[a-z0-9]+)+")

@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    needs: frozenset[str]
    partners: frozenset[str] | None  # None: fires on `needs` alone
    severity: Severity
    alone: Severity | None  # severity when `needs` hold but no partner does
    message: str
    surfaces: frozenset[str] = frozenset({"metadata", "schema", "result", "prompt"})


def _r(name: str, needs: set[str], partners: set[str] | None, severity: Severity,
       alone: Severity | None, message: str, surfaces: set[str] | None = None) -> _Rule:
    return _Rule(name, frozenset(needs), None if partners is None else frozenset(partners),
                 severity, alone, message,
                 frozenset(surfaces or {"metadata", "schema", "result", "prompt"}))


_NOT_RESULT = {"metadata", "schema", "prompt"}
_RESULT = {"result"}
RULES: tuple[_Rule, ...] = (
    _r("override", {"override"}, None, H, None,
       "tells the model to drop its instructions, approve everything or take a new role"),
    _r("template", {"template"}, None, H, None,
       "chat-template or role tokens that fake a new conversation turn"),
    _r("task-hijack", {"taskhijack"}, None, H, None,
       "poses as the user and redirects the model to another task (indirect injection)"),
    _r("encoded", {"encoded"}, None, H, None,
       "asks the model to decode a payload and follow it"),
    _r("concealment", {"secrecy_user"}, None, H, None,
       "tells the model to keep something from the user", _NOT_RESULT),
    _r("concealment", {"secrecy_user"}, _ACTION, H, M,
       "data tells the model to keep an action from the user", _RESULT),
    _r("concealment", {"secrecy"}, _ACTION, H, L,
       "asks that a change or an action go unmentioned", _NOT_RESULT),
    _r("exfiltration", {"c_strong", "sink"}, None, H, None,
       "puts a secret, a key file or the conversation into a parameter (a side channel)"),
    _r("exfiltration", {"c_strong", "egress"}, _DIRECTIVE | _TO_AI | {"secrecy", "override"},
       H, None, "sends a secret, a key file or the conversation somewhere"),
    _r("harvest", {"c_strong", "harvest"}, _DIRECTIVE | _TO_AI | {"trigger", "toolcall",
                                                                "imperative"}, H,
       None, "tells the model to read keys, credentials or the conversation"),
    _r("exfiltration", {"c_strong", "egress", "dest"}, None, H, None,
       "sends keys, credentials or the conversation to a named address", _NOT_RESULT),
    _r("exfiltration", {"egress", "bulk"}, _DIRECTIVE | {"imperative"}, H, None,
       "has the model send data in bulk somewhere", _NOT_RESULT),
    _r("tamper", {"c_strong", "tamper"}, _DIRECTIVE | _TO_AI, H, None,
       "tells the model to change shell start-up or configuration files"),
    _r("harvest", {"c_strong"}, {"secrecy", "secrecy_user", "command"}, H, None,
       "orders an action on keys, credentials or the conversation"),
    _r("exfiltration", {"c_weak", "sink"}, {"secrecy", "secrecy_user", "oblig", "precond",
                                            "pseudotag", "addressee", "taskhijack"}, H, M,
       "puts credentials into a parameter (a side channel)"),
    _r("exfiltration", {"c_weak", "egress", "dest"}, None, H, None,
       "sends credentials to a named address", _NOT_RESULT),
    _r("exfiltration", {"c_weak", "egress", "dest"}, _TO_AI, H, None,
       "sends credentials to an address", _RESULT),
    _r("command", {"command"}, {"oblig", "ask", "precond", "auth", "pseudotag", "secrecy",
                                "secrecy_user", "addressee", "mandate"}, H, None,
       "orders the model to run a shell command", _NOT_RESULT),
    _r("command", {"command", "exec"}, None, M, None,
       "describes a dangerous shell command to run", _NOT_RESULT),
    _r("command", {"pipe_shell"}, _DIRECTIVE | _TO_AI | {"exec", "auth", "mandate"}, H, M,
       "has the model pipe a downloaded script into a shell", _NOT_RESULT),
    _r("command", {"pipe_shell"}, _TO_AI | {"oblig", "auth", "mandate"}, H, None,
       "data has the model pipe a downloaded script into a shell", _RESULT),
    _r("command", {"command"}, {"oblig", "auth", "pseudotag", "addressee", "secrecy",
                                "secrecy_user", "mandate", "taskhijack"}, H, None,
       "orders the model to run a shell command", _RESULT),
    _r("dependency", {"toolcall", "oblig"}, _DEP_PARTNERS, H, M,
       "makes the model call another tool, with dictated arguments or messages",
       _NOT_RESULT),
    _r("dependency", {"toolcall", "ask"}, _DEP_PARTNERS, H, None,
       "tells the model to call another tool", {"schema"}),
    _r("dependency", {"toolcall", "precond"}, _DEP_PARTNERS | {"ask", "oblig"}, H, None,
       "tells the model to call another tool", {"schema"}),
    _r("dependency", {"toolcall"}, {"oblig", "ask", "pseudotag", "precond"}, M, None,
       "tells the model to call another tool", _RESULT),
    _r("dependency", {"toolcall", "oblig"}, _DEP_RESULT, H, None,
       "data tells the model to call another tool", _RESULT),
    _r("dependency", {"toolcall", "ask"}, _DEP_RESULT, H, None,
       "data tells the model to call another tool", _RESULT),
    _r("dependency", {"toolcall", "pseudotag"}, _DIRECTIVE, H, None,
       "data tells the model to call another tool", _RESULT),
    _r("param-tamper", {"param"}, {"secrecy", "secrecy_user", "regardless"}, H, L,
       "rewrites the arguments the user asked for", _NOT_RESULT),
    _r("param-tamper", {"regardless"}, {"oblig", "ask", "param"}, H, M,
       "overrides what the user asked for", _NOT_RESULT),
    _r("network", {"egress", "dest"}, {"auth", "mandate", "bulk"}, H, None,
       "makes the model contact an outside address", _NOT_RESULT),
    _r("network", {"egress", "dest"}, _DIRECTIVE, M, None,
       "asks the model to contact an outside address", _NOT_RESULT),
    _r("network", {"egress", "internal"}, _DIRECTIVE | _TO_AI | {"imperative"}, H, None,
       "has the model contact an internal or cloud-metadata address (SSRF)"),
    _r("redirect", {"redirect"}, {"auth", "promo", "secrecy", "secrecy_user", "mandate"}, H,
       L, "claims the tool is replaced and steers calls elsewhere", _NOT_RESULT),
    _r("pseudo-tag", {"pseudotag"}, _ORDER, H, M,
       "a pseudo-tag (<IMPORTANT>, <SYSTEM> ...) wraps orders to the model", _NOT_RESULT),
    _r("pseudo-tag", {"pseudotag"}, _ORDER | _DIRECTIVE, H, None,
       "a pseudo-tag (<IMPORTANT>, <SYSTEM> ...) wraps orders to the model", _RESULT),
    _r("addressed", {"addressee"}, {"sink", "c_strong", "secrecy", "secrecy_user",
                                    "command", "harvest", "override", "relay"}, H, None,
       "speaks to the AI directly and has it move data or hide actions", _NOT_RESULT),
    _r("addressed", {"addressee"}, _DIRECTIVE | {"toolcall", "c_strong", "command", "exec",
                                                 "egress", "sink", "secrecy", "secrecy_user",
                                                 "encoded", "harvest", "override"}, H, M,
       "speaks to the AI directly and gives it orders", _RESULT),
    _r("destructive", {"destructive"}, {"oblig", "ask", "precond", "pseudotag", "addressee"},
       H, None, "orders the model to delete or wipe data"),
    _r("line-jump", {"trigger"}, {"toolcall", "c_strong", "sink", "egress"}, H, M,
       "arms a trigger phrase that makes the model act on its own"),
    _r("preference", {"promo", "steer"}, None, H, None,
       "steers the model to prefer this tool over others", _NOT_RESULT),
    _r("preference", {"steer"}, None, M, None,
       "steers the model to prefer this tool", _NOT_RESULT),
    _r("shadowing", {"xref"}, _DIRECTIVE | {"param", "secrecy", "secrecy_user", "egress",
                                           "redirect", "dest", "sink"}, H, M,
       "refers to a tool of another server and changes how it is used", _NOT_RESULT),
)


#: Text longer than this (a big result) is read in part: the head, the tail, and windows
#: around strong markers anywhere in it. A 1 MB result stays within the latency budget;
#: a payload in the middle of a huge result is found when it carries a marker.
LONG_TEXT = 32_768
_HEAD, _TAIL, _AROUND, _MAX_WINDOWS = 8_192, 4_096, 400, 32
_ANCHORS = ("ignore", "disregard", "instruction", "assistant", "<important", "<system",
            "<information", "<critical", "[system", "you must", "system prompt", "id_rsa",
            "rm -rf", "sudo ", "curl ", "do not tell", "silently", "<|")
_ANCHORS_BYTES = tuple(a.encode("ascii") for a in _ANCHORS)


def analyze(text: str, ctx: TextContext) -> list[PhraseHit]:
    """The phrasing rules that fire on `text` (raw; it is normalised here)."""
    if len(text) > LONG_TEXT:
        return _analyze_long(text, ctx)
    cased, norm, found = _signals(text)
    if not found and not ctx.other_tools and not ctx.params:
        return []  # nothing to enrich: the common case for ordinary text
    signals = _enrich(list(found), norm, ctx)
    if not signals:
        return []
    hits: dict[str, PhraseHit] = {}
    for window in _windows(signals, len(norm)):
        for hit in _judge(window, cased, ctx):
            kept = hits.get(hit.rule)
            if kept is None or hit.severity > kept.severity:
                hits[hit.rule] = hit
    return list(hits.values())


def _analyze_long(text: str, ctx: TextContext) -> list[PhraseHit]:
    # One byte per character, so offsets stay those of `text`; the anchors are ASCII, and
    # no character outside Latin-1 lower-cases to one of their letters.
    low = text.encode("latin-1", "replace").lower()
    end = len(text) - _TAIL
    spans = [(0, _HEAD), (end, len(text))]
    for anchor in _ANCHORS_BYTES:
        if len(spans) >= _MAX_WINDOWS:
            break
        i = low.find(anchor, _HEAD, end)
        while i != -1 and len(spans) < _MAX_WINDOWS:
            spans.append((max(0, i - _AROUND), i + _AROUND))
            i = low.find(anchor, i + _AROUND, end)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    hits: dict[str, PhraseHit] = {}
    for a, b in merged:
        for hit in analyze(text[a:b], ctx):
            kept = hits.get(hit.rule)
            if kept is None or hit.severity > kept.severity:
                hits[hit.rule] = hit
    return list(hits.values())


@lru_cache(maxsize=4096)
def _cached_signals(text: str) -> tuple[str, str, tuple[Signal, ...]]:
    cased = fold(text)
    norm = cased.lower()
    return cased, norm, tuple(find_signals(norm, cased))


def _signals(text: str) -> tuple[str, str, tuple[Signal, ...]]:
    """The folded text, its lower-case form and its signals; short texts are cached (a
    catalogue repeats its parameter descriptions many times)."""
    if len(text) <= 4096:
        return _cached_signals(text)
    cased = fold(text)
    norm = cased.lower()
    return cased, norm, tuple(find_signals(norm, cased))


def _enrich(signals: list[Signal], norm: str, ctx: TextContext) -> list[Signal]:
    """Resolve tool references (drop self-references and parameters; mark other servers'
    tools and destructive tool names) and add side channels named by parameter."""
    out: list[Signal] = []
    for s in signals:
        if s.group != "toolcall":
            out.append(s)
            continue
        target = tool_target(s)
        if target is not None:
            t = target.lower()
            if (t in ctx.self_names or t in _STOP or t in ctx.params or "/" in t
                    or len(t) < 3 or _PARAM_WORDS.match(norm, s.end)):
                continue
            if t in ctx.other_tools:
                out.append(Signal("xref", s.start, s.end, target))
            if _DESTRUCTIVE_NAME.search(t):
                out.append(Signal("destructive", s.start, s.end, target))
            if _EGRESS_NAME.search(t):
                out.append(Signal("egress", s.start, s.end, target))
        out.append(s)
    others = ctx.other_tools
    if others:
        # Strings first (cheap); positions only for the rare text that names one.
        named = {t for t in _IDENT_TOKEN.findall(norm) if t in others} - ctx.self_names
        if named:
            for m in _IDENT_TOKEN.finditer(norm):
                if m.group() in named:
                    out.append(Signal("xref", m.start(), m.end(), m.group()))
    if ctx.params:
        for m in _PARAM_SINK.finditer(norm):
            if m.group("p") in ctx.params:
                out.append(Signal("sink", m.start(), m.end(), m.group()))
    return out


_PARAM_SINK = re.compile(
    r"\b(?:pass|put|place|include|insert|append|add|provide|embed|encode|write|attach|copy"
    r"|send|fill)\w*\s+(?:[^.\n]{0,60}?\s+)?(?:to|in|into|as|inside|within)\s+(?:the\s+)?"
    r"(?P<p>[a-z_][\w-]*)\b")


def _windows(signals: list[Signal], length: int) -> list[list[Signal]]:
    if length <= WHOLE_TEXT:
        return [signals]
    signals = sorted(signals, key=lambda s: s.start)
    windows: list[list[Signal]] = []
    lo = 0
    for s in signals:
        while signals[lo].end < s.start - _REACH:
            lo += 1
        hi = lo
        group: list[Signal] = []
        while hi < len(signals) and signals[hi].start <= s.end + _REACH:
            group.append(signals[hi])
            hi += 1
        windows.append(group)
    return windows


def _judge(window: list[Signal], cased: str, ctx: TextContext) -> list[PhraseHit]:
    groups = {s.group for s in window}
    promo = sum(1 for s in window if s.group == "promo")
    out: list[PhraseHit] = []
    for rule in RULES:
        if ctx.surface not in rule.surfaces or not rule.needs <= groups:
            continue
        partners = groups & rule.partners if rule.partners is not None else set()
        if rule.partners is None or partners:
            severity = rule.severity
        elif rule.alone is not None:
            severity = rule.alone
        else:
            continue
        if ctx.surface == "schema" and severity == M and groups & (_DIRECTIVE | {"toolcall"}):
            severity = H  # a parameter description has no business giving orders
        used = [s for s in window if s.group in rule.needs or s.group in partners]
        out.append(PhraseHit(rule.name, severity, rule.message, _evidence(used, cased)))
    if promo >= 2 and ctx.surface != "result":
        used = [s for s in window if s.group == "promo"]
        out.append(PhraseHit("preference", M, "superiority claims meant to make the model "
                             "prefer this tool", _evidence(used, cased)))
    return out


def _evidence(signals: list[Signal], cased: str) -> str:
    start = min(s.start for s in signals)
    end = max(s.end for s in signals)
    if end - start > 240:
        end = start + 240
    return " ".join(cased[start:end].split())
