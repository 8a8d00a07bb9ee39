"""Benchmark of the audit trail: records/s sustained into SQLite through `AuditLog` (queue,
batching writer, checkpoints), then the time `verify_database` takes over them.

    python bench/audit_bench.py [--records 1000000] [--policy block] [--db PATH]

Targets (issue 8): >= 20,000 records/s written; 1,000,000 records verified in <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bastion.audit import AuditLog, load_or_create_signing_key, verify_database


async def _write(db: Path, state: Path, records: int, policy: str) -> tuple[float, int]:
    key = load_or_create_signing_key(state)
    log = AuditLog(db, key, "bench-1", full_policy=policy)  # type: ignore[arg-type]
    await log.start()
    started = time.perf_counter()
    for number in range(records):
        await log.log({"principal": {"sub": "alice", "client": "agent-7"},
                       "upstream": "github", "method": "tools/call",
                       "target": "create_issue", "args_digest": f"{number:064x}",
                       "decision": "allow", "latency_ms": number % 97})
    await log.aclose()
    return time.perf_counter() - started, log.dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--policy", choices=("block", "drop"), default="block")
    parser.add_argument("--db", type=Path, default=None, help="default: a temporary file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or Path(scratch) / "audit.sqlite3"
        elapsed, dropped = asyncio.run(_write(db, Path(scratch) / "state", args.records,
                                              args.policy))
        print(f"write:  {args.records:,} records in {elapsed:.2f} s = "
              f"{args.records / elapsed:,.0f} records/s (dropped {dropped:,}); "
              f"file {db.stat().st_size / 1e6:.0f} MB")
        started = time.perf_counter()
        report = verify_database(db)
        elapsed = time.perf_counter() - started
        print(f"verify: {sum(report.records.values()):,} records in {elapsed:.2f} s "
              f"({'intact' if report.ok else report.problem})")


if __name__ == "__main__":
    main()
