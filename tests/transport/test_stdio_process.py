"""StdioProcess and stdio_channel with real child processes and real pipes.

The children are small Python scripts in `peers/`. Each test stops what it starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bastion.protocol.errors import INVALID_REQUEST, PARSE_ERROR, MethodNotFound
from bastion.session.core import Session
from bastion.session.errors import PeerClosed
from bastion.transport.stdio import (
    DEFAULT_INHERITED_ENV,
    ProcessStartError,
    StdioProcess,
    child_environment,
)

PEERS = Path(__file__).parent / "peers"
PEER = [sys.executable, str(PEERS / "jsonrpc_peer.py")]
STUBBORN = [sys.executable, str(PEERS / "stubborn.py")]
SESSION_SERVER = [sys.executable, str(PEERS / "session_server.py")]


@pytest.fixture
async def spawn():
    """Start children (optionally with a Session on top); stop them all at teardown."""
    started: list[tuple[StdioProcess, Session | None]] = []

    async def start(argv: list[str], *, session: bool = True, **kwargs: Any):
        session_kwargs = kwargs.pop("session_kwargs", {})
        proc = await StdioProcess.start(argv, **kwargs)
        peer = None
        if session:
            peer = Session(
                proc.channel,
                name=proc.name,
                reply_to_garbage=False,
                describe_close=proc.describe_exit,
                **session_kwargs,
            )
            peer.start()
        started.append((proc, peer))
        return proc, peer

    yield start
    for proc, peer in started:
        if peer is not None:
            await peer.aclose()
        await proc.stop(grace=0.5, term_grace=0.5)


def process_gone(pid: int) -> bool:
    """The process no longer runs (gone, or a zombie that nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid: int, timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        await asyncio.sleep(0.02)
    return process_gone(pid)


async def read_json_line(proc: StdioProcess) -> Any:
    return orjson.loads(await asyncio.wait_for(proc.channel.read_frame(), 2))


# -- start, talk, stop ------------------------------------------------------------------


async def test_a_request_round_trip_and_a_clean_stop_on_eof(spawn):
    proc, session = await spawn(PEER)
    assert proc.name == "python" or proc.name.startswith("python")
    assert await session.request("echo", {"x": 1}, timeout=2) == {"params": {"x": 1}}
    started = time.monotonic()
    assert await proc.stop(grace=1, term_grace=1) == 0  # the first rung is enough
    assert time.monotonic() - started < 0.9
    assert proc.returncode == 0
    assert "exited with code 0" in proc.describe_exit()


async def test_the_child_runs_in_its_own_process_group(spawn):
    proc, session = await spawn(PEER)
    result = await session.request("env", timeout=2)
    assert result["pgid"] == proc.pid
    assert os.getpgid(proc.pid) == proc.pid != os.getpgrp()


async def test_the_child_sees_only_allowed_and_explicit_variables(spawn, monkeypatch):
    monkeypatch.setenv("BASTION_TEST_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    _proc, session = await spawn(PEER, env={"API_KEY": "given-on-purpose"})
    env = (await session.request("env", timeout=2))["env"]
    assert "BASTION_TEST_SECRET_TOKEN" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "hunter2" not in json.dumps(env)
    assert env["API_KEY"] == "given-on-purpose"
    assert env["LANG"] == "C.UTF-8"
    assert env["PATH"] == os.environ["PATH"]
    allowed = set(DEFAULT_INHERITED_ENV) | {"API_KEY"}
    # The interpreter may add a few of its own (e.g. LC_CTYPE coercion); nothing else leaks.
    assert set(env) - allowed <= {"LC_CTYPE", "PYTHONCOERCECLOCALE"}


async def test_the_inherited_list_can_be_narrowed(spawn, monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    _proc, session = await spawn(PEER, inherit_env=("PATH",), env={"ONLY": "me"})
    env = (await session.request("env", timeout=2))["env"]
    assert "HOME" not in env
    assert env["ONLY"] == "me"


def test_child_environment_explicit_values_win(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("SECRET", "x")
    env = child_environment({"PATH": "/opt/bin", "NEW": "1"}, inherit=("PATH", "SECRET2"))
    assert env == {"PATH": "/opt/bin", "NEW": "1"}


async def test_the_working_directory_is_honoured(spawn, tmp_path):
    _proc, session = await spawn(PEER, cwd=tmp_path)
    result = await session.request("env", timeout=2)
    assert Path(result["cwd"]).resolve() == tmp_path.resolve()


async def test_start_failures_are_process_start_errors(tmp_path):
    with pytest.raises(ProcessStartError, match="no command"):
        await StdioProcess.start([])
    with pytest.raises(ProcessStartError, match="does-not-exist"):
        await StdioProcess.start([str(tmp_path / "does-not-exist")])
    with pytest.raises(ProcessStartError):
        await StdioProcess.start(PEER, cwd=tmp_path / "no-such-dir")


# -- stderr -----------------------------------------------------------------------------


async def test_stderr_is_logged_and_its_tail_kept(spawn, caplog):
    caplog.set_level(logging.INFO, logger="bastion.stdio")
    proc, session = await spawn(PEER, name="chatty", stderr_lines=3)
    lines = [f"log line {n}" for n in range(6)]
    await session.request("stderr", {"lines": [*lines, "", "  "]}, timeout=2)
    for _ in range(50):
        if "log line 5" in proc.stderr_tail:
            break
        await asyncio.sleep(0.01)
    assert list(proc.stderr_tail) == ["log line 3", "log line 4", "log line 5"]
    records = [r for r in caplog.records if r.name == "bastion.stdio.chatty"]
    assert [r.getMessage() for r in records] == lines


async def test_a_very_long_stderr_line_does_not_stop_the_stderr_pump(spawn):
    proc, session = await spawn(PEER)
    await session.request("stderr", {"lines": ["e" * (2 * 1024 * 1024), "after"]}, timeout=2)
    for _ in range(100):
        if "after" in proc.stderr_tail:
            break
        await asyncio.sleep(0.01)
    assert proc.stderr_tail[-1] == "after"


# -- a child that dies or misbehaves ----------------------------------------------------


async def test_a_child_that_dies_mid_request_names_its_exit_code_and_stderr(spawn):
    _proc, session = await spawn(PEER, name="db-server")
    with pytest.raises(PeerClosed) as info:
        await session.request("die", {"message": "fatal: database on fire", "code": 3},
                              timeout=2)
    text = str(info.value)
    assert "die:" in text
    assert "'db-server' exited with code 3" in text
    assert "fatal: database on fire" in text
    assert session.closed
    with pytest.raises(PeerClosed, match="exited with code 3"):
        await session.request("echo", timeout=2)


async def test_a_child_killed_by_a_signal_is_described_as_such(spawn):
    proc, session = await spawn(PEER)
    pending = asyncio.create_task(session.request("hang", timeout=2))
    await asyncio.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    with pytest.raises(PeerClosed, match="killed by signal 9"):
        await pending


async def test_a_child_that_only_closes_stdout_is_described(spawn):
    proc, session = await spawn(PEER)
    with pytest.raises(PeerClosed, match="closed its stdout"):
        await session.request("close_stdout", timeout=2)
    assert proc.returncode is None
    assert await proc.stop(grace=1, term_grace=1) == 0


async def test_garbage_on_the_childs_stdout_is_logged_and_the_session_survives(spawn, caplog):
    _proc, session = await spawn([*PEER, "--banner"], name="sloppy")
    assert await session.request("garbage_then_echo", {"n": 1}, timeout=2) == {
        "params": {"n": 1}
    }
    assert await session.request("echo", {"n": 2}, timeout=2) == {"params": {"n": 2}}
    assert session.protocol_errors == 3  # banner, invalid JSON, bad envelope
    assert "sloppy sent an invalid message" in caplog.text
    assert "Server starting" in caplog.text
    assert not session.closed
    # reply_to_garbage=False: nothing was written back, so the child saw only requests.
    assert (await session.request("cancelled_seen", timeout=2))["ids"] == []


async def test_an_oversize_line_from_the_child_is_skipped(spawn, caplog):
    _proc, session = await spawn(
        PEER, max_message_size=1000, session_kwargs={"max_message_size": 1000}
    )
    assert await session.request("oversize_then_echo", {"size": 300_000}, timeout=2) == {
        "params": {"size": 300_000}
    }
    assert session.protocol_errors == 1
    assert "1000-byte limit" in caplog.text


async def test_timeout_and_cancellation_reach_the_child(spawn):
    _proc, session = await spawn(PEER)
    with pytest.raises(TimeoutError):
        await session.request("hang", timeout=0.1)
    call = asyncio.create_task(session.request("hang", timeout=2))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await session.request("cancelled_seen", timeout=2))["ids"] == [1, 2]


# -- the shutdown ladder ----------------------------------------------------------------


async def test_a_child_that_ignores_eof_is_terminated(spawn):
    proc, _ = await spawn([*STUBBORN, "--ignore-eof"], session=False)
    await read_json_line(proc)
    started = time.monotonic()
    assert await proc.stop(grace=0.2, term_grace=1) == -signal.SIGTERM
    assert 0.2 <= time.monotonic() - started < 1.0
    assert "killed by signal 15" in proc.describe_exit()


async def test_a_child_that_ignores_sigterm_is_killed(spawn):
    proc, _ = await spawn([*STUBBORN, "--ignore-eof", "--ignore-term"], session=False)
    await read_json_line(proc)
    started = time.monotonic()
    assert await proc.stop(grace=0.2, term_grace=0.2) == -signal.SIGKILL
    assert 0.4 <= time.monotonic() - started < 1.2


async def test_a_grandchild_left_behind_by_a_clean_exit_is_killed(spawn):
    proc, _ = await spawn([*STUBBORN, "--grandchild"], session=False)
    ready = await read_json_line(proc)
    grandchild = ready["grandchild"]
    assert os.getpgid(grandchild) == proc.pid
    started = time.monotonic()
    assert await proc.stop(grace=1, term_grace=1) == 0
    # The grandchild holds stderr open; the leader's exit is seen at once all the same.
    assert time.monotonic() - started < 0.5
    assert await wait_gone(grandchild)


async def test_a_grandchild_that_ignores_sigterm_dies_with_the_group(spawn):
    argv = [*STUBBORN, "--ignore-eof", "--grandchild", "--grandchild-ignores-term"]
    proc, _ = await spawn(argv, session=False)
    grandchild = (await read_json_line(proc))["grandchild"]
    assert await proc.stop(grace=0.2, term_grace=0.5) == -signal.SIGTERM
    assert await wait_gone(grandchild)


async def test_a_whole_stubborn_group_is_killed(spawn):
    argv = [*STUBBORN, "--ignore-eof", "--ignore-term", "--grandchild", "--grandchild-ignores-term"]
    proc, _ = await spawn(argv, session=False)
    grandchild = (await read_json_line(proc))["grandchild"]
    assert await proc.stop(grace=0.1, term_grace=0.1) == -signal.SIGKILL
    assert await wait_gone(grandchild)


async def test_stop_after_the_child_already_exited_is_quick_and_repeatable(spawn):
    proc, session = await spawn(PEER)
    with pytest.raises(PeerClosed):
        await session.request("die", {"code": 0}, timeout=2)
    started = time.monotonic()
    assert await proc.stop(grace=1, term_grace=1) == 0
    assert await proc.stop(grace=1, term_grace=1) == 0
    assert time.monotonic() - started < 0.5


async def test_no_task_is_left_after_stop(spawn):
    proc, session = await spawn(PEER)
    await session.request("echo", timeout=2)
    await session.aclose()
    await proc.stop(grace=1, term_grace=1)
    current = asyncio.current_task()
    for _ in range(20):
        if not {t for t in asyncio.all_tasks() if t is not current}:
            break
        await asyncio.sleep(0.01)
    assert {t for t in asyncio.all_tasks() if t is not current} == set()


# -- stdio_channel: a bastion Session served on a child's own stdin/stdout ---------------


async def test_stdio_channel_serves_a_session_on_stdin_and_stdout(spawn):
    proc, session = await spawn(SESSION_SERVER)
    assert await session.request("echo", {"hello": "world"}, timeout=3) == {
        "params": {"hello": "world"}
    }
    assert (await session.request("pid", timeout=2))["pid"] == proc.pid
    with pytest.raises(MethodNotFound):
        await session.request("nope", timeout=2)
    started = time.monotonic()
    assert await proc.stop(grace=1, term_grace=1) == 0  # the server exits on EOF
    assert time.monotonic() - started < 0.9


async def test_a_stdio_served_session_answers_garbage_and_oversize(spawn):
    proc, _ = await spawn(SESSION_SERVER, session=False)
    await proc.channel.write_frame(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    reply = await read_json_line(proc)
    assert reply.get("id") is None
    assert reply["error"]["code"] == PARSE_ERROR
    await proc.channel.write_frame(b'{"jsonrpc":"2.0","id":2,"method":"echo","params":{"p":"'
                                   + b"x" * 5000 + b'"}}')
    reply = await read_json_line(proc)
    assert reply["error"]["code"] == INVALID_REQUEST
    await proc.channel.write_frame(b'{"jsonrpc":"2.0","id":3,"method":"echo"}')
    assert await read_json_line(proc) == {"jsonrpc": "2.0", "id": 3, "result": {"params": {}}}
