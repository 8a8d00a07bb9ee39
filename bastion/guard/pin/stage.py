"""The pin stage: a tool, prompt or resource template whose definition is not the approved
one is quarantined: hidden from lists and refused on calls, until `bastion pin approve`.

The stage checks the upstream's own definition (its own name, not the gateway's prefixed
one) against the pins of the server identity Bastion controls, on every list and every
call, so a server that changes a definition without announcing it is caught at the next
request. The verdict is left in `call.notes["pin"]` for the audit record (the digest of the
definition the call used).
"""

from __future__ import annotations

import logging
from typing import Any

from bastion.config import resolve_state_dir
from bastion.guard.pin.canonical import LIST_KINDS
from bastion.guard.pin.checker import PinChecker, PinVerdict
from bastion.guard.pipeline import Call, Stage
from bastion.protocol.errors import MCPError

logger = logging.getLogger("bastion.guard.pin")

#: A quarantined item: the definition changed (or is new) and awaits approval.
QUARANTINED = -32004
#: Catalogue kinds to pin kinds (plain resources are not pinned).
_ENTRY_KINDS = {"tool": "tool", "prompt": "prompt", "template": "template"}
_KEY_FIELDS = {"tool": "name", "prompt": "name", "template": "uriTemplate"}


class Quarantined(MCPError):
    """A call to an item whose definition is not approved (what changed is in `data`)."""

    code = QUARANTINED


class PinStage(Stage):
    """Hide and refuse items whose definitions are not the approved ones."""

    name = "pin"

    def __init__(self, checker: PinChecker, catalog: Any) -> None:
        self.checker = checker
        self.catalog = catalog
        self._warned: set[tuple[str, str, str]] = set()

    async def start(self) -> None:
        await self.checker.start()

    async def aclose(self) -> None:
        await self.checker.aclose()

    def verdict(self, entry: Any) -> PinVerdict | None:
        """The pins' verdict on a catalogue entry (None for kinds that are not pinned)."""
        kind = _ENTRY_KINDS.get(entry.kind)
        if kind is None:
            return None
        own = {**entry.definition, _KEY_FIELDS[entry.kind]: entry.original}
        verdict = self.checker.check(kind, self.checker.server_id(entry.upstream),  # type: ignore[arg-type]
                                     entry.original, own)
        if verdict.quarantined:
            self._report(entry, verdict)
        return verdict

    async def check_request(self, call: Call) -> None:
        entry = call.target
        if entry is None:
            return
        verdict = self.verdict(entry)
        if verdict is None:
            return
        call.notes["pin"] = {"status": verdict.status, "sha256": verdict.digest.raw
                             if verdict.digest is not None else None}
        if verdict.quarantined:
            raise Quarantined(
                f"{entry.kind} {entry.key!r} is quarantined: {verdict.reason or verdict.status}"
                " (an operator reviews it with `bastion pin diff` and approves it with "
                "`bastion pin approve`)",
                data={"name": entry.key, "status": verdict.status})

    def filter_list(self, call: Call, kind: str, items: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        if kind not in LIST_KINDS:
            return items
        lookup = getattr(self.catalog, "template" if kind == "resourceTemplates"
                         else LIST_KINDS[kind])
        field = "uriTemplate" if kind == "resourceTemplates" else "name"
        kept = []
        for item in items:
            entry = lookup(item.get(field))
            verdict = self.verdict(entry) if entry is not None else None
            if verdict is not None and not verdict.quarantined:
                kept.append(item)
        return kept

    def _report(self, entry: Any, verdict: PinVerdict) -> None:
        key = (entry.upstream, entry.kind, entry.original)
        if key not in self._warned and len(self._warned) < 10_000:
            self._warned.add(key)
            logger.warning("quarantined %s %r of upstream %r: %s", entry.kind, entry.original,
                           entry.upstream, verdict.reason or verdict.status)


def pin_stage(context: Any) -> Stage:
    """The factory the stage registry uses (`context`: the gateway)."""
    config = context.config
    checker = PinChecker.from_config(config.pins, config.mcp_servers.values(),
                                     resolve_state_dir(config),
                                     loopback=getattr(context, "loopback_only", True))
    return PinStage(checker, context.catalog)
