"""Tool classes (read-only, destructive, open-world, idempotent) from a tool's annotations.

Annotations are hints a server gives about its own tools, so they are untrusted unless the
server is (SPEC-TOOL-01). How much they count is set per upstream:

- `trust`: the hints with the spec's defaults: read-only when `readOnlyHint` is true;
  destructive when `destructiveHint` is true, or when the tool is not read-only and does not
  say `destructiveHint: false`; open-world unless `openWorldHint` is false; idempotent when
  `idempotentHint` is true.
- `verify` (the default): as `trust`, but a tool whose name or title (its own or the
  annotations') holds a word that acts on the world (delete, send, run, ...) is never
  read-only, whatever it claims, and one whose words destroy (delete, drop, kill, ...) is
  destructive. This catches syn-023: `read_doc` claiming `readOnlyHint` with a title that
  says "send ~/.aws/credentials".
- `ignore`: the worst case: no tool is read-only or idempotent; all are destructive and
  open-world.

Prompts, resources and resource templates only read: they are read-only and idempotent.
Words are found in snake_case, kebab-case, camelCase and prose alike, and matched whole, so
`address` is not `add`, nor `settings` `set`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.config.policy import AnnotationTrust

#: Words that destroy or cut off: such a tool is destructive whatever its hints say.
DESTRUCTIVE_WORDS = frozenset({
    "delete", "del", "remove", "rm", "rmdir", "unlink", "drop", "kill", "destroy", "purge",
    "wipe", "erase", "truncate", "terminate", "shutdown", "disable", "revoke", "isolate",
    "quarantine", "reset", "overwrite", "uninstall", "suspend", "deactivate", "ban", "clear",
    "flush", "deletion", "removal",
})
#: Words that change something or act outside: such a tool is not read-only.
WRITE_WORDS = DESTRUCTIVE_WORDS | frozenset({
    "write", "update", "create", "send", "exec", "execute", "run", "shell", "eval", "set",
    "put", "patch", "post", "modify", "edit", "insert", "upsert", "upload", "move", "rename",
    "copy", "deploy", "install", "push", "merge", "commit", "publish", "approve", "assign",
    "add", "append", "start", "stop", "restart", "restore", "import", "transfer", "pay",
    "invoke", "trigger", "grant", "enable", "register", "submit", "email", "mail", "notify",
    "reply", "share", "invite", "archive", "lock", "unlock", "save", "store", "apply",
    "change", "replace", "toggle", "mutate", "schedule", "spawn", "fork",
})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: Longest name or title read (a hint is short; a longer one is read up to here).
_MAX_TEXT = 512
#: Definitions whose classes are remembered (by identity; the catalogue keeps them stable).
_CACHE_SIZE = 20_000

_READING = frozenset({"read-only", "idempotent"})


@dataclass(frozen=True, slots=True)
class ToolClasses:
    """What a target is, and (when the hints were overruled) why."""

    classes: frozenset[str]
    #: Why the classes differ from what the tool claims (None when they do not).
    note: str | None = None


READING = ToolClasses(_READING)
WORST_CASE = ToolClasses(frozenset({"destructive", "open-world"}),
                         "annotations are ignored for this upstream")


def words_of(text: str) -> list[str]:
    """The lower-case words of a name or title (snake, kebab, camel case, prose)."""
    return [word.lower() for word in _WORD.findall(text[:_MAX_TEXT])]


def tool_classes(definition: Mapping[str, Any], trust: AnnotationTrust) -> ToolClasses:
    """The classes of one tool definition under `trust` (see the module doc)."""
    if trust == "ignore":
        return WORST_CASE
    annotations = definition.get("annotations")
    hints: Mapping[str, Any] = annotations if isinstance(annotations, Mapping) else {}
    read_only = hints.get("readOnlyHint") is True
    destructive_hint = hints.get("destructiveHint")
    destructive = destructive_hint is True or (not read_only and destructive_hint is not False)
    note = None
    if trust == "verify":
        texts = [definition.get("name"), definition.get("title"), hints.get("title")]
        words = {word for text in texts if isinstance(text, str) for word in words_of(text)}
        acting = sorted(words & WRITE_WORDS)
        if acting and read_only:
            read_only = False
            destructive = destructive_hint is not False
            note = f"readOnlyHint overruled: its name or title says {acting[0]!r}"
        destroying = sorted(words & DESTRUCTIVE_WORDS)
        if destroying and not destructive:
            destructive = True
            note = f"destructive: its name or title says {destroying[0]!r}"
    classes = {name for name, holds in (
        ("read-only", read_only), ("destructive", destructive),
        ("open-world", hints.get("openWorldHint") is not False),
        ("idempotent", hints.get("idempotentHint") is True)) if holds}
    return ToolClasses(frozenset(classes), note)


class ClassCache:
    """`tool_classes` per definition, computed once while the definition object stays."""

    __slots__ = ("_by_id", "_default", "_per_upstream")

    def __init__(self, default: AnnotationTrust,
                 per_upstream: Mapping[str, AnnotationTrust] | None = None) -> None:
        self._default = default
        self._per_upstream = dict(per_upstream or {})
        self._by_id: dict[int, tuple[Mapping[str, Any], str, ToolClasses]] = {}

    def trust_of(self, upstream: str) -> AnnotationTrust:
        return self._per_upstream.get(upstream, self._default)

    def of(self, kind: str, upstream: str, definition: Mapping[str, Any]) -> ToolClasses:
        if kind != "tool":
            return READING
        cached = self._by_id.get(id(definition))
        # Identity and upstream both checked: an id is reused once its object is gone.
        if cached is not None and cached[0] is definition and cached[1] == upstream:
            return cached[2]
        found = tool_classes(definition, self.trust_of(upstream))
        if len(self._by_id) >= _CACHE_SIZE:
            self._by_id.clear()
        self._by_id[id(definition)] = (definition, upstream, found)
        return found
