"""Cost of the gateway: `tools/call` to an upstream directly, through a bare relay, through
`bastion serve`, and through FastMCP's proxy, under the same load in one run.

    python bench/gateway.py [--duration 5] [--concurrency 1,8] [--eras modern,legacy]
                            [--cases direct,relay,relay-aiohttp,gateway,fastmcp,
                                     fastmcp-shared,gateway-stdio]
                            [--repeat 1] [--json PATH] [--profile-gateway DIR]
    python -m bench.gateway ...          # the same, from the repository's root

Processes, each a child in its own process group on a free loopback port
(`bench/gateway_peers.py` has the code of all but the gateway):

* **upstream**: a Bastion `Server` with one tool, `echo(text)`, on Streamable HTTP
  (`uvicorn_server`: httptools, uvloop); one process answers both eras;
* **relay**: the floor, a bare ASGI app on the gateway's own stack (uvicorn, httptools,
  uvloop, Bastion's `HTTPClient`) that forwards bytes to the upstream and back: what any
  HTTP-to-HTTP gateway built on these pieces costs before it does anything;
  **relay-aiohttp**: the same relay forwarding with aiohttp, to show what the client choice
  is worth;
* **gateway**: `bastion serve --config <generated file> --http 127.0.0.1:PORT` (which runs
  on uvloop), the upstream declared with `url:` and `prefix: ""` (so `echo` is `echo` on
  both paths), the default guard stages, `BASTION_STATE_DIR` in a temporary directory;
* **gateway-stdio**: another `bastion serve`, whose upstream is the same echo server as a
  stdio child of the gateway (no direct leg: stdio cannot take HTTP load);
* **fastmcp**: FastMCP's proxy as documented, `create_proxy(url)` served with
  `.run(transport="http")`: a fresh upstream session per request; **fastmcp-shared**: the
  same with a connected `fastmcp.Client`, which reuses one upstream session.

Legs: for each case, client era (modern 2026-07-28; legacy 2025-11-25 with one session per
worker) and concurrency, `bench/loadgen.py` runs in a process of its own (through
`gateway_peers.py load`, which makes it call `echo` with a text and check that every answer
echoes it): connections and sessions open, warm-up calls, READY; the driver reads the CPU
time (`/proc/<pid>/stat`) of the process under test (the upstream for `direct`, the relay,
the gateway, the FastMCP proxy), of the upstream and of the client, lets the load run for
`--duration` seconds, and reads them again. Reported per leg: calls/s, p50/p99 latency,
CPU µs per call of the process under test and of the upstream, p50 added to the direct leg
of the same era and concurrency, and for the gateway the ratio of its calls/s to FastMCP's.
With `--repeat R` the legs run R times, interleaved, and the table shows medians.

Targets (the issue's performance section): ≤ 250 µs of gateway CPU per proxied call and
≤ 0.5 ms added p50 at concurrency 1; the verdict is printed under the table.

Bounded: loopback only, a fixed duration per leg, a timeout on every wait, children killed
by process group on every exit path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/ is not a package: its own directory is on the path

from http_server import (  # noqa: E402
    CLK_TCK,
    READY_TIMEOUT,
    ROOT,
    Child,
    ServerSpec,
    attempt_leg,
    cpu_times,
    kill_group,
    load_average,
    median,
    parse_concurrencies,
    print_collapsed,
    read_line,
    source_fingerprint,
    start_server,
    versions,
    write_json,
)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

PEERS = HERE / "gateway_peers.py"
CPU_TARGET_US = 250.0
ADDED_P50_TARGET_MS = 0.5
ERAS = ("modern", "legacy")
CONCURRENCIES = (1, 8)
#: case key -> (table label, what the process under test is)
CASES: dict[str, tuple[str, str]] = {
    "direct": ("direct", "the upstream"),
    "gateway": ("gateway", "bastion serve, HTTP upstream"),
    "gateway-noaudit": ("gateway, audit off", "bastion serve, HTTP upstream, audit.enabled "
                        "false (what the audit trail costs: gateway minus this)"),
    "gateway-bare": ("gateway, no audit/metrics/alerts",
                     "bastion serve, HTTP upstream, audit, metrics, health probes and anomaly "
                     "rules off (guard stages only)"),
    "gateway-traced": ("gateway, traced", "bastion serve, HTTP upstream, defaults plus "
                       "tracing (every request sampled; spans made, not exported)"),
    "gateway-stdio": ("gateway, stdio upstream", "bastion serve, the upstream as its child"),
    "gateway-auth": ("gateway, JWT + policy",
                     "bastion serve, HTTP upstream, auth.mode dev (a signed JWT per request) "
                     "and a default-deny policy with one allow rule"),
    "fastmcp": ("FastMCP proxy", "create_proxy(url): a fresh upstream session per request"),
    "fastmcp-shared": ("FastMCP proxy, shared", "create_proxy(connected Client)"),
    "relay": ("bare relay (floor)",
              "uvicorn + Bastion's HTTPClient forwarding bytes, no MCP logic"),
    "relay-aiohttp": ("bare relay, aiohttp",
                      "the same relay forwarding with aiohttp instead of Bastion's HTTPClient"),
}
DEFAULT_CASES = ("direct", "relay", "relay-aiohttp", "gateway", "gateway-auth", "fastmcp",
                 "fastmcp-shared", "gateway-stdio")
#: Gateway cases that differ from `gateway` only in their settings: what each part costs.
VARIANTS: dict[str, dict[str, Any]] = {
    "gateway-noaudit": {"audit": {"enabled": False}},
    "gateway-bare": {"audit": {"enabled": False}, "metrics": {"enabled": False},
                     "health": {"enabled": False}, "anomalies": {"enabled": False}},
    "gateway-traced": {"tracing": {"enabled": True}},
}
#: The resource URL of the authenticated gateway (the `aud` of its bench token).
AUTH_RESOURCE = "https://bench.example/mcp"
#: relay case -> the client its relay forwards with (gateway_peers.py relay --client)
RELAY_CLIENT_OF = {"relay": "bastion", "relay-aiohttp": "aiohttp"}


# -- processes --------------------------------------------------------------------------------


def gateway_config(directory: Path, name: str, upstream: dict[str, Any],
                   protocol: str, **settings: Any) -> Path:
    """Write a gateway configuration with one upstream, names unprefixed; its path."""
    document = {"mcpServers": {"echo": {**upstream, "prefix": "", "protocol": protocol}},
                **settings}
    path = directory / f"{name}.yaml"
    # JSON is YAML: no need for a YAML writer here.
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def bench_token(state_dir: Path) -> str:
    """A development token for the authenticated gateway (role `bench`, valid for a day)."""
    from bastion.guard.identity import load_or_create_dev_key, mint_dev_token

    key = load_or_create_dev_key(state_dir)
    return mint_dev_token(key, audience=AUTH_RESOURCE, subject="bench", roles=["bench"],
                          groups=[], scopes=[], client_id="loadgen", ttl=86400)


def gateway_argv(config: Path) -> tuple[str, ...]:
    return (sys.executable, "-m", "bastion.cli", "serve", "--config", str(config),
            "--http", "127.0.0.1:{port}", "--log-level", "warning")


def child_pids(pid: int) -> list[int]:
    """The children of a process (of all its threads)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(p) for p in children.read().split()]
    return found


