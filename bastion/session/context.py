"""The context handed to the handler of one incoming request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.protocol import messages
from bastion.protocol.jsonrpc import Notification, RequestId


class NotificationSink(Protocol):
    """Where a request's notifications go: a stdio session, or one HTTP response stream."""

    async def send_notification(self, notification: Notification) -> None:
        ...


@dataclass(slots=True)
class IncomingRequest:
    """One request being served: its id, method, params and a way to report progress."""

    session: NotificationSink
    id: RequestId
    method: str
    params: dict[str, Any]
    progress_token: str | int | None = None
    #: Who sent it (a `bastion.protocol.principal.Principal`), when the transport
    #: authenticated the request; None on stdio and unauthenticated endpoints.
    principal: Any = None
    _last_progress: float | None = field(default=None, repr=False)

    async def notify(self, notification: Notification) -> None:
        """Send a notification related to this request (progress, log messages)."""
        await self.session.send_notification(notification)

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send progress if the requester asked for it; values must increase."""
        if self.progress_token is None:
            return
        if self._last_progress is not None and progress <= self._last_progress:
            raise ValueError(
                f"progress must increase: {progress} after {self._last_progress}"
            )
        self._last_progress = progress
        await self.notify(messages.progress(self.progress_token, progress, total, message))

    @property
    def cancelled(self) -> bool:
        task = asyncio.current_task()
        return bool(task and task.cancelling())
