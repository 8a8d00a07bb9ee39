"""A private PostgreSQL server for tests: `postgres_server` (session) and `pg_dsn` (a fresh
database per test).

The fixture runs `initdb` into a temporary directory and starts `postgres` on a Unix socket
only (no TCP listener), as the `postgres` OS user when the tests run as root (PostgreSQL
refuses to run as root). Trust authentication on a socket in a 0700 directory: only this
user (and root) can connect. Binaries are found with `pg_config --bindir` or under
/usr/lib/postgresql/*/bin; when none is installed the tests FAIL and say how to install it.

Use it from a conftest: `from tests.postgres import pg_dsn, postgres_server  # noqa: F401`.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.live_server import free_port

_START_TIMEOUT = 30.0
_databases = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running private server: its socket directory, port and a DSN builder."""

    socket_dir: Path
    port: int

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"


def find_bindir() -> Path:
    """The directory holding initdb, postgres and pg_ctl; pytest.fail when absent."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                check=False, timeout=10)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "postgres", "pg_ctl")):
            return directory
    pytest.fail("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found: install them "
                "with `apt-get install postgresql` (the tests start a private server)")


def _as_owner(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: drop to the `postgres` OS user.
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root without runuser: cannot start PostgreSQL as `postgres`")
    return [runuser, "-u", "postgres", "--", *command]


def _start(bindir: Path, base: Path, *, durable: bool = False
           ) -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    """initdb into `base`/data and start the server; `durable=False` (tests) turns fsync off."""
    data, sockets, log = base / "data", base / "sock", base / "postgres.log"
    sockets.mkdir(mode=0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (base, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    init = subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "--no-sync", "-E", "UTF8",
                                     "--locale=C"]),
                          capture_output=True, text=True, check=False, timeout=120)
    if init.returncode != 0:
        pytest.fail(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
    port = free_port()
    fast = [] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                               "-c", "full_page_writes=off"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            _as_owner([str(bindir / "postgres"), "-D", str(data), "-k", str(sockets),
                       "-p", str(port), "-c", "listen_addresses=", *fast]),
            stdout=output, stderr=subprocess.STDOUT)
    server = PostgresServer(sockets, port)
    deadline = time.monotonic() + _START_TIMEOUT
    while not (sockets / f".s.PGSQL.{port}").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"PostgreSQL did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    ready = subprocess.run([str(bindir / "pg_isready"), "-h", str(sockets), "-p", str(port),
                            "-t", str(int(_START_TIMEOUT))], capture_output=True, check=False,
                           timeout=_START_TIMEOUT + 5)
    if ready.returncode != 0:
        process.kill()
        pytest.fail(f"PostgreSQL is not ready: {log.read_text(errors='replace')[-2000:]}")
    return server, process


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole test session."""
    bindir = find_bindir()
    # Not under pytest's 0700 root-owned tmp: the postgres user must reach the directory.
    base = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
    try:
        server, process = _start(bindir, base)
        try:
            yield server
        finally:
            subprocess.run(_as_owner([str(bindir / "pg_ctl"), "stop", "-D", str(base / "data"),
                                      "-m", "fast", "-w"]),
                           capture_output=True, check=False, timeout=60)
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def pg_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a new, empty database of its own for this test."""
    name = f"t{os.getpid()}_{next(_databases)}"
    connection = await asyncpg.connect(postgres_server.dsn(), timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return postgres_server.dsn(name)