@dataclass
class Target:
    """What one case's legs load and measure."""

    case: str
    child: Child  # the process under test (for `direct`, the upstream itself)
    upstream_pid: int
    #: The bearer token the load generator sends (authenticated cases).
    token: str | None = None


@contextlib.contextmanager
def processes_running(cases: list[str], workdir: Path,
                      upstream_protocol: str) -> Iterator[dict[str, Target]]:
    """Start the upstream and every case's process under test; stop them all at the end."""
    started: list[Child] = []

    def start(key: str, label: str, argv: tuple[str, ...]) -> Child:
        child = start_server(ServerSpec(key, label, label, argv))
        started.append(child)
        return child

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        targets: dict[str, Target] = {}
        if any(case != "gateway-stdio" for case in cases):
            upstream = start("upstream", "echo upstream",
                             (sys.executable, str(PEERS), "upstream", "--port", "{port}"))
            targets["direct"] = Target("direct", upstream, upstream.proc.pid)
        for case in cases:
            if case == "gateway":
                config = gateway_config(workdir, case, {"url": upstream.url}, upstream_protocol)
                targets[case] = Target(case, start(case, "gateway", gateway_argv(config)),
                                       upstream.proc.pid)
            elif case in VARIANTS:
                config = gateway_config(workdir, case, {"url": upstream.url}, upstream_protocol,
                                        state_dir=str(workdir / f"{case}-state"),
                                        **VARIANTS[case])
                targets[case] = Target(case, start(case, CASES[case][0], gateway_argv(config)),
                                       upstream.proc.pid)
            elif case == "gateway-auth":
                state = workdir / "auth-state"
                config = gateway_config(
                    workdir, case, {"url": upstream.url}, upstream_protocol,
                    state_dir=str(state), auth={"mode": "dev", "resource": AUTH_RESOURCE},
                    policy={"rules": [{"name": "bench", "effect": "allow", "roles": ["bench"]}]})
                targets[case] = Target(case, start(case, "gateway, auth", gateway_argv(config)),
                                       upstream.proc.pid, bench_token(state))
            elif case == "gateway-stdio":
                stdio = {"command": sys.executable, "args": [str(PEERS), "upstream", "--stdio"]}
                config = gateway_config(workdir, case, stdio, upstream_protocol)
                child = start(case, "gateway, stdio", gateway_argv(config))
                pids = child_pids(child.proc.pid)
                if len(pids) != 1:
                    raise RuntimeError(f"the stdio gateway should have one child (its "
                                       f"upstream), it has {pids}:\n{child.log_tail()}")
                targets[case] = Target(case, child, pids[0])
            elif case in RELAY_CLIENT_OF:
                argv = (sys.executable, str(PEERS), "relay", "--port", "{port}",
                        "--upstream", upstream.url, "--client", RELAY_CLIENT_OF[case])
                targets[case] = Target(case, start(case, case, argv), upstream.proc.pid)
            elif case.startswith("fastmcp"):
                argv = (sys.executable, str(PEERS), "fastmcp", "--port", "{port}",
                        "--upstream", upstream.url)
                shared = ("--shared",) if case == "fastmcp-shared" else ()
                targets[case] = Target(case, start(case, case, (*argv, *shared)),
                                       upstream.proc.pid)
        yield {case: targets[case] for case in cases}
    finally:
        for child in reversed(started):
            kill_group(child.proc)
            child.log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- one leg ----------------------------------------------------------------------------------


