"""SPEC-AUDIT: queries over stored records (`audit show|tail|export` filters), the same on
SQLite and on a real PostgreSQL server; records of other shapes are tolerated."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import (
    AuditLog,
    AuditQueryError,
    AuditReader,
    PostgresStore,
    RecordQuery,
    open_reader,
    parse_time,
)

T0 = 1_800_000_000.0


def call(n: int, *, sub: str, agent: str | None, upstream: str, target: str, status: str,
         time: float, **extra: Any) -> dict[str, Any]:
    """A record shaped like the gateway's (bastion/audit/record.py)."""
    principal: dict[str, Any] = {"sub": sub, "iss": "https://idp", "method": "oauth"}
    if agent is not None:
        principal["client_id"] = agent
    return {"v": 1, "event": "call", "time": time, "request_id": f"req-{n}",
            "trace_id": None, "principal": principal, "method": "tools/call",
            "upstream": upstream, "target": target,
            "args": {"sha256": "00" * 32, "bytes": 2},
            "decision": {"effect": "deny" if status == "denied" else "allow",
                         "allowed": status != "denied", "rule": f"rule-{n % 3}",
                         "reason": "policy"},
            "status": status, "error": None, "result": None, "latency_ms": 1.5 + n,
            **extra}


RECORDS = [
    call(0, sub="alice", agent="claude", upstream="github", target="create_issue",
         status="ok", time=T0),
    call(1, sub="bob", agent="cursor", upstream="github", target="delete_repo",
         status="denied", time=T0 + 60),
    call(2, sub="alice", agent=None, upstream="siem", target="search", status="tool_error",
         time=T0 + 120),
    {"event": "audit.dropped", "count": 3, "time": T0 + 180},  # another shape
    {"v": 1, "event": "alert", "time": "not a number", "principal": "odd"},  # hostile shape
    call(5, sub="alice", agent="claude", upstream="github", target="create_issue",
         status="ok", time=T0 + 300),
]


async def write_records(store: Path | PostgresStore, key: Ed25519PrivateKey,
                        records: list[dict[str, Any]], instance: str = "gw-1") -> None:
    log = AuditLog(store, key, instance, batch_size=4)
    await log.start()
    for record in records:
        await log.log(record)
    await log.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
async def reader(request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str,
                 signing_key: Ed25519PrivateKey) -> AsyncIterator[AuditReader]:
    """A reader over RECORDS (instance gw-1) and two records of gw-2, on each backend."""
    if request.param == "sqlite":
        where: dict[str, Any] = {"db": tmp_path / "audit.sqlite3"}
        store: Path | PostgresStore = where["db"]
        stores = [store, store]
    else:
        where = {"dsn": pg_dsn}
        stores = [PostgresStore(pg_dsn), PostgresStore(pg_dsn)]
    await write_records(stores[0], signing_key, RECORDS)
    await write_records(stores[1], signing_key, [
        call(7, sub="carol", agent="claude", upstream="siem", target="search", status="ok",
             time=T0 + 30),
        call(8, sub="alice", agent="claude", upstream="siem", target="search", status="error",
             time=T0 + 400)], instance="gw-2")
    opened = await open_reader(**where)
    yield opened
    await opened.close()


def _ids(records: list[Any]) -> list[tuple[str, int]]:
    return [(stored.instance, stored.seq) for stored in records]


async def test_spec_audit_query_filters(reader: AuditReader) -> None:
    everything = await reader.query(RecordQuery(limit=100))
    # Newest first by record time; records without a numeric time come last.
    assert _ids(everything)[:3] == [("gw-2", 2), ("gw-1", 6), ("gw-1", 4)]
    assert len(everything) == 8 and everything[-1].time is None
    alice = await reader.query(RecordQuery(sub="alice"))
    assert _ids(alice) == [("gw-2", 2), ("gw-1", 6), ("gw-1", 3), ("gw-1", 1)]
    assert _ids(await reader.query(RecordQuery(agent="cursor"))) == [("gw-1", 2)]
    assert _ids(await reader.query(RecordQuery(upstream="siem", status="ok"))) == [("gw-2", 1)]
    assert _ids(await reader.query(RecordQuery(tool="create_issue", limit=1))) == [("gw-1", 6)]
    window = await reader.query(RecordQuery(since=T0 + 30, until=T0 + 180))
    assert _ids(window) == [("gw-1", 4), ("gw-1", 3), ("gw-1", 2), ("gw-2", 1)]
    assert _ids(await reader.query(RecordQuery(instance="gw-2", order="key"))) == \
        [("gw-2", 1), ("gw-2", 2)]
    assert await reader.query(RecordQuery(sub="mallory' OR '1'='1")) == []


async def test_spec_audit_query_paging_in_key_order(reader: AuditReader) -> None:
    page = RecordQuery(order="key", limit=3)
    seen: list[tuple[str, int]] = []
    while records := await reader.query(page):
        seen += _ids(records)
        page = dataclasses.replace(page, after=(records[-1].instance, records[-1].seq))
    assert seen == [("gw-1", n) for n in range(1, 7)] + [("gw-2", 1), ("gw-2", 2)]
    last = await reader.query(RecordQuery(instance="gw-1", order="key_desc", limit=1))
    assert _ids(last) == [("gw-1", 6)]


async def test_spec_audit_stored_record_tolerates_other_shapes(reader: AuditReader) -> None:
    odd = (await reader.query(RecordQuery(instance="gw-1", after=("gw-1", 4), order="key",
                                          limit=1)))[0]
    assert odd.record["event"] == "alert" and odd.time is None
    assert odd.text("principal", "sub") is None and odd.get("decision", "rule") is None
    dropped = (await reader.query(RecordQuery(instance="gw-1", after=("gw-1", 3),
                                              order="key", limit=1)))[0]
    assert dropped.text("count") == "3" and len(dropped.hash) == 32


def test_spec_audit_parse_time_and_bad_queries() -> None:
    now = 1_000_000.0
    assert parse_time("1h", now) == now - 3600
    assert parse_time("30m", now) == now - 1800
    assert parse_time("2d", now) == now - 172_800
    assert parse_time("2026-01-31T12:00:00Z", now) == parse_time("2026-01-31T12:00:00", now)
    assert parse_time("2026-01-31T13:00:00+01:00", now) == parse_time("2026-01-31T12:00Z", now)
    for bad in ("yesterday", "1y", "", "-1h", "12:00 tomorrow"):
        with pytest.raises(AuditQueryError):
            parse_time(bad, now)
    with pytest.raises(AuditQueryError, match="limit"):
        RecordQuery(limit=0)
    with pytest.raises(AuditQueryError, match="since"):
        RecordQuery(since=10.0, until=5.0)
    with pytest.raises(ValueError, match="exactly one"):
        import asyncio
        asyncio.run(open_reader())
