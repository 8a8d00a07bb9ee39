"""Benchmark of the audit trail: records/s sustained through `AuditLog` (queue, batching
writer, checkpoints) into SQLite or PostgreSQL, then the time verification takes over them.

    python bench/audit_bench.py [--records 1000000] [--policy block] [--db PATH | --dsn URI]
    python bench/audit_bench.py --per-call [--records 50000]

`--per-call` measures what the gateway's audit stage costs per call: building the record of a
typical tools/call (principal, redacted arguments and their digest, policy decision, pin note,
result digest) and queueing it, on the event loop's thread (the hot path), and what the
writer adds on its own thread (chaining, SQLite), both as CPU time per record.

SQLite verifies with `verify_database` (synchronous); PostgreSQL with `verify_store`.
`--dsn` must name an empty database (or one without instance bench-1).
Targets (issue 8): >= 20,000 records/s written; 1,000,000 records verified in <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bastion.audit import (
    AuditLog,
    AuditStore,
    PostgresReader,
    PostgresStore,
    VerifyReport,
    load_or_create_signing_key,
    verify_database,
    verify_store,
)


async def _write(store: AuditStore | Path, state: Path, records: int,
                 policy: str) -> tuple[float, int]:
    key = load_or_create_signing_key(state)
    log = AuditLog(store, key, "bench-1", full_policy=policy)  # type: ignore[arg-type]
    await log.start()
    started = time.perf_counter()
    for number in range(records):
        await log.log({"v": 1, "event": "call", "request_id": f"r-{number}",
                       "principal": {"sub": "alice", "client_id": "agent-7"},
                       "upstream": "github", "method": "tools/call", "target": "create_issue",
                       "args": {"sha256": f"{number:064x}", "bytes": 120},
                       "decision": {"effect": "allow", "rule": "dev"}, "status": "ok",
                       "latency_ms": number % 97})
    await log.aclose()
    return time.perf_counter() - started, log.dropped


async def _per_call(state: Path, records: int) -> tuple[float, float]:
    """(hot-path CPU µs per call, writer CPU µs per record) through a real `AuditLog`."""
    from types import SimpleNamespace

    from bastion.audit.record import RecordBuilder
    from bastion.guard.outcome import Outcome
    from bastion.guard.pipeline import Call
    from bastion.guard.redact.redactor import Redactor
    from bastion.protocol.principal import Principal
    from bastion.protocol.versions import Era

    principal = Principal(subject="alice", issuer="https://idp.example", method="jwt",
                          client_id="agent-7", roles=frozenset({"analyst"}))
    request = SimpleNamespace(
        method="tools/call", era=Era.MODERN, id=7, headers={},
        params={"name": "github__create_issue",
                "arguments": {"repo": "acme/api", "title": "Flaky test",
                              "body": "The login test fails one run in ten."}})
    target = SimpleNamespace(upstream="github", key="github__create_issue",
                             original="create_issue")
    decision = SimpleNamespace(effect="allow", allowed=True, rule="devs", reason="rule devs",
                               policy_version="v1")
    result = {"content": [{"type": "text", "text": "issue #4711 created"}],
              "resultType": "complete"}
    builder = RecordBuilder(redactor=Redactor())
    log = AuditLog(state / "per-call.sqlite3", load_or_create_signing_key(state), "bench-2")
    await log.start()
    cpu, loop_cpu = time.process_time(), time.thread_time()
    for _ in range(records):
        call = Call(request, {}, principal, target,  # type: ignore[arg-type]
                    {"policy": decision, "pin": {"status": "pinned", "sha256": "ab" * 32}})
        await log.log(builder.call(Outcome(call, time.time(), 0.0012, result=result)))
    loop_cpu = time.thread_time() - loop_cpu
    await log.aclose()
    cpu = time.process_time() - cpu
    return loop_cpu / records * 1e6, (cpu - loop_cpu) / records * 1e6


async def _verify_postgres(dsn: str) -> VerifyReport:
    reader = await PostgresReader.open(dsn)
    try:
        return await verify_store(reader)
    finally:
        await reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--policy", choices=("block", "drop"), default="block")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, default=None, help="default: a temporary file")
    where.add_argument("--dsn", default=None, help="a PostgreSQL database instead of SQLite")
    parser.add_argument("--per-call", action="store_true",
                        help="the gateway's audit cost per call (hot path and writer)")
    args = parser.parse_args()
    if args.per_call:
        with tempfile.TemporaryDirectory() as scratch:
            hot, writer = asyncio.run(_per_call(Path(scratch), min(args.records, 200_000)))
        print(f"per call: {hot:.1f} µs CPU on the event loop (record built, redacted, digested, "
              f"queued, chained); {writer:.1f} µs CPU in the writer thread (SQLite) "
              f"(target: <= 30 µs on the hot path)")
        return
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "audit.sqlite3"
        store: AuditStore | Path = PostgresStore(args.dsn) if args.dsn else db
        elapsed, dropped = asyncio.run(_write(store, Path(scratch) / "state", args.records,
                                              args.policy))
        size = "" if args.dsn else f"; file {db.stat().st_size / 1e6:.0f} MB"
        print(f"write:  {args.records:,} records in {elapsed:.2f} s = "
              f"{args.records / elapsed:,.0f} records/s (dropped {dropped:,}){size}")
        started = time.perf_counter()
        report = asyncio.run(_verify_postgres(args.dsn)) if args.dsn else verify_database(db)
        elapsed = time.perf_counter() - started
        print(f"verify: {sum(report.records.values()):,} records in {elapsed:.2f} s "
              f"({'intact' if report.ok else report.problem})")


if __name__ == "__main__":
    main()