class GatewaySampler:
    """py-spy samples of the process under test during the gateway's measured legs."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.files: list[Path] = []

    @contextlib.contextmanager
    def around(self, target: Target, name: str) -> Iterator[None]:
        if self.directory is None or not target.case.startswith("gateway"):
            yield
            return
        out = self.directory / f"{name}.txt"
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(target.child.proc.pid), "--rate", "1000",
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.files.append(out)
        time.sleep(0.5)  # let py-spy attach before the measured calls
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spy.pid, signal.SIGINT)
            try:
                spy.wait(15)
            except subprocess.TimeoutExpired:
                kill_group(spy, signal.SIGKILL)


def run_leg(target: Target, era: str, concurrency: int, args: argparse.Namespace,
            sampler: GatewaySampler) -> dict[str, Any]:
    """One measured leg: the load generator's result plus CPU µs per call of each process."""
    argv = [sys.executable, str(PEERS), "load", target.child.url, "--era", era,
            "--concurrency", str(concurrency), "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--wait-go", "--loop", args.client_loop]
    env = {**os.environ, "BENCH_TOKEN": target.token or ""}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    name = f"{target.case}-{era}-c{concurrency}"
    try:
        line = read_line(proc, READY_TIMEOUT)
        if line.strip() != "READY":
            raise RuntimeError(f"load generator: {line.strip() or proc.stderr.read()[-2000:]}")
        assert proc.stdin is not None
        pids = {"tested": target.child.proc.pid, "upstream": target.upstream_pid,
                "client": proc.pid}
        with sampler.around(target, name):
            before = {role: sum(cpu_times(pid)) for role, pid in pids.items()}
            wall0 = time.perf_counter()
            proc.stdin.write("GO\n")
            proc.stdin.flush()
            line = read_line(proc, args.duration + READY_TIMEOUT)
            after = {role: sum(cpu_times(pid)) for role, pid in pids.items()}
            wall = time.perf_counter() - wall0
        if not line:
            raise RuntimeError(f"load generator died: {proc.stderr.read()[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        if "fatal" in result:
            raise RuntimeError(f"load generator: {result['fatal']}")
    finally:
        kill_group(proc)
    calls = max(1, result["calls"])
    for role in pids:
        result[f"{role}_cpu_us_per_call"] = (after[role] - before[role]) * 1e6 / calls
    result["tested_cpu_share"] = (after["tested"] - before["tested"]) / wall
    return result


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Leg:
    case: str
    era: str
    concurrency: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def figure(self, *path: str) -> float | None:
        return median(self.runs, *path) if self.runs else None


def find(legs: list[Leg], case: str, era: str, concurrency: int) -> Leg | None:
    for leg in legs:
        if (leg.case, leg.era, leg.concurrency) == (case, era, concurrency) and leg.runs:
            return leg
    return None


def added_p50(legs: list[Leg], leg: Leg) -> float | None:
    direct = find(legs, "direct", leg.era, leg.concurrency)
    if leg.case in ("direct", "gateway-stdio") or direct is None or not leg.runs:
        return None
    return median(leg.runs, "latency_ms", "p50") - median(direct.runs, "latency_ms", "p50")


def ratio(legs: list[Leg], leg: Leg, other: str) -> float | None:
    """The gateway's calls/s over those of case `other`, same era and concurrency."""
    versus = find(legs, other, leg.era, leg.concurrency)
    if leg.case != "gateway" or versus is None or not leg.runs:
        return None
    return median(leg.runs, "calls_per_s") / median(versus.runs, "calls_per_s")


def verdicts(legs: list[Leg]) -> list[str]:
    """The two targets, judged on the HTTP gateway's legs."""
    lines = []
    gateway = [leg for leg in legs if leg.case == "gateway" and leg.runs]
    if gateway:
        worst = max(gateway, key=lambda leg: median(leg.runs, "tested_cpu_us_per_call"))
        cpu = median(worst.runs, "tested_cpu_us_per_call")
        met = "met" if round(cpu) <= CPU_TARGET_US else "MISSED"
        lines.append(f"Target ≤ {CPU_TARGET_US:.0f} µs gateway CPU per proxied call: {met} "
                     f"(worst leg: {worst.era}, concurrency {worst.concurrency}, {cpu:.0f} µs)")
    added = [(leg, added_p50(legs, leg)) for leg in gateway if leg.concurrency == 1]
    added = [(leg, value) for leg, value in added if value is not None]
    if added:
        leg, value = max(added, key=lambda pair: pair[1])
        met = "met" if value <= ADDED_P50_TARGET_MS else "MISSED"
        lines.append(f"Target ≤ {ADDED_P50_TARGET_MS} ms added p50 at concurrency 1: {met} "
                     f"(worst: {leg.era}, +{value:.3f} ms)")
    return lines


def cell(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def build_table(legs: list[Leg], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    columns = ("case", "era", "conc.", "calls/s", "p50 ms", "p99 ms", "CPU µs/call",
               "CPU use", "upstream CPU µs/call", "added p50 ms", "gw/FastMCP calls/s",
               "gw/FastMCP shared", "errors")
    for column in columns:
        table.add_column(column, justify="left" if column in ("case", "era") else "right")
    previous = None
    for leg in legs:
        if not leg.runs:
            continue
        if previous is not None and previous != leg.case:
            table.add_section()
        previous = leg.case
        cpu = median(leg.runs, "tested_cpu_us_per_call")
        cpu_text = f"{cpu:.0f}"
        if leg.case.startswith("gateway"):
            cpu_text = f"[{'green' if round(cpu) <= CPU_TARGET_US else 'red'}]{cpu_text}[/]"
        errors = sum(run["errors"] for run in leg.runs)
        # For `direct` the process under test is the upstream: one figure, not two.
        upstream = None if leg.case == "direct" else leg.figure("upstream_cpu_us_per_call")
        table.add_row(
            CASES[leg.case][0], leg.era, str(leg.concurrency),
            f"{median(leg.runs, 'calls_per_s'):.0f}",
            f"{median(leg.runs, 'latency_ms', 'p50'):.3f}",
            f"{median(leg.runs, 'latency_ms', 'p99'):.3f}",
            cpu_text, f"{100 * median(leg.runs, 'tested_cpu_share'):.0f} %",
            cell(upstream, ".0f"), cell(added_p50(legs, leg), "+.3f"),
            cell(ratio(legs, leg, "fastmcp"), ".1f"),
            cell(ratio(legs, leg, "fastmcp-shared"), ".1f"),
            f"[red]{errors}[/]" if errors else "0")
    return table


def parse_list(parser: argparse.ArgumentParser, text: str, allowed: tuple[str, ...],
               option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        parser.error(f"unknown {option} {unknown}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0,
                        help="measured seconds per leg (default 5)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls per leg")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)),
                        help="comma-separated concurrency levels (default 1,8)")
    parser.add_argument("--eras", default=",".join(ERAS), help="modern, legacy or both")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every leg this many times (interleaved); report medians")
    parser.add_argument("--upstream-protocol", choices=("auto", "modern", "legacy"),
                        default="auto", help="the gateway's `protocol:` for its upstream")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write every figure as JSON to PATH ('-' for stdout)")
    parser.add_argument("--profile-gateway", metavar="DIR", type=Path, default=None,
                        help="py-spy the gateway during its legs (inflates its figures)")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    args.case_list = parse_list(parser, args.cases, tuple(CASES), "--cases")
    args.era_list = parse_list(parser, args.eras, ERAS, "--eras")
    args.concurrencies = parse_concurrencies(parser, args.concurrency)
    if not 0.5 <= args.duration <= 600 or not 0 <= args.warmup <= 100_000:
        parser.error("--duration must be in 0.5..600 s and --warmup in 0..1e5")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be in 1..20")
    fastmcp = [case for case in args.case_list if case.startswith("fastmcp")]
    if fastmcp and importlib.util.find_spec("fastmcp") is None:
        parser.error(f"{', '.join(fastmcp)} need FastMCP: pip install -e '.[bench]' "
                     "(or leave them out of --cases)")
    if args.profile_gateway is not None and shutil.which("py-spy") is None:
        parser.error("--profile-gateway needs py-spy on PATH (pip install py-spy)")
    return args


def run_all(args: argparse.Namespace, console: Console, legs: list[Leg],
            sampler: GatewaySampler, failures: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bastion-bench-gateway-") as workdir:
        # The gateways generate their session key here, not in the user's state directory.
        os.environ["BASTION_STATE_DIR"] = str(Path(workdir) / "state")
        with processes_running(args.case_list, Path(workdir),
                               args.upstream_protocol) as targets:
            for round_index in range(args.repeat):
                for leg in legs:
                    console.print(f"round {round_index + 1}: {CASES[leg.case][0]}, {leg.era}, "
                                  f"concurrency {leg.concurrency}", highlight=False)
                    run = attempt_leg(
                        f"{leg.case} {leg.era} c{leg.concurrency}",
                        functools.partial(
                            run_leg, targets[leg.case], leg.era, leg.concurrency, args,
                            sampler if round_index == 0 else GatewaySampler(None)),
                        console, failures)
                    if run is not None:
                        leg.runs.append(run)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 220)
    profile_dir = args.profile_gateway.resolve() if args.profile_gateway else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    sampler = GatewaySampler(profile_dir)
    legs = [Leg(case, era, c) for case in args.case_list for era in args.era_list
            for c in args.concurrencies]
    started = datetime.datetime.now(datetime.UTC)
    load_before = load_average()
    fingerprint = source_fingerprint()
    console.print(f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
                  f"(1/5/15 min) {load_before}; {args.duration:g} s per leg after "
                  f"{args.warmup} warm-up calls, {args.repeat} round(s); Bastion source "
                  f"{ROOT / 'bastion'} (sha256 of its *.py: {fingerprint})", highlight=False)
    failures: list[str] = []
    try:
        run_all(args, console, legs, sampler, failures)
    except RuntimeError as exc:  # a process that would not start
        console.print(f"[red]{exc}[/]", highlight=False)
        return 2
    load_after = load_average()
    console.print(build_table(legs, (
        f"tools/call echo over Streamable HTTP, {args.duration:g} s per leg, median of "
        f"{args.repeat} round(s); load average before {load_before}, after {load_after}")))
    for case in args.case_list:
        label, what = CASES[case]
        console.print(f"  {label}: {what}", highlight=False)
    console.print("  CPU µs/call: of the process under test (the upstream for direct); /proc "
                  f"counts CPU in ticks of {1000 / CLK_TCK:g} ms, so a leg of N calls measures "
                  f"in steps of {1e6 / CLK_TCK:g}/N µs", highlight=False)
    for line in verdicts(legs):
        console.print(line + (" (profiled run: figures inflated)" if profile_dir else ""),
                      highlight=False)
    for failure in failures:
        console.print(f"[red]{failure}[/]", highlight=False)
    for path in sampler.files:
        console.rule(f"py-spy {path.name}")
        if path.exists():
            print_collapsed(path, console, args.profile_top)
        else:
            console.print(f"[red]no profile written at {path}[/]")
    if args.json:
        document = {
            "started": started.isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "load_average_before": load_before, "load_average_after": load_after,
            "duration": args.duration, "warmup": args.warmup, "repeat": args.repeat,
            "upstream_protocol": args.upstream_protocol,
            "versions": {**versions(), **fastmcp_version()},
            "bastion_source_sha256": fingerprint,
            "legs": [{"case": leg.case, "era": leg.era, "concurrency": leg.concurrency,
                      "runs": leg.runs} for leg in legs],
            "verdicts": verdicts(legs), "failures": failures,
        }
        write_json(document, args.json)
    return 1 if failures else 0


def fastmcp_version() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return {"fastmcp": version("fastmcp")}
    return {}


if __name__ == "__main__":
    sys.exit(main())
