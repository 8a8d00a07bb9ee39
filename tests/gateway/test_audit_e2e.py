"""The audit trail of a running gateway: what each decision and call leaves, that no
secret gets in, "record before execute", and a `kill -9` under load.

Real peers throughout: the gateway serving HTTP with a real identity provider (JWKS over
HTTP), the demo SOC servers as stdio upstreams, Bastion's client, raw HTTP for refusals, and
for the crash test `bastion serve` as a child process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bastion.audit import PostgresReader, verify_database, verify_store
from bastion.audit.query import RecordQuery
from bastion.client import connect_http
from bastion.protocol.errors import MCPError
from tests.gateway.conftest import LiveGateway, make_config
from tests.gateway.test_auth_e2e import (
    ISOLATE,
    POLICY,
    modern_call,
    modern_headers,
    post,
    secured,
)
from tests.identity.conftest import Idp
from tests.live_server import free_port
from tests.postgres import pg_dsn, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(90)

#: A canary secret (an AWS access key id shape the redaction engine knows).
CANARY_ARG = "AKIAQWERTYUIOPASDFGH"


def records(path: Path) -> list[dict[str, Any]]:
    """Every record body of the trail at `path`, in write order."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT body FROM records ORDER BY instance, seq").fetchall()
    return [orjson.loads(row[0])["record"] for row in rows]


