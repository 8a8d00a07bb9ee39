"""`AuditLog`: takes audit records off the hot path and writes them, chained and signed.

`log()` only checks and serialises the record and puts it on a bounded `asyncio.Queue`;
when the queue is full the policy decides: `block` waits for room, `drop` counts the record
as lost, logs an alert (at most every 10 s) and the writer later chains an
`audit.dropped` record with the count, so the loss itself is on the trail. One writer task
drains the queue in batches (`batch_size` records, or what came in `flush_interval`
seconds), links them (`bastion.audit.chain`) and inserts each batch in one transaction into
its store (`AuditStore`: SQLite or PostgreSQL); a signed checkpoint follows every
`checkpoint_every` records, every `checkpoint_interval` seconds with new records, and at
`aclose()`. `log(record, committed=True)` ("no audit, no call") returns only once the record
is in the store: the writer commits it at once, ahead of the batch it is gathering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.chain import AuditRecordError, canonical, genesis, link
from bastion.audit.signing import Checkpoint
from bastion.audit.store import AuditStore, Row, SQLiteStore

logger = logging.getLogger("bastion.audit")
FullPolicy = Literal["block", "drop"]
#: A record larger than this (canonical JSON) is refused: the trail is not a blob store.
MAX_RECORD_BYTES = 64 * 1024
_ALERT_INTERVAL = 10.0
_STOP = object()


@dataclass(slots=True)
class _Committed:
    """A record whose caller waits until it is in the store (`log(..., committed=True)`)."""

    data: bytes
    done: asyncio.Future[None]


class AuditClosedError(RuntimeError):
    """`log()` after `aclose()`, before `start()`, or after the writer failed."""


def body_prefix(instance: str) -> bytes:
    """The fixed start of every body of `instance` (`{"instance":…,"record":`)."""
    return b'{"instance":' + orjson.dumps(instance) + b',"record":'


class AuditLog:
    """A chain of audit records for one gateway instance in one store.

    `store` is an `AuditStore`, or the path of a SQLite file."""

    def __init__(self, store: AuditStore | Path, key: Ed25519PrivateKey, instance: str, *,
                 queue_size: int = 10_000, full_policy: FullPolicy = "block",
                 batch_size: int = 1_000, flush_interval: float = 0.05,
                 checkpoint_every: int = 10_000, checkpoint_interval: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not instance or len(instance) > 256:
            raise ValueError("an audit instance id must be 1 to 256 characters")
        if full_policy not in ("block", "drop"):
            raise ValueError(f"full_policy must be block or drop, not {full_policy!r}")
        if min(queue_size, batch_size, checkpoint_every) < 1:
            raise ValueError("queue_size, batch_size and checkpoint_every must be positive")
        if flush_interval <= 0 or checkpoint_interval <= 0:
            raise ValueError("flush_interval and checkpoint_interval must be positive")
        self.store: AuditStore = SQLiteStore(store) if isinstance(store, Path) else store
        self.instance = instance
        self._key = key
        self._public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
        self._policy = full_policy
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._clock = clock
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._prefix = body_prefix(instance)
        self._opened = False
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._closing = False
        self._seq = 0
        self._head = genesis(instance)
        self._checkpointed = 0
        self._last_checkpoint_at = 0.0
        self._dropped = 0
        self._dropped_noted = 0
        self._last_alert = float("-inf")

    @property
    def dropped(self) -> int:
        """Records lost to a full queue (policy `drop`) since start."""
        return self._dropped

    @property
    def running(self) -> bool:
        """Whether records are accepted: started, not closed, the writer alive."""
        return self._task is not None and not self._closing and self._failure is None

    @property
    def queue_depth(self) -> int:
        """Records waiting for the writer (for metrics)."""
        return self._queue.qsize()

    @property
    def seq(self) -> int:
        """The seq of the last record written."""
        return self._seq

    async def start(self) -> None:
        """Open the store, continue the instance's chain, start the writer."""
        if self._task is not None or self._closing or self._opened:
            raise AuditClosedError("this audit log was already started")
        self._opened = True
        await self.store.open()
        try:
            last = await self.store.head(self.instance)
            if last is not None:
                self._seq, self._head = last
            self._checkpointed = await self.store.last_checkpoint_seq(self.instance)
        except BaseException:
            await self.store.close()
            raise
        self._last_checkpoint_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"audit-writer-{self.instance}")

    async def log(self, record: Mapping[str, Any], *, committed: bool = False) -> bool:
        """Queue `record` (a JSON object; `time` added if absent); False if it was dropped.

        With `committed`, wait until the record is in the store: the writer takes it ahead
        of the batch it is gathering and commits it at once; it is never dropped.
        AuditRecordError for a record that is not a JSON object or is too large;
        AuditClosedError when the log is not running or the record could not be committed
        (fail closed: the caller decides)."""
        if self._task is None or self._closing or self._failure is not None:
            raise AuditClosedError("the audit log is not running"
                                   + (f": {self._failure}" if self._failure else ""))
        if not isinstance(record, Mapping):
            raise AuditRecordError(f"an audit record must be a JSON object, "
                                   f"not {type(record).__name__}")
        if "time" not in record:
            record = {**record, "time": self._clock()}
        data = canonical(record)
        if len(data) > MAX_RECORD_BYTES:
            raise AuditRecordError(f"an audit record is {len(data)} bytes, more than "
                                   f"{MAX_RECORD_BYTES}; log digests, not bodies")
        if committed:
            item = _Committed(data, asyncio.get_running_loop().create_future())
            await self._put(item)
            await self._until(item.done)
            return True
        try:
            self._queue.put_nowait(data)
            return True
        except asyncio.QueueFull:
            if self._policy == "drop":
                self._note_drop()
                return False
        await self._until(self._queue.put(data))
        return True

    async def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            await self._until(self._queue.put(item))

    async def _until(self, waited: Awaitable[Any]) -> None:
        # Wait for room or a commit, but never for a writer that has died.
        task = asyncio.ensure_future(waited)
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait((task, failed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled() and task.exception() is None:
            return
        if task.done() and not task.cancelled():
            raise AuditClosedError(f"the audit record was not committed: {task.exception()}")
        raise AuditClosedError(f"the audit writer failed: {self._failure}")

    def _note_drop(self) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_alert >= _ALERT_INTERVAL:
            self._last_alert = now
            logger.error("audit queue full: %d audit record(s) of instance %s dropped so far; "
                         "raise audit.queue_size or use full_policy: block",
                         self._dropped, self.instance)

    async def aclose(self) -> None:
        """Write everything queued, sign a final checkpoint, close the store."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            if not self._task.done():
                await self._queue.put(_STOP)
            with contextlib.suppress(Exception):
                await self._task
        if self._opened:
            await self.store.close()
        if self._failure is not None:
            raise AuditClosedError(f"the audit writer failed: {self._failure}")

    async def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch, stopping = await self._collect()
                due = stopping or self._checkpoint_due(len(batch))
                if batch or self._dropped != self._dropped_noted or due:
                    await self._write(batch, due)
        except BaseException as exc:
            self._failure = exc
            self._failed.set()
            logger.error("the audit writer of instance %s failed: %s", self.instance, exc)
            raise

    async def _collect(self) -> tuple[list[bytes], bool]:
        """The next batch, and whether the stop marker was met. Committed records met on
        the way are written at once, ahead of the batch being gathered."""
        try:
            item = await asyncio.wait_for(self._queue.get(), self._checkpoint_interval)
        except TimeoutError:
            return [], False
        batch: list[bytes] = []
        deadline: float | None = None
        while True:
            if item is _STOP:
                return batch, True
            if isinstance(item, _Committed):
                await self._commit(item)
            else:
                batch.append(item)
                if len(batch) >= self._batch_size:
                    return batch, False
                if deadline is None:
                    deadline = time.monotonic() + self._flush_interval
            while self._queue.empty():
                if deadline is None:
                    return batch, False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, False
                await asyncio.sleep(min(remaining, 0.005))
            item = self._queue.get_nowait()

    async def _commit(self, item: _Committed) -> None:
        try:
            await self._write([item.data], self._checkpoint_due(1))
        except BaseException as exc:
            if not item.done.done():
                item.done.set_exception(AuditClosedError(f"the audit writer failed: {exc}"))
            raise
        if not item.done.done():
            item.done.set_result(None)

    def _checkpoint_due(self, pending: int) -> bool:
        unsigned = self._seq + pending - self._checkpointed
        return unsigned > 0 and (
            unsigned >= self._checkpoint_every
            or time.monotonic() - self._last_checkpoint_at >= self._checkpoint_interval)

    async def _write(self, batch: list[bytes], checkpoint: bool) -> None:
        if self._dropped != self._dropped_noted:
            lost = self._dropped - self._dropped_noted
            self._dropped_noted = self._dropped
            batch.append(canonical({"event": "audit.dropped", "count": lost,
                                    "time": self._clock()}))
        rows, seq, head = self._chain(batch)
        signed = None
        if checkpoint and seq > self._checkpointed:
            point = Checkpoint(self.instance, seq, head, seq, self._clock())
            signed = (point, point.sign(self._key), self._public)
        await self.store.write_batch(rows, signed)
        self._seq, self._head = seq, head
        if signed is not None:
            self._checkpointed = seq
            self._last_checkpoint_at = time.monotonic()

    def _chain(self, batch: list[bytes]) -> tuple[list[Row], int, bytes]:
        # Keys sorted: "instance" < "record" < "seq", so the body stays canonical JSON.
        rows = []
        seq, prev, prefix, instance = self._seq, self._head, self._prefix, self.instance
        for data in batch:
            seq += 1
            body = b"".join((prefix, data, b',"seq":', str(seq).encode(), b"}"))
            digest = link(prev, body)
            rows.append((instance, seq, digest, prev, body))
            prev = digest
        return rows, seq, prev
