"""Benchmark of the audit trail: records/s sustained through `AuditLog` (queue, batching
writer, checkpoints) into SQLite or PostgreSQL, then the time verification takes over them.

    python bench/audit_bench.py [--records 1000000] [--policy block] [--db PATH | --dsn URI]

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
    args = parser.parse_args()
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
