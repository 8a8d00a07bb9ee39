"""Is this definition the one that was approved? The pin check the gateway runs per item.

`PinChecker.check(kind, server_id, name, definition)` answers from memory (no disk, no
await), so a guard stage may call it for every item of every list; verdicts are cached per
(server, kind, name, definition bytes) until the pins change. The answer is a `PinVerdict`:

- `approved`: the definition's raw digest is the pinned one (or one the configuration lists);
- `changed`: the item is pinned with another definition (`diff` says what changed, and
  `hidden_only` that only invisible characters did: a hidden-instruction edit);
- `renamed`: not pinned under this name, but its body (everything but the name) is that of a
  pinned item of the same server under another name: a rename, or a copy;
- `new`: nothing like it is pinned. With trust on first use (`mode="tofu"`) it is pinned on
  the spot (`status="approved"`, `recorded=True`) and written to the store in the background;
- `revoked`: `bastion pin revoke` withdrew its approval;
- `unverifiable`: the definition cannot be digested (not JSON, too large), or the store has
  been unreadable for longer than `MAX_SNAPSHOT_AGE`, so no pin can be trusted (fail closed).

Everything but `approved` is `quarantined`: hidden from lists and refused when called.
Trust on first use never replaces a pin: a changed item stays quarantined in every mode
(old mcp-scan warned once and then silently pinned the new definition).

The snapshot of the store is reloaded when the file changes (`PinStore.signature`, polled
every `refresh_interval` seconds in a worker thread), so an approval given with the CLI
reaches a running gateway within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from bastion.config.models import UpstreamConfig
from bastion.config.pins import PIN_KINDS, ApprovedPin, PinKind, PinsConfig
from bastion.guard.pin.canonical import CanonicalError, PinDigest, digest, item_name
from bastion.guard.pin.diff import Change, diff_definitions
from bastion.guard.pin.store import PinRecord, PinStore, PinStoreError, server_identity
from bastion.guard.refresh import SnapshotRefresher

log = logging.getLogger(__name__)

PinStatus = Literal["approved", "new", "changed", "renamed", "revoked", "unverifiable"]
CheckMode = Literal["tofu", "strict"]
REFRESH_INTERVAL = 2.0
#: The snapshot is trusted this long after the store was last read; then nothing is approved.
MAX_SNAPSHOT_AGE = 30.0
#: Bounds on memory: cached verdicts, and first-use pins waiting to be written.
MAX_CACHED_VERDICTS = 20_000
MAX_PENDING = 10_000
TOFU_APPROVER = "trust-on-first-use"

_Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class PinVerdict:
    """What the pins say about one live definition (see the module doc)."""

    status: PinStatus
    #: The live definition's digests (None when it has none: `unverifiable`).
    digest: PinDigest | None
    #: The pin the verdict is about: the approved, changed, revoked or renamed-from item.
    pinned: PinRecord | None = None
    #: Pinned definition -> live definition (changed, renamed, revoked).
    diff: tuple[Change, ...] = ()
    #: A sentence for logs, alerts and the CLI.
    reason: str = ""
    #: Only invisible characters differ from the pinned definition.
    hidden_only: bool = False
    #: Trusted on first use by this check (the first time only).
    recorded: bool = False

    @property
    def quarantined(self) -> bool:
        return self.status != "approved"


class _Snapshot:
    """The store's rows as the checker looks them up."""

    __slots__ = ("by_body", "by_key")

    def __init__(self, records: Iterable[PinRecord]) -> None:
        self.by_key: dict[_Key, PinRecord] = {}
        self.by_body: dict[tuple[str, str, str], PinRecord] = {}
        for record in records:
            self.add(record)

    def add(self, record: PinRecord) -> None:
        self.by_key[(record.server_id, record.kind, record.name)] = record
        # Revoked pins too: a revoked item renamed must not pass for a new one.
        self.by_body.setdefault((record.server_id, record.kind, record.digest.body), record)


