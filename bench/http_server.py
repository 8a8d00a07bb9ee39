"""Server cost of one MCP `tools/call` over Streamable HTTP: Bastion vs. the official SDK.

    python bench/http_server.py [--calls 3000] [--repeat 1] [--servers bastion,sdk,echo]
                                [--json PATH] [--profile cprofile|py-spy]

Starts each server as a child process on a loopback port (its own process group):

* `bastion`: the conformance fixture, `python -m bastion.testing.everything --http`; one
  process answers both eras;
* `sdk`: the official SDK's `MCPServer` (`bench/servers.py sdk`), started the documented way
  (`srv.run(transport="streamable-http")`), in the configuration closest to each leg:
  modern JSON ← `json_response=True, stateless_http=True` (the SDK routes 2026-07-28
  requests to its stateless single-exchange path whatever `stateless_http` says);
  legacy SSE ← `json_response=False, stateless_http=False` (sessions, SSE answers);
  legacy JSON ← `json_response=True, stateless_http=False`. `sdk-uvloop` is the same three
  on uvicorn with uvloop, like Bastion (`srv.run` uses the asyncio loop of `anyio.run`);
* `echo`: a bare uvicorn + httptools + uvloop ASGI echo, the floor.

Then, for each leg (server, era, concurrency 1 and 16), it runs `bench/loadgen.py` in its own
process (so that the client does not share a CPU budget with the server): the load generator
opens its connections (and legacy sessions), warms up, says READY; the bench reads the
server's CPU time (utime + stime of `/proc/<pid>/stat`), lets the `--calls` calls run, and
reads it again. Reported per leg: calls/s, p50 and p99 latency (ms), the server's CPU µs per
call (CPU delta / calls), the server's CPU use over the leg (100 % = one core saturated: the
server is the bottleneck) and the client's CPU µs per call. Every response is checked; a leg
with errors is flagged. With `--repeat R` the legs run R times, interleaved, and the table
shows the median of each figure.

Legacy legs send `Accept: application/json, text/event-stream`; the server chooses the
answer's media type (Bastion answers JSON when the reply is all there is, the SDK in SSE mode
answers SSE), and the table shows what came back. The `legacy, SSE asked` leg of Bastion sends
`Accept: text/event-stream` to make it answer SSE.

`--profile` profiles Bastion's server during its measured legs only (the figures of a
profiled run are inflated; measure without it): `cprofile` turns cProfile on in the child
(SIGUSR1/SIGUSR2, see `bench/servers.py`), `py-spy` samples it from outside (`py-spy` must
be installed). The profiles go to `--profile-dir` and the top functions are printed.

Bounded: loopback only, fixed call counts, a timeout on every wait, children killed (by
process group) on every exit path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
#: The work tree this bench belongs to: its `bastion` is the one measured, whatever
#: editable install the environment points at.
ROOT = HERE.parent
LOADGEN = HERE / "loadgen.py"
SERVERS = HERE / "servers.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_US = 150.0
START_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
CONCURRENCIES = (1, 16)


# -- servers and legs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str  # the table's short name
    config: str  # the legend's long description
    argv: tuple[str, ...]  # "{port}" is replaced


@dataclass(frozen=True)
class LegSpec:
    server: str  # ServerSpec.key
    leg: str  # "modern JSON", "legacy", ...
    era: str  # loadgen --era
    sse_only: bool = False


def server_specs(profile_dir: Path | None, profile: str | None) -> dict[str, ServerSpec]:
    py = sys.executable
    if profile == "cprofile":
        assert profile_dir is not None
        bastion_argv: tuple[str, ...] = (py, str(SERVERS), "bastion", "--port", "{port}",
                                         "--profile-to", str(profile_dir / "raw"))
    else:
        bastion_argv = (py, "-m", "bastion.testing.everything", "--http", "127.0.0.1:{port}")
    sdk = (py, str(SERVERS), "sdk", "--port", "{port}")
    specs = [
        ServerSpec("bastion", "Bastion",
                   "the conformance fixture (python -m bastion.testing.everything --http), "
                   "uvicorn httptools + uvloop, both eras in one process", bastion_argv),
        ServerSpec("echo", "ASGI echo", "bare ASGI echo, uvicorn httptools + uvloop",
                   (py, str(SERVERS), "echo", "--port", "{port}")),
    ]
    for suffix, extra, how in (
            ("", (), "srv.run(transport='streamable-http'): httptools, asyncio loop"),
            ("-uvloop", ("--uvloop",), "streamable_http_app() on uvicorn httptools + uvloop")):
        tag = " uvloop" if suffix else ""
        specs += [
            ServerSpec(f"sdk-json{suffix}", f"SDK json{tag}",
                       f"MCPServer, json_response=True, stateless_http=True, {how}",
                       (*sdk, "--json-response", "--stateless", *extra)),
            ServerSpec(f"sdk-sse{suffix}", f"SDK sse+sessions{tag}",
                       f"MCPServer, json_response=False, stateless_http=False, {how}",
                       (*sdk, *extra)),
            ServerSpec(f"sdk-json-stateful{suffix}", f"SDK json+sessions{tag}",
                       f"MCPServer, json_response=True, stateless_http=False, {how}",
                       (*sdk, "--json-response", *extra)),
        ]
    return {spec.key: spec for spec in specs}


GROUPS: dict[str, list[LegSpec]] = {
    "bastion": [
        LegSpec("bastion", "modern", "modern"),
        LegSpec("bastion", "legacy", "legacy"),
        LegSpec("bastion", "legacy, SSE asked", "legacy", sse_only=True),
    ],
    "sdk": [
        LegSpec("sdk-json", "modern", "modern"),
        LegSpec("sdk-sse", "legacy", "legacy"),
        LegSpec("sdk-json-stateful", "legacy", "legacy"),
    ],
    "sdk-uvloop": [
        LegSpec("sdk-json-uvloop", "modern", "modern"),
        LegSpec("sdk-sse-uvloop", "legacy", "legacy"),
        LegSpec("sdk-json-stateful-uvloop", "legacy", "legacy"),
    ],
    "echo": [LegSpec("echo", "echo", "echo")],
}


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads, dead ones included), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """End a child started with `start_new_session=True` and its whole process group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)


