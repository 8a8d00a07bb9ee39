"""Keeping an in-memory snapshot of a store fresh, and knowing when it is too old to trust.

The API key verifier and the pin checker answer from memory on the hot path and reread
their SQLite stores in the background. Both need the same three things: a task that runs a
refresh step every few seconds, the moment the snapshot was last known good, and a verdict
on whether it is now too old to use (then they fail closed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class SnapshotRefresher:
    """Runs `step` every `interval` seconds in a background task (see the module doc)."""

    def __init__(self, step: Callable[[], Awaitable[None]], interval: float, *, max_age: float,
                 name: str) -> None:
        self.step = step
        self.interval = interval
        self.max_age = max_age
        self.name = name
        #: `time.monotonic()` when the snapshot was last read (or confirmed unchanged).
        self.loaded_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def mark_fresh(self) -> None:
        self.loaded_at = time.monotonic()

    @property
    def stale(self) -> bool:
        """Never loaded, or not confirmed for longer than `max_age`: do not trust it."""
        return self.loaded_at is None or time.monotonic() - self.loaded_at > self.max_age

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.step()
