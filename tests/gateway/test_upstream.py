"""Upstreams against real peers: stdio child processes and a Streamable HTTP server process.

Peers: `bastion.testing.everything` (both eras, stdio and HTTP) and the scripts in `peers/`
(`tool_server.py` with echo/pid/slow_pid/hang tools, `garbage.py`, `crashy.py`). Timeouts
and backoffs are small so that crashes, restarts and breakers play out in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.config import UpstreamConfig
from bastion.gateway.errors import (
    UpstreamError,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bastion.gateway.resilience import Backoff, CircuitBreaker
from bastion.gateway.upstream import Upstream, UpstreamPool
from bastion.protocol.errors import INTERNAL_ERROR, MCPError, MethodNotFound
from bastion.session.client_side import ClientHandlers
from tests.live_server import free_port

PEERS = Path(__file__).parent / "peers"
EVERYTHING = ["-m", "bastion.testing.everything"]
TOOL_SERVER = [str(PEERS / "tool_server.py")]


def stdio(name: str, args: list[str], **options: Any) -> UpstreamConfig:
    options.setdefault("connect_timeout", 10.0)
    options.setdefault("timeout", 10.0)
    return UpstreamConfig(name=name, command=sys.executable, args=args, **options)


def fast_backoff() -> Backoff:
    return Backoff(base=0.05, factor=2.0, cap=0.2)


def text_of(result: dict[str, Any]) -> str:
    return result["content"][0]["text"]


async def call(upstream: Upstream, tool: str, **arguments: Any) -> str:
    return text_of(await upstream.request("tools/call", {"name": tool, "arguments": arguments}))


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Upstream]]:
    """Builds upstreams (fast backoff unless given) and closes them all at the end."""
    made: list[Upstream] = []

    def build(config: UpstreamConfig, **options: Any) -> Upstream:
        options.setdefault("backoff", fast_backoff())
        options.setdefault("handlers", ClientHandlers())
        upstream = Upstream(config, **options)
        made.append(upstream)
        return upstream

    yield build
    await asyncio.gather(*(upstream.aclose() for upstream in made))


# -- a healthy upstream ------------------------------------------------------------------


@pytest.mark.parametrize("protocol, era", [("auto", "modern"), ("legacy", "legacy")])
async def test_stdio_upstream_serves_calls_and_reports_health(make, protocol, era):
    upstream = make(stdio("every", EVERYTHING, protocol=protocol))
    await upstream.start()
    assert await call(upstream, "test_simple_text") == \
        "This is a simple text response for testing."
    health = upstream.health()
    assert health["state"] == "up"
    assert health["era"] == era
    assert health["version"] == upstream.description.version
    assert health["breaker"] == "closed"
    assert health["in_flight"] == 0
    assert health["restarts"] == 0
    assert upstream.description.server_info["name"] == "bastion-everything"
    assert upstream.pid is not None
    assert upstream.session_id is None  # stdio has no HTTP session
    await upstream.notify("notifications/roots/list_changed")


async def test_upstream_errors_pass_through_unchanged_and_do_not_trip_the_breaker(make):
    breaker = CircuitBreaker(failure_threshold=1)
    upstream = make(stdio("tools", TOOL_SERVER), breaker=breaker)
    await upstream.start()
    with pytest.raises(MethodNotFound) as caught:
        await upstream.request("no/such/method")
    assert not isinstance(caught.value, UpstreamError)  # the server's own error, as is
    with pytest.raises(MCPError) as unknown_tool:
        await upstream.request("tools/call", {"name": "nope", "arguments": {}})
    assert not isinstance(unknown_tool.value, UpstreamError)
    assert "nope" in unknown_tool.value.message
    assert breaker.state == "closed"
    assert await call(upstream, "echo", text="still fine") == "still fine"


async def test_on_connected_errors_are_logged_not_fatal(make, caplog):
    async def broken_hook(upstream: Upstream) -> None:
        raise RuntimeError("catalog refresh exploded")

    upstream = make(stdio("hooked", TOOL_SERVER), on_connected=broken_hook)
    await upstream.start()
    assert upstream.state == "up"
    assert "on_connected callback failed" in caplog.text
    assert await call(upstream, "echo", text="ok") == "ok"


# -- crashes and restarts ----------------------------------------------------------------


async def test_killed_mid_call_fails_the_call_and_the_supervisor_restarts_it(make):
    events: list[tuple[str, int | None]] = []

    async def connected(upstream: Upstream) -> None:
        events.append(("connected", upstream.pid))

    def disconnected(upstream: Upstream) -> None:
        events.append(("disconnected", upstream.state == "down"))

    upstream = make(stdio("victim", TOOL_SERVER), on_connected=connected,
                    on_disconnected=disconnected)
    await upstream.start()
    first_pid = upstream.pid
    pending = asyncio.create_task(call(upstream, "slow_pid", delay=5))
    await wait_until(lambda: upstream.in_flight == 1)
    await asyncio.sleep(0.2)  # the request reaches the child
    os.killpg(first_pid, signal.SIGKILL)
    with pytest.raises(UpstreamFailed) as caught:
        await pending
    error = caught.value
    assert "'victim'" in error.message
    assert "killed by signal 9" in error.message
    assert error.data["upstream"] == "victim"
    assert error.code == INTERNAL_ERROR
    assert error.connection_lost
    await wait_until(lambda: upstream.state == "up" and upstream.restarts == 1)
    assert upstream.pid != first_pid
    assert await call(upstream, "pid") == str(upstream.pid)
    assert "killed by signal 9" in upstream.last_error
    assert events[0] == ("connected", first_pid)
    assert events[1] == ("disconnected", True)
    assert events[2] == ("connected", upstream.pid)
    assert upstream.in_flight == 0


@pytest.mark.parametrize("safe", [True, False])
async def test_safe_to_retry_retries_once_across_a_restart(make, safe):
    upstream = make(stdio("retry", TOOL_SERVER))
    await upstream.start()
    first_pid = upstream.pid
    pending = asyncio.create_task(upstream.request(
        "tools/call", {"name": "slow_pid", "arguments": {"delay": 0.4}}, safe_to_retry=safe))
    await asyncio.sleep(0.2)
    os.killpg(first_pid, signal.SIGKILL)
    if safe:
        answered_by = int(text_of(await pending))
        assert answered_by != first_pid
        assert answered_by == upstream.pid
    else:
        with pytest.raises(UpstreamFailed):
            await pending
    await wait_until(lambda: upstream.state == "up" and upstream.pid != first_pid)
    assert upstream.restarts == 1


async def test_crash_loop_backs_off_and_opens_the_breaker(make):
    class TopOfRange(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    class RecordingBackoff(Backoff):
        def __init__(self) -> None:
            super().__init__(base=0.02, factor=2.0, cap=0.16, rng=TopOfRange())
            self.delays: list[float] = []

        def next_delay(self) -> float:
            delay = super().next_delay()
            self.delays.append(delay)
            return delay

    backoff = RecordingBackoff()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=30.0)
    upstream = make(stdio("crashy", [str(PEERS / "crashy.py")]), backoff=backoff,
                    breaker=breaker)
    await upstream.start()
    assert upstream.state == "down"
    assert "exited with code 3" in upstream.last_error
    assert "missing configuration" in upstream.last_error  # its stderr says why
    await wait_until(lambda: len(backoff.delays) >= 5)
    assert backoff.delays[:5] == [0.02, 0.04, 0.08, 0.16, 0.16]
    assert breaker.state == "open"
    assert upstream.restarts >= 3
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(upstream, "anything")
    error = caught.value
    assert "'crashy'" in error.message
    assert "circuit breaker open" in error.message
    assert "exited with code 3" in error.message
    assert error.data["upstream"] == "crashy"

    async def refusal_with_retry_after() -> UpstreamUnavailable:
        # Between attempts the refusal says when the next one is due (not during one).
        while True:
            try:
                await call(upstream, "anything")
            except UpstreamUnavailable as exc:
                if exc.retry_after is not None:
                    return exc
            await asyncio.sleep(0.01)

    again = await asyncio.wait_for(refusal_with_retry_after(), 10)
    assert 0 <= again.retry_after <= 0.16
    assert again.data["retryAfter"] == again.retry_after


# -- hanging and broken upstreams --------------------------------------------------------


async def test_a_hanging_call_times_out_and_the_upstream_keeps_serving(make):
    upstream = make(stdio("slow", TOOL_SERVER, timeout=0.4))
    await upstream.start()
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await call(upstream, "hang")
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    assert caught.value.data == {"upstream": "slow", "kind": "timeout", "method": "tools/call",
                                 "seconds": 0.4}
    assert "'slow'" in caught.value.message and "0.4 s" in caught.value.message
    with pytest.raises(UpstreamTimeout) as override:
        await upstream.request("tools/call", {"name": "hang", "arguments": {}}, timeout=0.1)
    assert override.value.seconds == 0.1
    assert await call(upstream, "echo", text="after") == "after"
    assert upstream.state == "up" and upstream.restarts == 0


async def test_timeouts_open_the_breaker_and_a_trial_closes_it(make):
    breaker = CircuitBreaker(failure_threshold=2, cooldown=0.3)
    upstream = make(stdio("flaky", TOOL_SERVER, timeout=0.15), breaker=breaker)
    await upstream.start()
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            await call(upstream, "hang")
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(upstream, "echo", text="refused")
    assert "circuit breaker is open after 2 failures" in caught.value.message
    assert 0 < caught.value.retry_after <= 0.3
    await asyncio.sleep(0.3)
    assert await call(upstream, "echo", text="trial") == "trial"
    assert breaker.state == "closed"


async def test_cancelling_the_caller_propagates_and_leaves_the_upstream_healthy(make):
    breaker = CircuitBreaker(failure_threshold=1)
    upstream = make(stdio("cancel", TOOL_SERVER), breaker=breaker)
    await upstream.start()
    pending = asyncio.create_task(call(upstream, "hang"))
    await wait_until(lambda: upstream.in_flight == 1)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert upstream.in_flight == 0
    assert breaker.state == "closed"
    assert await call(upstream, "echo", text="alive") == "alive"


async def test_an_upstream_that_prints_garbage_stays_down_with_a_clear_error(make):
    config = stdio("garbage", [str(PEERS / "garbage.py")], connect_timeout=1.0)
    upstream = make(config, backoff=Backoff(base=5.0, cap=5.0))
    started = time.monotonic()
    await upstream.start()  # does not raise
    assert time.monotonic() - started < config.connect_timeout + 1.0
    assert upstream.state == "down"
    assert "no answer to the MCP handshake within 1 s" in upstream.last_error
    assert "not JSON-RPC" in upstream.last_error
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(upstream, "echo", text="x")
    assert "'garbage'" in caught.value.message
    assert "not JSON-RPC" in caught.value.message
    with pytest.raises(UpstreamUnavailable):
        await upstream.notify("notifications/roots/list_changed")


async def test_a_command_that_does_not_exist_is_down_with_a_clear_error(make):
    config = UpstreamConfig(name="ghost", command="/nonexistent/bastion-test-server",
                            connect_timeout=5.0)
    upstream = make(config)
    started = time.monotonic()
    await upstream.start()
    assert time.monotonic() - started < 1.0
    assert upstream.state == "down"
    assert "cannot start '/nonexistent/bastion-test-server'" in upstream.last_error
    assert upstream.health()["era"] is None


@pytest.mark.parametrize("protocol", ["auto", "modern", "legacy"])
async def test_an_http_upstream_nobody_listens_on_is_down_with_the_cause(make, protocol):
    url = f"http://127.0.0.1:{free_port()}/mcp"
    upstream = make(UpstreamConfig(name="nobody", url=url, protocol=protocol,
                                   connect_timeout=3.0))
    await upstream.start()
    assert upstream.state == "down"
    assert "cannot connect" in upstream.last_error
    assert "127.0.0.1" in upstream.last_error


# -- bad input and lifecycle -------------------------------------------------------------


async def test_lifecycle_misuse_is_refused_clearly(make):
    with pytest.raises(ValueError, match="needs a name"):
        Upstream(UpstreamConfig(command=sys.executable), handlers=ClientHandlers())
    upstream = make(stdio("closing", TOOL_SERVER))
    with pytest.raises(UpstreamUnavailable, match="still starting"):
        await call(upstream, "echo", text="too early")
    await upstream.start()
    await upstream.start()  # a second start waits for the same supervisor
    pid = upstream.pid
    await upstream.aclose()
    await upstream.aclose()  # idempotent
    assert upstream.state == "stopped"
    assert upstream.pid is None and upstream.connection is None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        pytest.fail("the child outlived aclose()")
    with pytest.raises(UpstreamUnavailable, match="shut down"):
        await call(upstream, "echo", text="too late")
    with pytest.raises(RuntimeError, match="was closed"):
        await upstream.start()


# -- Streamable HTTP ---------------------------------------------------------------------


async def start_http_server(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *EVERYTHING, "--http", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process
        await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the HTTP server did not listen on port {port}")


@pytest.fixture
async def http_server() -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    server = {"port": port, "process": await start_http_server(port)}
    yield server
    process = server["process"]
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_http_upstream_reconnects_after_the_server_comes_back(make, http_server, caplog):
    url = f"http://127.0.0.1:{http_server['port']}/mcp"
    upstream = make(UpstreamConfig(name="web", url=url, connect_timeout=5.0,
                                   headers={"X-Api-Key": "s3cret"}))
    legacy = make(UpstreamConfig(name="web-legacy", url=url, protocol="legacy"))
    await asyncio.gather(upstream.start(), legacy.start())
    assert upstream.health()["era"] == "modern"
    assert upstream.session_id is None
    assert await call(upstream, "test_simple_text")
    assert legacy.health()["era"] == "legacy"
    assert legacy.session_id  # the server's Mcp-Session-Id
    assert await call(legacy, "test_simple_text")

    http_server["process"].kill()
    await http_server["process"].wait()
    with pytest.raises((UpstreamFailed, UpstreamUnavailable)) as caught:
        await call(upstream, "test_simple_text")
    assert "'web'" in caught.value.message
    await wait_until(lambda: upstream.state == "down")
    assert "s3cret" not in (upstream.last_error or "") + caplog.text

    http_server["process"] = await start_http_server(http_server["port"])
    await wait_until(lambda: upstream.state == "up", timeout=15)
    assert upstream.restarts >= 1
    assert await call(upstream, "test_simple_text")


# -- the pool ----------------------------------------------------------------------------


async def test_pool_starts_upstreams_in_parallel_and_a_broken_one_only_reports():
    configs = [
        stdio("garbage", [str(PEERS / "garbage.py")], connect_timeout=1.0),
        stdio("garbage2", [str(PEERS / "garbage.py")], connect_timeout=1.0),
        stdio("good", TOOL_SERVER),
        UpstreamConfig(name="ghost", command="/nonexistent/bastion-test-server"),
    ]
    handed_out: list[str] = []

    def handlers_for(name: str) -> ClientHandlers:
        handed_out.append(name)
        return ClientHandlers()

    pool = UpstreamPool(configs, handlers_for=handlers_for)
    try:
        started = time.monotonic()
        await pool.start()
        # In parallel: the two 1 s handshake timeouts overlap instead of adding up.
        assert time.monotonic() - started < 1.8
        assert handed_out == ["garbage", "garbage2", "good", "ghost"]
        assert [u.name for u in pool] == ["garbage", "garbage2", "good", "ghost"]
        assert len(pool) == 4 and "good" in pool and "nope" not in pool
        assert pool.get("nope") is None
        assert await call(pool.get("good"), "echo", text="pooled") == "pooled"
        health = {entry["name"]: entry for entry in pool.health()}
        assert health["good"]["state"] == "up" and health["good"]["era"] == "modern"
        assert health["garbage"]["state"] == "down"
        assert "not JSON-RPC" in health["garbage"]["last_error"]
        assert health["ghost"]["state"] == "down"
        assert set(health["ghost"]) >= {"name", "state", "era", "version", "restarts",
                                        "last_error", "breaker", "in_flight"}
    finally:
        await pool.aclose()
    assert all(u.state == "stopped" for u in pool)


def test_pool_rejects_duplicate_names():
    configs = [stdio("twin", TOOL_SERVER), stdio("twin", EVERYTHING)]
    with pytest.raises(ValueError, match="two upstreams are named 'twin'"):
        UpstreamPool(configs, handlers_for=lambda name: ClientHandlers())


# -- the errors themselves ---------------------------------------------------------------


def test_upstream_errors_become_json_rpc_errors_that_name_the_upstream():
    unavailable = UpstreamUnavailable("db", "not connected", retry_after=1.23456)
    assert unavailable.to_error() == {
        "code": INTERNAL_ERROR,
        "message": "upstream 'db' is unavailable: not connected; try again in 1.2 s",
        "data": {"upstream": "db", "kind": "unavailable", "reason": "not connected",
                 "retryAfter": 1.235},
    }
    assert "retryAfter" not in UpstreamUnavailable("db", "starting").to_error()["data"]
    assert UpstreamUnavailable("db", "x", retry_after=-3).retry_after == 0.0
    failed = UpstreamFailed("db", "tools/call", "the child died")
    assert failed.to_error()["data"]["kind"] == "failed"
    assert failed.message == "upstream 'db' failed during tools/call: the child died"
    assert not failed.connection_lost
    timeout = UpstreamTimeout("db", "resources/read", 2.5)
    assert "within 2.5 s" in timeout.message and timeout.data["method"] == "resources/read"