async def settled(path: Path, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The records once `predicate(records)` holds (the writer batches every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path) if path.exists() else []
        if predicate(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_every_decision_and_call_is_recorded_without_secrets(idp: Idp, tmp_path,
                                                                   gateway_http):
    live: LiveGateway = await gateway_http(secured(idp, tmp_path))
    token = idp.mint(sub="bob", roles=["responder"], scope="mcp:tools edr:write")
    async with connect_http(live.url, bearer_token=token) as client:
        done = await client.call_tool(
            "edr__isolate_host", {"host": "ws-017", "reason": f"key {CANARY_ARG} leaked"})
        assert done.get("isError") is not True
        with pytest.raises(MCPError) as denied:
            await client.call_tool("edr__isolate_host", {"host": "srv-db-01", "reason": "x"})
        assert denied.value.code == -32003
    analyst = idp.mint(sub="alice", roles=["analyst"], scope="mcp:tools edr:write")
    async with connect_http(live.url, bearer_token=analyst) as client:
        with pytest.raises(MCPError) as hidden:  # answered like an unknown tool
            await client.call_tool("edr__isolate_host", {"host": "ws-017", "reason": "x"})
        assert hidden.value.code == -32602
    assert (await post(live.url, modern_call(ISOLATE), modern_headers(None))).status_code == 401
    bad = idp.mint(aud="https://other.example")
    assert (await post(live.url, modern_call(ISOLATE), modern_headers(bad))).status_code == 401

    trail = tmp_path / "audit.sqlite3"
    found = await settled(trail, lambda rs: sum(r["event"] == "refusal" for r in rs) >= 2
                          and sum(r.get("method") == "tools/call" for r in rs) >= 3)
    calls = [r for r in found if r["event"] == "call" and r["method"] == "tools/call"]
    allowed = next(r for r in calls if r["status"] == "ok")
    assert allowed["principal"]["sub"] == "bob"
    assert allowed["principal"]["iss"] == idp.issuer
    assert (allowed["upstream"], allowed["target"]) == ("edr", "edr__isolate_host")
    assert allowed["upstream_target"] == "isolate_host"
    assert allowed["decision"]["rule"] == "responders-contain-hosts"
    assert allowed["decision"]["allowed"] is True
    assert len(allowed["args"]["sha256"]) == 64 and allowed["args"]["bytes"] > 0
    assert allowed["args"]["value"]["host"] == "ws-017"
    assert CANARY_ARG not in allowed["args"]["value"]["reason"]  # redacted
    assert len(allowed["result"]["sha256"]) == 64 and allowed["latency_ms"] > 0
    assert allowed["pin"]["status"] and allowed["request_id"] is not None

    refused = next(r for r in calls if r["status"] == "denied"
                   and r["principal"]["sub"] == "bob")
    assert refused["error"]["code"] == -32003
    assert refused["decision"]["rule"] == "never-isolate-servers"
    assert "result" not in refused
    # Hidden from alice, so told "unknown tool"; the trail says what it was: a denial.
    hidden_record = next(r for r in calls if r["principal"]["sub"] == "alice")
    assert (hidden_record["status"], hidden_record["error"]["code"]) == ("denied", -32602)
    assert hidden_record["decision"] == {**hidden_record["decision"], "rule": "default",
                                         "allowed": False}

    refusals = [r for r in found if r["event"] == "refusal"]
    assert {r["http_status"] for r in refusals} == {401}
    assert {r["error"]["code"] for r in refusals} == {"no_credentials", "invalid_token"}
    assert all(r["remote"].startswith("127.0.0.1:") for r in refusals)

    raw = trail.read_bytes() + (tmp_path / "audit.sqlite3-wal").read_bytes()
    for secret in (CANARY_ARG.encode(), token.encode(), bad.encode()):
        assert secret not in raw  # SPEC-AUTH-12: no credential, no secret argument
    report = verify_database(trail, allow_unsigned_tail=True)
    assert report.ok, report.problem


async def test_record_before_execute_is_committed_before_the_upstream_runs(idp: Idp,
                                                                           tmp_path,
                                                                           gateway_http):
    policy = {"rules": [dict(rule, audit="before_execute")
                        if rule["name"] == "responders-contain-hosts" else rule
                        for rule in POLICY["rules"]]}
    base = secured(idp, tmp_path)
    config = make_config(
        {name: {"command": u.command, "args": u.args} for name, u in base.mcp_servers.items()},
        auth=base.auth.model_dump(mode="json", exclude_none=True), policy=policy,
        state_dir=str(tmp_path),
        # Ordinary records wait long in the queue: only a committed intent is on disk.
        audit={"flush_ms": 30_000, "batch_size": 100_000})
    live = await gateway_http(config)
    token = idp.mint(sub="bob", roles=["responder"], scope="mcp:tools edr:write")
    async with connect_http(live.url, bearer_token=token) as client:
        await client.call_tool("edr__list_hosts", {})
        await client.call_tool("edr__isolate_host", {"host": "ws-017", "reason": "r-1"})
        on_disk = records(tmp_path / "audit.sqlite3")
        assert [(r["event"], r["args"]["value"]["reason"]) for r in on_disk
                if r["event"] == "intent"] == [("intent", "r-1")]
        assert not any(r["event"] == "call" for r in on_disk)  # still queued

        # No audit, no call: with the trail stopped, the call is refused, not run.
        await live.gateway.audit.log.aclose()
        with pytest.raises(MCPError) as refused:
            await client.call_tool("edr__isolate_host", {"host": "ws-002", "reason": "r-2"})
        assert refused.value.code == -32603
        assert "audit record" in refused.value.message
        hosts = orjson.loads((await client.call_tool("edr__list_hosts", {}))
                             ["content"][0]["text"])
    assert {h["host"] for h in hosts if h["isolated"]} == {"ws-017"}


async def test_audit_can_be_turned_off(tmp_path, gateway_http):
    live = await gateway_http(make_config(
        {"edr": {"command": sys.executable, "args": ["-m", "bastion.testing.soc", "edr"]}},
        state_dir=str(tmp_path), audit={"enabled": False}))
    async with connect_http(live.url) as client:
        await client.call_tool("edr__list_hosts", {})
    assert live.gateway.audit is None
    assert not (tmp_path / "audit.sqlite3").exists()


async def test_the_gateway_writes_its_trail_into_postgresql(tmp_path, gateway_http,
                                                             pg_dsn):  # noqa: F811
    live = await gateway_http(make_config(
        {"edr": {"command": sys.executable, "args": ["-m", "bastion.testing.soc", "edr"]}},
        state_dir=str(tmp_path), audit={"postgres": pg_dsn, "instance": "gw-pg-1"}))
    async with connect_http(live.url) as client:
        await client.call_tool("edr__list_hosts", {})
    await live.gateway.audit.aclose()  # the final checkpoint is signed
    reader = await PostgresReader.open(pg_dsn)
    try:
        report = await verify_store(reader)
        stored = await reader.query(RecordQuery(tool="edr__list_hosts"))
    finally:
        await reader.close()
    assert report.ok and set(report.records) == {"gw-pg-1"} and report.checkpoints["gw-pg-1"]
    assert [(r.instance, r.record["status"]) for r in stored] == [("gw-pg-1", "ok")]
    assert not (tmp_path / "audit.sqlite3").exists()


# -- kill -9 under load ---------------------------------------------------------------------


async def _wait_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            async with connect_http(url) as client:
                await client.list_tools()
                return
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError("the gateway did not start")


async def test_kill_9_under_load_leaves_a_verifiable_trail_with_every_answered_call(tmp_path):
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "state_dir": str(tmp_path / "state"),
        "mcpServers": {"edr": {"command": sys.executable,
                               "args": ["-m", "bastion.testing.soc", "edr"]}},
        "policy": {"rules": [{"name": "audited-containment", "effect": "allow",
                              "tools": ["edr__*"], "audit": "before_execute"}]},
        "audit": {"sqlite": str(tmp_path / "trail.sqlite3"), "checkpoint_every": 50},
    }
    (tmp_path / "bastion.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", "--config", str(tmp_path / "bastion.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    answered: list[str] = []
    try:
        await _wait_listening(url, process)

        async def worker(index: int) -> None:
            async with connect_http(url) as client:
                for n in range(10_000):
                    reason = f"w{index}-{n}"
                    await client.call_tool("edr__isolate_host",
                                           {"host": "ws-017", "reason": reason})
                    answered.append(reason)

        workers = [asyncio.create_task(worker(i)) for i in range(8)]
        while len(answered) < 300:
            await asyncio.sleep(0.05)
            assert not any(w.done() and w.exception() for w in workers), \
                [w.exception() for w in workers if w.done()]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    trail = tmp_path / "trail.sqlite3"
    report = verify_database(trail, allow_unsigned_tail=True)
    assert report.ok, report.problem
    intents = {r["args"]["value"]["reason"] for r in records(trail) if r["event"] == "intent"}
    missing = [reason for reason in answered if reason not in intents]
    assert not missing, f"{len(missing)} answered calls have no record, e.g. {missing[:3]}"
    assert len(answered) >= 300