class PinChecker:
    """Checks live definitions against the pins (see the module doc)."""

    def __init__(self, store: PinStore, *, mode: CheckMode = "strict",
                 approved: Iterable[ApprovedPin] = (),
                 server_ids: Mapping[str, str] | None = None,
                 refresh_interval: float = REFRESH_INTERVAL) -> None:
        if mode not in ("tofu", "strict"):
            raise ValueError(f"mode must be 'tofu' or 'strict', not {mode!r}")
        self.store = store
        self.mode = mode
        #: Upstream name (configuration) -> server identity.
        self.server_ids = dict(server_ids or {})
        #: The configuration's approvals: (server id, kind, name) -> digest -> record.
        self.configured: dict[_Key, dict[str, PinRecord]] = {}
        for entry in approved:
            server_id = self.server_id(entry.server)
            record = PinRecord(server_id, entry.kind, entry.name,
                               PinDigest(entry.sha256, "", ""), None, "configuration", 0.0,
                               "config")
            key = (server_id, entry.kind, entry.name)
            self.configured.setdefault(key, {})[entry.sha256] = record
        self._snapshot = _Snapshot(())
        self._signature: tuple[int, ...] | None = None
        self._pending: dict[_Key, PinRecord] = {}
        self._cache: dict[tuple[_Key, bytes], tuple[int, PinVerdict]] = {}
        self._generation = 0
        self._refresher = SnapshotRefresher(self._keep_fresh, refresh_interval,
                                            max_age=MAX_SNAPSHOT_AGE, name="pin-reload")
        self._last_problem: str | None = None

    @classmethod
    def from_config(cls, pins: PinsConfig, upstreams: Iterable[UpstreamConfig],
                    state_dir: Path, *, loopback: bool, mode: CheckMode | None = None,
                    refresh_interval: float = REFRESH_INTERVAL) -> PinChecker:
        """The checker of a configuration: `upstreams` are all configured ones (enabled or
        not); `loopback` says whether the gateway listens on loopback only (`mode: auto`);
        `mode` overrides the file's. ValueError when `pins.approved` names an upstream that
        is not configured."""
        configs = list(upstreams)
        pins.check_upstreams(upstream.name for upstream in configs)
        return cls(PinStore.in_state_dir(state_dir),
                   mode=mode or pins.effective_mode(loopback=loopback),
                   approved=pins.approved,
                   server_ids={upstream.name: server_identity(upstream) for upstream in configs},
                   refresh_interval=refresh_interval)

    def server_id(self, upstream: str) -> str:
        """The server identity of a configured upstream (KeyError if it is not one)."""
        try:
            return self.server_ids[upstream]
        except KeyError:
            raise KeyError(f"upstream {upstream!r} is not configured; known: "
                           f"{', '.join(sorted(self.server_ids)) or '(none)'}") from None

    # -- the snapshot ----------------------------------------------------------------------

    def load(self) -> None:
        """Read the store now, in this thread (`PinStoreError` if it cannot be read)."""
        signature = self.store.signature()
        self._install(self.store.load(), signature)

    def _install(self, records: list[PinRecord], signature: tuple[int, ...] | None) -> None:
        snapshot = _Snapshot(records)
        # First-use pins not written yet stay visible (unless the store now has the item).
        for key, record in self._pending.items():
            if key not in snapshot.by_key:
                snapshot.add(record)
        self._snapshot = snapshot
        self._signature = signature
        self._refresher.mark_fresh()
        self._changed()

    def _changed(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def start(self) -> None:
        """Read the store, then keep it fresh (and write first-use pins) in the background.
        A store that cannot be read is logged, and every check is `unverifiable` until it
        can be (fail closed)."""
        await self.reload()
        self._refresher.start()

    async def aclose(self) -> None:
        """Stop reloading and write what trust on first use recorded."""
        await self._refresher.aclose()
        await self.flush()

    async def reload(self) -> None:
        """Read the store again if it changed since the last read (in a worker thread)."""
        store = self.store
        try:
            signature = await asyncio.to_thread(store.signature)
            if signature == self._signature and self._refresher.loaded_at is not None:
                self._refresher.mark_fresh()
                return
            records = await asyncio.to_thread(store.load)
        except PinStoreError as exc:
            self._problem(f"cannot read the pins (the last snapshot stays in use for up to "
                          f"{MAX_SNAPSHOT_AGE:g} s, then nothing is approved): {exc}")
            return
        self._last_problem = None
        self._install(records, signature)

    async def flush(self) -> None:
        """Write the first-use pins recorded so far (kept for the next try on failure)."""
        if not self._pending:
            return
        batch = dict(self._pending)
        try:
            await asyncio.to_thread(self.store.approve, batch.values(), replace=False)
        except PinStoreError as exc:
            self._problem(f"cannot record first-use pins (will retry): {exc}")
            return
        for key, record in batch.items():
            if self._pending.get(key) is record:
                del self._pending[key]

    def _problem(self, message: str) -> None:
        # A store that stays broken would repeat the same line every few seconds.
        if message != self._last_problem:
            log.warning("%s", message)
            self._last_problem = message

    async def _keep_fresh(self) -> None:
        await self.flush()
        await self.reload()

    # -- the check -------------------------------------------------------------------------

    def check(self, kind: PinKind, server_id: str, name: str,
              definition: Mapping[str, Any]) -> PinVerdict:
        """The verdict on one live definition (memory only; see the module doc)."""
        if kind not in PIN_KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(PIN_KINDS)}")
        if not isinstance(server_id, str) or not server_id:
            raise ValueError("server_id must be a non-empty string (see server_identity)")
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, not {type(name).__name__}")
        if self._refresher.stale:
            return PinVerdict("unverifiable", None, reason="the pin store cannot be read, so no "
                              "pin can be trusted; see the gateway's log")
        key: _Key = (server_id, kind, name)
        try:
            fingerprint = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            fingerprint = None
        if fingerprint is not None:
            cached = self._cache.get((key, fingerprint))
            if cached is not None and cached[0] == self._generation:
                return cached[1]
        verdict = self._decide(key, definition, fingerprint)
        if fingerprint is not None and not verdict.recorded:
            if len(self._cache) >= MAX_CACHED_VERDICTS:
                self._cache.clear()
            self._cache[(key, fingerprint)] = (self._generation, verdict)
        return verdict

    def _decide(self, key: _Key, definition: Mapping[str, Any],
                fingerprint: bytes | None) -> PinVerdict:
        server_id, kind, name = key
        what = f"{kind} {name!r} of upstream {server_id.partition(':')[0]!r}"
        try:
            if fingerprint is None:
                raise CanonicalError("it is not a JSON object of portable values (integers "
                                     "beyond 64 bits, non-string keys)")
            found = item_name(kind, definition)  # type: ignore[arg-type]
            if found != name:
                raise CanonicalError(f"the definition names itself {found!r}, not {name!r}")
            live = digest(kind, server_id, definition)  # type: ignore[arg-type]
        except CanonicalError as exc:
            return PinVerdict("unverifiable", None, reason=f"the {what} cannot be pinned: {exc}")
        configured = self.configured.get(key, {})
        if live.raw in configured:
            return PinVerdict("approved", live, configured[live.raw],
                              reason=f"the {what} matches a digest in the configuration")
        pinned = self._snapshot.by_key.get(key)
        if pinned is not None:
            if pinned.revoked:
                return self._against(pinned, "revoked", live, definition,
                                     f"the approval of the {what} was revoked")
            if pinned.digest.raw == live.raw:
                return PinVerdict("approved", live, pinned,
                                  reason=f"the {what} is the approved definition")
            return self._against(pinned, "changed", live, definition,
                                 f"the {what} changed since it was approved")
        if configured:
            return PinVerdict("changed", live, next(iter(configured.values())),
                              reason=f"the {what} is not the definition the configuration "
                                     "approves (pins.approved lists other digests)")
        original = self._snapshot.by_body.get((server_id, kind, live.body))
        if original is not None:
            return self._against(original, "renamed", live, definition,
                                 f"the {what} is the pinned {kind} {original.name!r} under "
                                 "another name")
        if self.mode == "tofu" and len(self._pending) < MAX_PENDING:
            return self._record(key, live, orjson.loads(fingerprint), what)
        return PinVerdict("new", live, reason=f"the {what} has not been approved yet")

    def _against(self, pinned: PinRecord, status: PinStatus, live: PinDigest,
                 definition: Mapping[str, Any], reason: str) -> PinVerdict:
        # Equal once normalised, different as sent: only invisible characters changed.
        hidden_only = status == "changed" and pinned.digest.normalized == live.normalized
        if hidden_only:
            reason += " (only invisible characters differ: a hidden-text edit)"
        return PinVerdict(status, live, pinned,
                          tuple(diff_definitions(pinned.definition, definition)),
                          reason, hidden_only=hidden_only)

    def _record(self, key: _Key, live: PinDigest, definition: dict[str, Any],
                what: str) -> PinVerdict:
        server_id, kind, name = key
        record = PinRecord(server_id, kind, name, live, definition,  # type: ignore[arg-type]
                           TOFU_APPROVER, time.time(), "tofu")
        self._pending[key] = record
        self._snapshot.add(record)
        self._changed()
        log.info("pinned the %s on first use (sha256 %s)", what, live.raw)
        return PinVerdict("approved", live, record, recorded=True,
                          reason=f"the {what} was new and is now pinned (trust on first use)")
