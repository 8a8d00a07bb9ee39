"""The gateway's upstreams: one long-lived, supervised connection per configured MCP server.

`Upstream` keeps a `ClientConnection` to one server (a stdio child process or a Streamable
HTTP endpoint) open for the gateway's lifetime. A supervisor task connects (each attempt
bounded by `connect_timeout`), watches the connection, and when it ends (the child died, the
HTTP server went away) reconnects after a jittered backoff. `request()` is the per-call path:
it refuses fast when the upstream is down or its circuit breaker is open, turns local
failures into typed `UpstreamError`s, and lets the upstream's own JSON-RPC errors through
unchanged. `UpstreamPool` starts, finds, reports on and closes all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal

from bastion.config import UpstreamConfig
from bastion.gateway.credentials import upstream_env, upstream_headers
from bastion.gateway.errors import UpstreamFailed, UpstreamTimeout, UpstreamUnavailable
from bastion.gateway.resilience import Backoff, CircuitBreaker
from bastion.protocol.errors import MCPError
from bastion.session.client_side import ClientConnection, ClientHandlers, ServerDescription
from bastion.session.core import ProgressCallback
from bastion.session.errors import PeerClosed, RequestTimeout, SessionError
from bastion.transport.base import Channel
from bastion.transport.http.client import StreamableHTTPChannel
from bastion.transport.http.wire import HTTPTimeouts, HTTPTransportError, http_failure
from bastion.transport.stdio import StdioProcess

logger = logging.getLogger("bastion.gateway.upstream")

UpstreamState = Literal["starting", "up", "down", "stopped"]
ConnectedHook = Callable[["Upstream"], Awaitable[None]]
DisconnectedHook = Callable[["Upstream"], None]

#: How long `start()` waits past the first attempt's deadline for the attempt to wind down.
_START_MARGIN = 1.0
#: The HTTP read timeout exceeds the call timeout by this much, so the session's own timer
#: (which cancels the request upstream) fires first.
_HTTP_READ_MARGIN = 5.0
#: How often a task that swallowed its cancellation is cancelled again.
_CANCEL_RETRY = 1.0
#: Upper bound of the `server/discover` probe; a legacy server that ignores it costs this.
_MAX_PROBE_TIMEOUT = 5.0


class Upstream:
    """One MCP server behind the gateway, kept connected by a supervisor task."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        handlers: ClientHandlers,
        client_info: dict[str, Any] | None = None,
        on_connected: ConnectedHook | None = None,
        on_disconnected: DisconnectedHook | None = None,
        backoff: Backoff | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not config.name:
            raise ValueError("an upstream needs a name (UpstreamConfig.name is empty)")
        self.config = config
        self.name = config.name
        self.handlers = handlers
        self.client_info = client_info
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.backoff = backoff if backoff is not None else Backoff()
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.state: UpstreamState = "starting"
        self.last_error: str | None = None
        #: Connection attempts after the first one (reconnections and retries after failures).
        self.restarts = 0
        self.in_flight = 0
        self.connection: ClientConnection | None = None
        self._process: StdioProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._hook: asyncio.Task[None] | None = None
        self._first_deadline = 0.0
        self._first_attempt = asyncio.Event()
        # A call that saw an HTTP connection break says so here (stdio sessions just close).
        self._lost = asyncio.Event()
        self._lost_reason: str | None = None
        #: Resolved (and replaced) each time a new connection is up: retries wait on it.
        self._reconnected: asyncio.Future[None] | None = None
        self._retry_at: float | None = None

    # -- what it is now -------------------------------------------------------------------

    @property
    def description(self) -> ServerDescription | None:
        """What the server of the current connection said about itself (None when down)."""
        connection = self.connection
        return connection.server if connection is not None else None

    @property
    def session_id(self) -> str | None:
        """The legacy `Mcp-Session-Id` of an HTTP upstream's current session, else None."""
        connection = self.connection
        if connection is None:
            return None
        channel = connection.session.channel
        return channel.session_id if isinstance(channel, StreamableHTTPChannel) else None

    @property
    def pid(self) -> int | None:
        """The process id of a stdio upstream's current child."""
        return self._process.pid if self._process is not None else None

    def health(self) -> dict[str, Any]:
        description = self.description
        return {
            "name": self.name,
            "transport": self.config.transport,
            "state": self.state,
            "era": description.era.value if description is not None else None,
            "version": description.version if description is not None else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "breaker": self.breaker.state,
            "in_flight": self.in_flight,
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor and wait (about `connect_timeout`) for its first attempt.

        Never raises for an upstream that fails: it stays "down" with `last_error`, and the
        supervisor keeps trying. Calling it again waits for the same first attempt.
        """
        if self.state == "stopped":
            raise RuntimeError(f"upstream {self.name!r} was closed; create a new Upstream")
        loop = asyncio.get_running_loop()
        if self._supervisor is None:
            self._first_deadline = loop.time() + self.config.connect_timeout
            self._reconnected = loop.create_future()
            self._supervisor = asyncio.create_task(
                self._supervise(self._first_deadline), name=f"upstream:{self.name}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._first_deadline + _START_MARGIN):
                await self._first_attempt.wait()

    async def aclose(self) -> None:
        """Stop the supervisor, close the connection, stop the child (shutdown ladder)."""
        if self.state == "stopped":
            return
        was_up = self.state == "up"
        self.state = "stopped"
        supervisor, self._supervisor = self._supervisor, None
        for task in (supervisor, self._hook):
            if task is not None:
                await _cancel_and_wait(task)
        await self._teardown()
        self._first_attempt.set()
        self._announce_reconnected()  # waiting retries wake up and see "stopped"
        if was_up:
            self._call_on_disconnected()
        logger.info("upstream %r stopped", self.name)

    # -- calls ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        safe_to_retry: bool = False,
    ) -> dict[str, Any]:
        """Send `method` upstream and return its result.

        Raises `UpstreamUnavailable` (down, or breaker open), `UpstreamTimeout` (no answer
        within `timeout`, default the upstream's `timeout`; the request is cancelled
        upstream) or `UpstreamFailed` (the connection broke); the upstream's own JSON-RPC
        errors pass through as they are. With `safe_to_retry`, a call whose connection broke
        waits for the next connection (at most `connect_timeout`) and is sent once more.
        """
        connection = self.connection
        try:
            return await self._call(method, params, timeout, on_progress)
        except UpstreamFailed as exc:
            if not (safe_to_retry and exc.connection_lost):
                raise
            failed = exc
        await self._await_reconnection(connection, failed)
        return await self._call(method, params, timeout, on_progress)

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        connection = self.connection
        if self.state != "up" or connection is None:
            raise self._unavailable()
        breaker = self.breaker
        if not breaker.allow():
            raise UpstreamUnavailable(
                self.name,
                f"its circuit breaker is open after {breaker.failures} failures in a row "
                f"(last: {self.last_error or 'failed calls'})",
                breaker.retry_after,
            )
        self.in_flight += 1
        try:
            result = await connection.request(method, params, timeout=timeout,
                                              on_progress=on_progress)
        except MCPError as exc:
            failure = http_failure(exc)
            if failure is None:
                breaker.record_success()  # the upstream answered: it is alive
                raise
            breaker.record_failure()
            # No HTTP status: the server could not be reached or the exchange broke off.
            lost = "status" not in failure
            if lost:
                self._connection_lost(connection, exc.message)
            raise UpstreamFailed(self.name, method, exc.message, connection_lost=lost) from exc
        except RequestTimeout as exc:
            breaker.record_failure()
            raise UpstreamTimeout(self.name, method, exc.seconds) from exc
        except PeerClosed as exc:
            breaker.record_failure()
            reason = connection.session.close_reason or str(exc)
            raise UpstreamFailed(self.name, method, reason, connection_lost=True) from exc
        except SessionError as exc:
            breaker.release()  # a size limit (MessageTooLarge), not a sign of ill health
            raise UpstreamFailed(self.name, method, str(exc)) from exc
        except asyncio.CancelledError:
            breaker.release()
            raise
        finally:
            self.in_flight -= 1
        breaker.record_success()
        return result

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification upstream (`UpstreamUnavailable` when down)."""
        connection = self.connection
        if self.state != "up" or connection is None:
            raise self._unavailable()
        try:
            await connection.notify(method, params)
        except PeerClosed as exc:
            reason = connection.session.close_reason or str(exc)
            raise UpstreamFailed(self.name, method, reason, connection_lost=True) from exc
        except (HTTPTransportError, SessionError) as exc:
            raise UpstreamFailed(self.name, method, str(exc)) from exc

    def _unavailable(self) -> UpstreamUnavailable:
        if self.state == "stopped":
            return UpstreamUnavailable(self.name, "it has been shut down")
        if self.state == "starting":
            return UpstreamUnavailable(self.name, "it is still starting")
        reason = f"not connected ({self.last_error or 'connection lost'})"
        if self.breaker.state == "open":
            reason += (f"; circuit breaker open after {self.breaker.failures} failures "
                       "in a row")
        retry_after = None
        if self._retry_at is not None:
            retry_after = self._retry_at - asyncio.get_running_loop().time()
        return UpstreamUnavailable(self.name, reason + "; reconnecting", retry_after)

    def _connection_lost(self, connection: ClientConnection, reason: str) -> None:
        """A call found the connection broken: wake the supervisor (if it is still current)."""
        if connection is self.connection and not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _await_reconnection(self, old: ClientConnection | None,
                                  failed: UpstreamFailed) -> None:
        """Wait until a connection other than `old` is up; re-raise `failed` if none comes."""
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                while self.state != "up" or self.connection is old:
                    if self.state == "stopped" or self._reconnected is None:
                        raise failed
                    await asyncio.shield(self._reconnected)
        except TimeoutError:
            raise failed from None

    # -- the supervisor -------------------------------------------------------------------

    async def _supervise(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.state != "stopped":
            try:
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._connect()
                except Exception as exc:  # every way an attempt fails ends the same way
                    self._attempt_failed(self._describe_failure(exc))
                else:
                    await self._serve_connection()
                await self._teardown()
            except Exception:  # a bug here must not end supervision
                logger.exception("upstream %r: supervisor step failed", self.name)
            if self.state == "stopped":
                return  # closing swallowed our cancellation somewhere in the teardown
            delay = self.backoff.next_delay()
            self._retry_at = loop.time() + delay
            await asyncio.sleep(delay)
            self._retry_at = None
            self.restarts += 1
            deadline = loop.time() + self.config.connect_timeout

    async def _connect(self) -> None:
        config = self.config
        describe_close: Callable[[], str] | None = None
        if config.transport == "stdio":
            assert config.command is not None
            process = await StdioProcess.start(
                [config.command, *config.args], env=upstream_env(config), cwd=config.cwd,
                name=self.name)
            self._process = process
            channel: Channel = process.channel
            describe_close = process.describe_exit
        else:
            assert config.url is not None
            channel = StreamableHTTPChannel(
                config.url, headers=upstream_headers(config),
                timeouts=HTTPTimeouts(connect=config.connect_timeout,
                                      read=config.timeout + _HTTP_READ_MARGIN),
            )
        self._lost.clear()
        self._lost_reason = None
        self.connection = ClientConnection(
            channel,
            handlers=self.handlers,
            client_info=self.client_info,
            mode=config.protocol,
            probe_timeout=min(_MAX_PROBE_TIMEOUT, config.connect_timeout / 2),
            name=self.name,
            describe_close=describe_close,
            default_timeout=config.timeout,
        )
        await self.connection.connect()

    def _describe_failure(self, exc: Exception) -> str:
        """Why a connection attempt failed, in a sentence an operator can act on."""
        connection, process = self.connection, self._process
        if isinstance(exc, TimeoutError):
            reason = (f"no answer to the MCP handshake within "
                      f"{self.config.connect_timeout:g} s")
            if process is not None and process.returncode is not None:
                reason += f" ({process.describe_exit()})"
            elif process is not None and process.stderr_tail:
                reason += f"; last stderr: {process.stderr_tail[-1]}"
        elif isinstance(exc, PeerClosed) and connection is not None:
            reason = connection.session.close_reason or str(exc)
        elif isinstance(exc, MCPError):
            reason = f"the handshake failed: {exc.message}"
        else:
            reason = str(exc) or type(exc).__name__
        channel = connection.session.channel if connection is not None else None
        if isinstance(channel, StreamableHTTPChannel) and channel.last_failure is not None:
            # "Does not speak the modern protocol" may hide a refused connection or an HTTP 401.
            detail = str(channel.last_failure)
            if detail not in reason:
                reason += f" (the server answered: {detail})"
        garbage = connection.session.protocol_errors if connection is not None else 0
        if garbage:
            reason += (f"; it sent {garbage} message(s) that are not JSON-RPC (a stdio server "
                       "must write only MCP messages to stdout)")
        return reason

    def _attempt_failed(self, reason: str) -> None:
        if self.state == "stopped":
            return
        self.breaker.record_failure()
        repeated = self.state == "down" and reason == self.last_error
        self.last_error = reason
        self.state = "down"
        # A crash loop would repeat the same line forever: say it once.
        logger.log(logging.DEBUG if repeated else logging.WARNING,
                   "upstream %r: connection failed: %s", self.name, reason)
        self._first_attempt.set()

    async def _serve_connection(self) -> None:
        """The connection is up: announce it, then wait until it ends."""
        connection = self.connection
        assert connection is not None and connection.server is not None
        server = connection.server
        if self.state == "stopped":
            return
        self.state = "up"
        self.backoff.reset()
        self.breaker.end_cooldown()
        logger.info("upstream %r up: %s era, version %s, server %s", self.name,
                    server.era.value, server.version,
                    (server.server_info or {}).get("name", "(unnamed)"))
        self._announce_reconnected()
        self._hook = asyncio.create_task(self._run_on_connected(),
                                         name=f"upstream:{self.name}:on_connected")
        closed = asyncio.create_task(connection.session.wait_closed())
        lost = asyncio.create_task(self._lost.wait())
        try:
            await asyncio.wait({closed, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            lost.cancel()
        if self.state == "stopped":
            return
        reason = (connection.session.close_reason if connection.session.closed
                  else self._lost_reason) or "the connection ended"
        if self._hook is not None:
            await _cancel_and_wait(self._hook)
        self.state = "down"
        self.last_error = reason
        logger.warning("upstream %r down: %s; reconnecting", self.name, reason)
        self._call_on_disconnected()

    async def _run_on_connected(self) -> None:
        try:
            if self.on_connected is not None:
                await self.on_connected(self)
        except Exception:
            logger.exception("upstream %r: the on_connected callback failed", self.name)
        finally:
            self._first_attempt.set()

    def _call_on_disconnected(self) -> None:
        if self.on_disconnected is None:
            return
        try:
            self.on_disconnected(self)
        except Exception:
            logger.exception("upstream %r: the on_disconnected callback failed", self.name)

    def _announce_reconnected(self) -> None:
        future = self._reconnected
        if future is not None and not future.done():
            if self.state != "stopped":
                self._reconnected = asyncio.get_running_loop().create_future()
            future.set_result(None)

    async def _teardown(self) -> None:
        """Close the connection and stop the child; references go only once they are done, so
        a teardown cancelled half-way is finished by the next one."""
        if self.connection is not None:
            await self.connection.aclose()
            self.connection = None
        if self._process is not None:
            await self._process.stop()
            self._process = None


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` until it ends: code that suppresses CancelledError around an inner await
    (closing sessions and processes does) can swallow one cancellation."""
    while not task.done() and task is not asyncio.current_task():
        task.cancel()
        await asyncio.wait({task}, timeout=_CANCEL_RETRY)


class UpstreamPool:
    """All configured upstreams, in configuration order."""

    def __init__(
        self,
        configs: Iterable[UpstreamConfig],
        *,
        handlers_for: Callable[[str], ClientHandlers],
        on_connected: ConnectedHook | None = None,
        on_disconnected: DisconnectedHook | None = None,
        client_info: dict[str, Any] | None = None,
    ) -> None:
        self._upstreams: dict[str, Upstream] = {}
        for config in configs:
            if config.name in self._upstreams:
                raise ValueError(f"two upstreams are named {config.name!r}; names must be "
                                 "unique (they prefix tool names and label logs)")
            self._upstreams[config.name] = Upstream(
                config, handlers=handlers_for(config.name), client_info=client_info,
                on_connected=on_connected, on_disconnected=on_disconnected)

    async def start(self) -> None:
        """Start every upstream in parallel; returns within about the largest connect_timeout."""
        await asyncio.gather(*(upstream.start() for upstream in self))

    def get(self, name: str) -> Upstream | None:
        return self._upstreams.get(name)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._upstreams.values())

    def __len__(self) -> int:
        return len(self._upstreams)

    def __contains__(self, name: object) -> bool:
        return name in self._upstreams

    async def aclose(self) -> None:
        """Close every upstream in parallel (one failing to close does not stop the others)."""
        results = await asyncio.gather(*(upstream.aclose() for upstream in self),
                                       return_exceptions=True)
        for upstream, result in zip(self, results, strict=True):
            if isinstance(result, Exception):
                logger.error("upstream %r did not close cleanly: %r", upstream.name, result)

    def health(self) -> list[dict[str, Any]]:
        return [upstream.health() for upstream in self]


__all__ = ["Upstream", "UpstreamPool", "UpstreamState"]