@dataclass
class Child:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def log_tail(self, size: int = 2000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-size:]


def start_server(spec: ServerSpec) -> Child:
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in spec.argv]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the child's log, closed by the caller)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, cwd=ROOT, env=env)
    child = Child(spec, port, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{spec.key} exited with {proc.returncode}:\n"
                                   f"{child.log_tail()}")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", port), 0.2):
                return child
            time.sleep(0.05)
        raise RuntimeError(f"{spec.key} did not listen on {port} within {START_TIMEOUT} s:\n"
                           f"{child.log_tail()}")
    except BaseException:
        kill_group(proc)
        log.close()
        raise


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or '' at EOF; TimeoutError after `timeout` s."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no output from the load generator within {timeout:.0f} s")
    return proc.stdout.readline()


# -- profiling (Bastion only) -----------------------------------------------------------------


class Profiler:
    """Profiles the Bastion child during one leg: cProfile (signals) or py-spy (sampling)."""

    def __init__(self, kind: str | None, directory: Path | None) -> None:
        self.kind = kind
        self.directory = directory
        self.spy: subprocess.Popen[bytes] | None = None
        self.files: list[Path] = []

    def start(self, child: Child, name: str) -> None:
        if self.kind is None or child.spec.key != "bastion":
            return
        assert self.directory is not None
        if self.kind == "cprofile":
            os.kill(child.proc.pid, signal.SIGUSR1)
            return
        out = self.directory / f"{name}.txt"
        self.spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(child.proc.pid), "--rate", "1000",
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.files.append(out)
        time.sleep(0.5)  # let py-spy attach before the measured calls

    def stop(self, child: Child, name: str) -> None:
        if self.kind is None or child.spec.key != "bastion":
            return
        assert self.directory is not None
        if self.kind == "cprofile":
            raw = self.directory / "raw"
            before = set(raw.glob("*.prof")) if raw.exists() else set()
            os.kill(child.proc.pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                new = (set(raw.glob("*.prof")) if raw.exists() else set()) - before
                if new:
                    time.sleep(0.2)  # let the dump finish
                    target = self.directory / f"{name}.prof"
                    new.pop().replace(target)
                    self.files.append(target)
                    return
                time.sleep(0.05)
            return
        if self.spy is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.spy.pid, signal.SIGINT)
            try:
                self.spy.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(self.spy, signal.SIGKILL)
            self.spy = None

    def report(self, console: Console, top: int) -> None:
        for path in self.files:
            if not path.exists():
                console.print(f"[red]no profile written at {path}[/]")
                continue
            console.rule(f"profile {path.name}")
            if path.suffix == ".prof":
                stats = pstats.Stats(str(path))
                stats.sort_stats("tottime").print_stats(top)
                stats.sort_stats("cumulative").print_stats(top)
            else:
                print_collapsed(path, console, top)


def print_collapsed(path: Path, console: Console, top: int) -> None:
    """Self and inclusive sample shares per function of a py-spy raw (collapsed) file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        console.print("no samples")
        return
    for title, counter in (("self", own), ("inclusive", inclusive)):
        console.print(f"[bold]{title}[/] ({total} samples)")
        for frame, count in counter.most_common(top):
            console.print(f"  {100 * count / total:5.1f} %  {frame}", highlight=False)


# -- one leg ----------------------------------------------------------------------------------


@dataclass
class LegResult:
    leg: LegSpec
    concurrency: int
    runs: list[dict[str, Any]] = field(default_factory=list)


def run_leg(child: Child, leg: LegSpec, concurrency: int, calls: int, warmup: int,
            profiler: Profiler, loop: str) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), child.url, "--era", leg.era,
            "--concurrency", str(concurrency), "--calls", str(calls),
            "--warmup", str(warmup), "--wait-go", "--loop", loop]
    if leg.sse_only:
        argv.append("--sse-only")
    name = f"{leg.server}-{leg.leg.replace(', ', '-').replace(' ', '-')}-c{concurrency}"
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    profiling = False
    try:
        line = read_line(proc, READY_TIMEOUT)
        if line.strip() != "READY":
            raise RuntimeError(f"load generator: {line.strip() or proc.stderr.read()[-2000:]}")
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.spec.key} died:\n{child.log_tail()}")
        profiler.start(child, name)
        profiling = True
        assert proc.stdin is not None
        server0, client0, wall0 = cpu_times(child.proc.pid), cpu_times(proc.pid), \
            time.perf_counter()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        line = read_line(proc, max(READY_TIMEOUT, calls * 0.05))
        server1, client1, wall1 = cpu_times(child.proc.pid), cpu_times(proc.pid), \
            time.perf_counter()
        profiling = False
        profiler.stop(child, name)
        if not line:
            raise RuntimeError(f"load generator died: {proc.stderr.read()[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        if "fatal" in result:
            raise RuntimeError(f"load generator: {result['fatal']}")
    finally:
        if profiling:
            profiler.stop(child, name)
        kill_group(proc)
    calls = result["calls"]
    user, system = server1[0] - server0[0], server1[1] - server0[1]
    result["server_cpu_us_per_call"] = (user + system) * 1e6 / calls
    result["server_user_us_per_call"] = user * 1e6 / calls
    result["server_system_us_per_call"] = system * 1e6 / calls
    result["server_cpu_share"] = (user + system) / (wall1 - wall0)
    result["client_cpu_us_per_call"] = (sum(client1) - sum(client0)) * 1e6 / calls
    return result


# -- the run ----------------------------------------------------------------------------------


def load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("bastion", "mcp", "uvicorn", "httptools", "uvloop", "aiohttp"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def source_fingerprint() -> str:
    """A digest of Bastion's source files: which code the figures are of (work in progress
    has no commit)."""
    import hashlib

    digest = hashlib.sha256()
    root = ROOT / "bastion"
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def build_table(results: list[LegResult], specs: dict[str, ServerSpec], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("server", "era", "answer", "conc.", "calls/s", "p50 ms", "p99 ms",
                   "server CPU µs/call", "user/sys", "server CPU", "client CPU µs/call",
                   "errors"):
        table.add_column(column, justify="left" if column in ("server", "era", "answer")
                         else "right")
    previous = None
    for result in results:
        spec = specs[result.leg.server]
        runs = result.runs
        if not runs:
            continue
        media: Counter[str] = Counter()
        for run in runs:
            media.update(run["media_types"])
        answer = ", ".join(m.replace("application/", "").replace("text/event-stream", "SSE")
                           for m in media)
        cpu = median(runs, "server_cpu_us_per_call")
        cpu_text = f"{cpu:.0f}"
        if spec.key == "bastion":
            met = round(cpu) <= TARGET_US  # as printed: 150.000001 µs is 150 µs
            cpu_text = f"[green]{cpu:.0f}[/]" if met else f"[red]{cpu:.0f}[/]"
        errors = sum(run["errors"] for run in runs)
        if previous is not None and previous != spec.key:
            table.add_section()
        previous = spec.key
        table.add_row(
            spec.label, result.leg.leg, answer, str(result.concurrency),
            f"{median(runs, 'calls_per_s'):.0f}",
            f"{median(runs, 'latency_ms', 'p50'):.3f}",
            f"{median(runs, 'latency_ms', 'p99'):.3f}",
            cpu_text,
            f"{median(runs, 'server_user_us_per_call'):.0f}/"
            f"{median(runs, 'server_system_us_per_call'):.0f}",
            f"{100 * median(runs, 'server_cpu_share'):.0f} %",
            f"{median(runs, 'client_cpu_us_per_call'):.0f}",
            f"[red]{errors}[/]" if errors else "0",
        )
    return table


def parse_concurrencies(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """`--concurrency 1,8` as a list of levels in 1..256 (a parser error otherwise)."""
    try:
        levels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency takes integers, e.g. 1,8")
    if not levels or min(levels) < 1 or max(levels) > 256:
        parser.error("--concurrency levels must be in 1..256")
    return levels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per leg")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured calls per leg")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every leg this many times (interleaved); report medians")
    parser.add_argument("--servers", default="bastion,sdk,echo",
                        help=f"comma-separated, of: {', '.join(GROUPS)}")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)),
                        help="comma-separated concurrency levels (default 1,16)")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write every figure as JSON to PATH ('-' for stdout)")
    parser.add_argument("--profile", choices=("cprofile", "py-spy"), default=None,
                        help="profile Bastion's server during its legs (inflates its figures)")
    parser.add_argument("--profile-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "bastion-bench-profiles")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    groups = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in groups if name not in GROUPS]
    if unknown or not groups:
        parser.error(f"unknown --servers {unknown}; choose from {', '.join(GROUPS)}")
    args.groups = groups
    args.concurrencies = parse_concurrencies(parser, args.concurrency)
    if not 1 <= args.calls <= 1_000_000 or not 0 <= args.warmup <= 100_000:
        parser.error("--calls must be in 1..1e6 and --warmup in 0..1e5")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be in 1..20")
    if args.profile == "py-spy" and shutil.which("py-spy") is None:
        parser.error("--profile py-spy needs py-spy on PATH (pip install py-spy)")
    return args


@contextlib.contextmanager
def servers_running(specs: list[ServerSpec]) -> Iterator[dict[str, Child]]:
    children: dict[str, Child] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for spec in specs:
            children[spec.key] = start_server(spec)
        yield children
    finally:
        for child in children.values():
            kill_group(child.proc)
            child.log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_all(args: argparse.Namespace, console: Console, specs: dict[str, ServerSpec],
            needed: list[str], results: list[LegResult], profiler: Profiler,
            failures: list[str]) -> None:
    """Start the servers, run every leg `args.repeat` times, stop the servers."""
    with servers_running([specs[key] for key in needed]) as children:
        for round_index in range(args.repeat):
            for result in results:
                child = children[result.leg.server]
                console.print(f"round {round_index + 1}: {child.spec.label}, {result.leg.leg}, "
                              f"concurrency {result.concurrency}", highlight=False)
                run = attempt_leg(
                    f"{child.spec.key} {result.leg.leg} c{result.concurrency}",
                    functools.partial(run_leg, child, result.leg, result.concurrency,
                                      args.calls, args.warmup, profiler if round_index == 0
                                      else Profiler(None, None), args.client_loop),
                    console, failures)
                if run is not None:
                    result.runs.append(run)


def attempt_leg(label: str, run: Callable[[], dict[str, Any]], console: Console,
                failures: list[str]) -> dict[str, Any] | None:
    """Run one leg; a leg that fails, or whose calls failed, is noted in `failures`
    (a failed leg gives None, so the others still run)."""
    try:
        result = run()
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        failures.append(f"{label}: {exc}")
        console.print(f"[red]failed: {exc}[/]")
        return None
    if result["errors"]:
        failures.append(f"{label}: {result['errors']} errors, e.g. {result['error_samples']}")
    return result


def write_json(document: dict[str, Any], target: str) -> None:
    """The run's figures as JSON, to a file or (`-`) to standard output."""
    text = json.dumps(document, indent=2)
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    profile_dir: Path | None = args.profile_dir.resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    specs = server_specs(profile_dir, args.profile)
    legs = [leg for group in args.groups for leg in GROUPS[group]]
    needed = list(dict.fromkeys(leg.server for leg in legs))
    results = [LegResult(leg, c) for leg in legs for c in args.concurrencies]
    profiler = Profiler(args.profile, profile_dir)
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    fingerprint = source_fingerprint()
    console.print(f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
                  f"(1/5/15 min) {load_before}; {args.calls} calls per leg after "
                  f"{args.warmup} warm-up calls, {args.repeat} round(s); Bastion source "
                  f"{ROOT / 'bastion'} (sha256 of its *.py: {fingerprint})", highlight=False)
    failures: list[str] = []
    try:
        run_all(args, console, specs, needed, results, profiler, failures)
    except RuntimeError as exc:  # a server that would not start
        console.print(f"[red]{exc}[/]", highlight=False)
        return 2
    load_after = load_average()
    title = (f"tools/call over Streamable HTTP, {args.calls} calls per leg, median of "
             f"{args.repeat} round(s); load average before {load_before}, after {load_after}")
    console.print(build_table(results, specs, title))
    for key in needed:
        console.print(f"  {specs[key].label}: {specs[key].config}", highlight=False)
    bastion = [median(r.runs, "server_cpu_us_per_call") for r in results
               if r.leg.server == "bastion" and r.runs]
    if bastion:
        worst = max(bastion)
        verdict = "met" if round(worst) <= TARGET_US else "missed"
        note = " (profiled run: figures inflated)" if args.profile else ""
        step = 1e6 / CLK_TCK / args.calls
        console.print(f"Target: Bastion ≤ {TARGET_US:.0f} µs server CPU per call: {verdict} "
                      f"(worst leg {worst:.0f} µs; CPU is counted in steps of {step:.1f} µs "
                      f"per call at {args.calls} calls){note}", highlight=False)
    for failure in failures:
        console.print(f"[red]{failure}[/]", highlight=False)
    if args.profile:
        profiler.report(console, args.profile_top)
    if args.json:
        document = {
            "started": started.isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "calls": args.calls, "warmup": args.warmup, "repeat": args.repeat,
            "profile": args.profile,
            "versions": versions(),
            "bastion_source_sha256": fingerprint,
            "target_us": TARGET_US,
            "legs": [{"server": r.leg.server, "label": specs[r.leg.server].label,
                      "configuration": specs[r.leg.server].config, "leg": r.leg.leg,
                      "concurrency": r.concurrency, "runs": r.runs} for r in results],
            "failures": failures,
        }
        write_json(document, args.json)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
