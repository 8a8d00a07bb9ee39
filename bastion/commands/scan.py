"""`bastion scan`: vet an MCP server's definitions before it is approved.

What it scans (exactly one):

    bastion scan -- COMMAND ARGS      a server started over stdio
    bastion scan URL                  a Streamable HTTP endpoint (--token or $BASTION_TOKEN)
    bastion scan --config FILE        every enabled upstream of a configuration, reached as
                                      the gateway reaches it, names with the upstream prefix
    bastion scan --tools-file FILE    a JSON list of tools, or {"tools": [...]} (optionally
                                      with prompts, resources, resourceTemplates, instructions)

Every tool, prompt, resource, resource template, the server's instructions and its
serverInfo go through `bastion.guard.scan.Scanner`, with every tool name of every scanned
server known to it (shadowing and collisions across upstreams). `--format text` prints a
Rich table per server and then each finding, with the hidden text made visible: nothing a
server sent reaches the terminal raw, since escape sequences and invisible characters are
the attack itself. `--format json` and `--format sarif` (2.1.0) are for machines.

Exit codes: 0 nothing blocked; 1 something blocked; 2 bad usage, a bad file, or a server
that could not be reached (one red line; the traceback with `bastion --debug`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import quote, urlsplit

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from bastion import __version__
from bastion.client import connect_http, connect_stdio
from bastion.commands.upstream_probe import (
    UPSTREAM_ERRORS,
    Connector,
    Offerings,
    connect_upstream,
    probe,
    upstream_limit,
)
from bastion.config import ConfigError, load_config
from bastion.guard.scan import CODES, Finding, Scanner, Severity, Verdict, make_finding, verdict
from bastion.guard.scan.findings import family
from bastion.guard.scan.unicode import visible

Kind = Literal["tool", "prompt", "resource", "template", "instructions", "server"]

#: A tools file larger than this is refused (it is read whole).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Items of one kind scanned per server; beyond it the rest is blocked (fail closed). The
#: scanner compares each tool with every known tool name, so the time grows as its square.
MAX_ITEMS = 2000
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_KEY_FIELDS = {"tool": "name", "prompt": "name", "resource": "uri", "template": "uriTemplate"}
_VERDICT_STYLES = {"block": "bold red", "warn": "yellow", "pass": "green"}
_SEVERITY_STYLES = {Severity.CRITICAL: "bold red", Severity.HIGH: "red",
                    Severity.MEDIUM: "yellow", Severity.LOW: "cyan", Severity.INFO: "dim"}
_SARIF_LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
                 Severity.LOW: "note", Severity.INFO: "note"}
# GitHub code scanning ranks security results by this score (0.0 to 10.0, as a string).
_SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                      Severity.LOW: "3.0", Severity.INFO: "1.0"}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class ScanError(Exception):
    """The scan could not read what it was given: a bad file or option, an unreachable
    server. The message says which, and what to do."""


@dataclass(frozen=True, slots=True)
class Source:
    """What one server offers, under the name the report gives it; `prefix` goes before
    tool, prompt and resource names, as the gateway's catalogue does."""

    server: str
    offerings: Offerings
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class ScannedItem:
    """One scanned definition and its findings, the worst first."""

    server: str
    kind: Kind
    name: str
    findings: tuple[Finding, ...]

    @property
    def verdict(self) -> Verdict:
        return verdict(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "server": self.server,
                "verdict": self.verdict,
                "findings": [{"code": f.code, "severity": str(f.severity), "path": f.path,
                              "message": f.message, "evidence": f.evidence}
                             for f in self.findings]}


@dataclass(slots=True)
class ScanResult:
    """Everything scanned, the servers that could not be reached, and the file scanned
    (a configuration or tools file; SARIF names it as the artifact)."""

    items: list[ScannedItem]
    errors: list[tuple[str, str]] = field(default_factory=list)
    artifact: Path | None = None

    def summary(self) -> dict[str, int]:
        verdicts = [item.verdict for item in self.items]
        return {"blocked": verdicts.count("block"), "warned": verdicts.count("warn"),
                "passed": verdicts.count("pass")}

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if any(item.verdict == "block" for item in self.items) else 0


# -- scanning -----------------------------------------------------------------------------------


def scan_sources(sources: Sequence[Source]) -> list[ScannedItem]:
    """Scan every definition of every source; each tool name of every source is known to the
    scanner, so a tool that shadows or squats on another server's is found."""
    known: dict[str, str] = {}
    owners: dict[str, set[str]] = {}
    for source in sources:
        for tool in source.offerings.tools[:MAX_ITEMS]:
            name = tool.get("name") if isinstance(tool, dict) else None
            if isinstance(name, str) and name:
                # The first server keeps a shared name, as the gateway's catalogue decides.
                known.setdefault(source.prefix + name, source.server)
                owners.setdefault(name, set()).add(source.server)
    # Agents see the prefixed names, but a description that steers another server's tool
    # names it as its author knows it: unprefixed. Such a name counts when one server alone
    # has it; a name two servers share would make each look like a reference to the other.
    for name, servers in owners.items():
        if len(servers) == 1:
            known.setdefault(name, next(iter(servers)))
    scanner = Scanner(known_tools=known)
    return [item for source in sources for item in _scan_source(scanner, source)]


def _scan_source(scanner: Scanner, source: Source) -> list[ScannedItem]:
    server, offered = source.server, source.offerings
    items: list[ScannedItem] = []

    def add(kind: Kind, name: str, findings: list[Finding]) -> None:
        ordered = sorted(findings, key=lambda f: f.severity, reverse=True)
        items.append(ScannedItem(server, kind, name, tuple(ordered)))

    if offered.server_info is not None:
        info_name = offered.server_info.get("name") if isinstance(offered.server_info,
                                                                  dict) else None
        add("server", info_name if isinstance(info_name, str) and info_name else server,
            scanner.scan_server_info(offered.server_info, server=server))
    if offered.instructions is not None:
        add("instructions", "instructions", scanner.scan_instructions(offered.instructions,
                                                                      server=server))
    lists: tuple[tuple[Kind, list[Any]], ...] = (
        ("tool", offered.tools), ("prompt", offered.prompts),
        ("resource", offered.resources), ("template", offered.templates))
    scanners = {"tool": scanner.scan_tool, "prompt": scanner.scan_prompt}
    for kind, listed in lists:
        scan = scanners.get(kind, scanner.scan_resource)
        for index, definition in enumerate(listed[:MAX_ITEMS]):
            public = _public(definition, source.prefix)
            add(kind, _item_name(kind, public, index), scan(public, server=server))
        if len(listed) > MAX_ITEMS:
            add(kind, f"#{MAX_ITEMS}..", [make_finding(
                "E-LIM.size", Severity.HIGH, "", f"the server lists {len(listed)} {kind}s; "
                f"only the first {MAX_ITEMS} were scanned, so the rest is blocked (fail "
                "closed)", None, kind)])
    return items


def _public(definition: Any, prefix: str) -> Any:
    """The definition under the name the gateway gives it (prefix + name)."""
    if prefix and isinstance(definition, dict) and isinstance(definition.get("name"), str):
        return {**definition, "name": prefix + definition["name"]}
    return definition


def _item_name(kind: Kind, definition: Any, index: int) -> str:
    key = definition.get(_KEY_FIELDS[kind]) if isinstance(definition, dict) else None
    return key if isinstance(key, str) and key else f"#{index}"


def load_tools_file(path: Path) -> Offerings:
    """The definitions in a tools file: a JSON list of tools, or an object with a "tools"
    list (and optionally "prompts", "resources", "resourceTemplates" and "instructions").
    Items that are not objects are left to the scanner, which blocks them."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScanError(f"cannot read the tools file {path}: "
                        f"{exc.strerror or type(exc).__name__}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ScanError(f"the tools file {path} is over {MAX_FILE_BYTES // 2**20} MiB")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ScanError(f"the tools file {path} is not JSON ({exc}); give a JSON list of "
                        'tools or an object with a "tools" list') from exc
    if isinstance(data, list):
        return Offerings(tools=data)
    if not isinstance(data, dict) or "tools" not in data:
        what = "an object without \"tools\"" if isinstance(data, dict) else _json_type(data)
        raise ScanError(f"the tools file {path} holds {what}; give a JSON list of tools or an "
                        'object with a "tools" list')
    lists: dict[str, list[Any]] = {}
    for key in ("tools", "prompts", "resources", "resourceTemplates"):
        value = data.get(key, [])
        if not isinstance(value, list):
            raise ScanError(f'"{key}" in the tools file {path} is {_json_type(value)}, not a '
                            "list")
        lists[key] = value
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ScanError(f'"instructions" in the tools file {path} is {_json_type(instructions)}'
                        ", not a string")
    return Offerings(instructions=instructions, tools=lists["tools"], prompts=lists["prompts"],
                     resources=lists["resources"], templates=lists["resourceTemplates"])


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# -- reaching servers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A live server to scan: how to reach it, for how long, and its prefix."""

    label: str
    connect: Connector
    limit: float
    prefix: str = ""
    limit_source: str = ""


async def _probe_all(targets: Sequence[Target], errors: Console
                     ) -> list[Offerings | BaseException]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn())
    # Only on a terminal: elsewhere (CI, a pipe) a progress display is noise.
    with Progress(*columns, console=errors, transient=True,
                  disable=not errors.is_terminal) as progress:
        task = progress.add_task(f"connecting to {_plural(len(targets), 'server')}",
                                 total=len(targets))

        async def one(target: Target) -> Offerings:
            try:
                return await probe(target.connect, target.limit,
                                   limit_source=target.limit_source)
            finally:
                progress.advance(task)

        return await asyncio.gather(*(one(target) for target in targets),
                                    return_exceptions=True)


def _reach(targets: Sequence[Target], errors: Console
           ) -> tuple[list[Source], list[tuple[str, str]]]:
    """The sources of the targets that answered, and (label, reason) for those that did not;
    an unexpected exception (a bug) propagates."""
    sources: list[Source] = []
    failures: list[tuple[str, str]] = []
    for target, outcome in zip(targets, asyncio.run(_probe_all(targets, errors)), strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, UPSTREAM_ERRORS):
                raise outcome
            failures.append((target.label, str(outcome) or type(outcome).__name__))
        else:
            sources.append(Source(target.label, outcome, target.prefix))
    return sources, failures


def _live_target(argv: list[str], token: str | None, era: str, timeout: float) -> Target:
    mode: Any = era
    probe_timeout = min(5.0, timeout / 2)
    if len(argv) == 1 and argv[0].lower().startswith(("http://", "https://")):
        url = argv[0]
        parts = urlsplit(url)
        if not parts.hostname:
            raise typer.BadParameter(f"{url!r} is not a URL with a host name")
        # The label never carries a user:password@ or a query (either may hold a secret).
        label = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        return Target(label, lambda: connect_http(
            url, mode=mode, bearer_token=token or None, probe_timeout=probe_timeout,
            request_timeout=timeout, connect_timeout=min(10.0, timeout), listen=False),
            timeout, limit_source="--timeout")
    if argv[0].lower().startswith(("http://", "https://")):
        raise typer.BadParameter("give one URL, or the command after `--`")
    return Target(Path(argv[0]).name or argv[0], lambda: connect_stdio(
        argv, mode=mode, probe_timeout=probe_timeout, request_timeout=timeout),
        timeout, limit_source="--timeout")


def _collect(target: list[str] | None, config_file: Path | None, tools_file: Path | None,
             token: str | None, era: str, timeout: float, errors: Console) -> ScanResult:
    if tools_file is not None:
        return ScanResult(scan_sources([Source(tools_file.name, load_tools_file(tools_file))]),
                          artifact=tools_file)
    if config_file is not None:
        try:
            config = load_config(config_file)
        except ConfigError as exc:
            raise ScanError(str(exc)) from exc
        if not config.upstreams:
            raise ScanError(f"{config_file} has no enabled upstream to scan")
        targets = [Target(u.name, lambda u=u: connect_upstream(u), upstream_limit(u),
                          u.effective_prefix, "connect_timeout + timeout")
                   for u in config.upstreams]
        sources, failures = _reach(targets, errors)
        return ScanResult(scan_sources(sources), failures, config_file)
    live = _live_target(target or [], token, era, timeout)
    sources, failures = _reach([live], errors)
    if failures:
        raise ScanError(f"cannot scan {failures[0][0]}: {failures[0][1]}")
    (source,) = sources
    info = source.offerings.server_info or {}
    name = info.get("name")
    server = name[:64] if isinstance(name, str) and name.strip() else live.label
    return ScanResult(scan_sources([Source(server, source.offerings)]))


# -- output -------------------------------------------------------------------------------------


def shown(text: object, limit: int = 200) -> str:
    """Text from a server, safe to print: invisible, control, bidi and Tag characters as
    `\\uXXXX` escapes, newlines and tabs as `\\n` and `\\t`, cut at `limit` characters."""
    value = text if isinstance(text, str) else str(text)
    safe = visible(value, limit).replace("\n", "\\n").replace("\t", "\\t")
    return safe + ("…" if len(value) > limit else "")


def to_json(result: ScanResult) -> dict[str, Any]:
    """The `--format json` document."""
    return {"tools": [item.to_dict() for item in result.items], "summary": result.summary(),
            "errors": [{"server": server, "message": message}
                       for server, message in result.errors]}


def to_sarif(result: ScanResult) -> dict[str, Any]:
    """The `--format sarif` document: SARIF 2.1.0, one run, a rule per finding code."""
    worst: dict[str, Severity] = {}
    for item in result.items:
        for finding in item.findings:
            worst[finding.code] = max(finding.severity, worst.get(finding.code, finding.severity))
    codes = sorted(worst)
    rules = [_sarif_rule(code, worst[code]) for code in codes]
    index = {code: position for position, code in enumerate(codes)}
    artifact = None
    if result.artifact is not None:
        path = result.artifact
        artifact = {"uri": path.as_uri() if path.is_absolute() else quote(path.as_posix())}
    results = [_sarif_result(item, finding, index[finding.code], artifact)
               for item in result.items for finding in item.findings]
    invocation: dict[str, Any] = {"executionSuccessful": not result.errors}
    if result.errors:
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": f"cannot scan {server}: {message}"}}
            for server, message in result.errors]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "bastion-scan", "version": __version__, "rules": rules}},
        "invocations": [invocation],
        "results": results,
    }]}


def _sarif_rule(code: str, worst: Severity) -> dict[str, Any]:
    info = CODES[family(code)]
    sub = code.partition(".")[2]
    return {
        "id": code,
        "shortDescription": {"text": f"{info.title} ({sub})" if sub else info.title},
        "defaultConfiguration": {"level": _SARIF_LEVELS[worst]},
        "properties": {"tags": list(dict.fromkeys(("security", *info.owasp_mcp,
                                                   *info.owasp_llm, *info.owasp_asi))),
                       "security-severity": _SECURITY_SEVERITY[worst]},
    }


def _sarif_result(item: ScannedItem, finding: Finding, rule_index: int,
                  artifact: dict[str, str] | None) -> dict[str, Any]:
    location: dict[str, Any] = {"logicalLocations": [
        {"name": item.name, "fullyQualifiedName": f"{item.server}/{item.name}"}]}
    if artifact is not None:
        location["physicalLocation"] = {"artifactLocation": artifact}
    return {
        "ruleId": finding.code,
        "ruleIndex": rule_index,
        "level": _SARIF_LEVELS[finding.severity],
        "message": {"text": f"{item.kind} {item.name} of {item.server}: {finding.message}"},
        "locations": [location],
        "properties": {"pointer": finding.path, "evidence": finding.evidence,
                       "severity": str(finding.severity), "kind": item.kind,
                       "server": item.server, "surface": finding.surface,
                       "owasp_mcp": list(finding.owasp_mcp),
                       "owasp_llm": list(finding.owasp_llm),
                       "owasp_asi": list(finding.owasp_asi)},
    }


def print_text(result: ScanResult, console: Console) -> None:
    """A table per server, then every finding with its evidence made visible."""
    servers = dict.fromkeys(item.server for item in result.items)
    for server in servers:
        items = [item for item in result.items if item.server == server]
        console.print(_table(server, items))
    flagged = [item for item in result.items if item.findings]
    if flagged:
        console.rule("findings")
    for item in flagged:
        console.print(Text.assemble(_verdict(item.verdict), f" {item.kind} ",
                                    (shown(item.name), "bold"), f"  ({shown(item.server)})"),
                      soft_wrap=True)
        for finding in item.findings:
            console.print(_finding_lines(finding), soft_wrap=True)
    totals = result.summary()
    console.print(Text.assemble(
        f"{_plural(len(result.items), 'definition')} scanned: ",
        (f"{totals['blocked']} blocked", "bold red" if totals["blocked"] else ""), ", ",
        (f"{totals['warned']} warned", "yellow" if totals["warned"] else ""), ", ",
        (f"{totals['passed']} passed", "green"),
        (f"; {_plural(len(result.errors), 'server')} not reached", "bold red")
        if result.errors else ""))


def _table(server: str, items: list[ScannedItem]) -> Table:
    blocked = sum(item.verdict == "block" for item in items)
    table = Table(title=Text(f"{shown(server, 64)}: {_plural(len(items), 'definition')}, "
                             f"{blocked} blocked"), title_justify="left")
    table.add_column("Kind")
    table.add_column("Name", overflow="fold")
    table.add_column("Verdict")
    table.add_column("Top findings", overflow="fold", ratio=1)
    for item in items:
        top = ", ".join(f"{f.code} ({f.severity})" for f in item.findings[:3])
        more = len(item.findings) - 3
        table.add_row(item.kind, Text(shown(item.name, 120)), _verdict(item.verdict),
                      Text(top + (f" +{more} more" if more > 0 else "") or "-"))
    return table


def _finding_lines(finding: Finding) -> Text:
    where = finding.path or "(the whole item)"
    lines = Text.assemble("  ", (finding.code, "bold"), "  ",
                          (str(finding.severity), _SEVERITY_STYLES[finding.severity]),
                          f"  at {shown(where)}\n    {shown(finding.message, 500)}")
    if finding.evidence:
        label = "hidden text (decoded)" if family(finding.code) == "E-HU02" else "evidence"
        lines.append(f"\n    {label}: ")
        lines.append(shown(finding.evidence, 500), style="magenta")
    return lines


def _verdict(value: Verdict) -> Text:
    return Text(value.upper(), style=_VERDICT_STYLES[value])


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# -- the command --------------------------------------------------------------------------------


def _refuse(exc: Exception, message: str, errors: Console, *, debug: bool) -> NoReturn:
    """Stop with exit code 2 and one red line (the traceback with --debug)."""
    if debug:
        raise exc
    # Text, not markup, and made visible: a message may quote what a server sent.
    errors.print(Text(f"error: {shown(message, 2000)}", style="red"), soft_wrap=True)
    raise typer.Exit(2) from None


def scan(
    context: typer.Context,
    target: Annotated[list[str] | None, typer.Argument(
        help="A Streamable HTTP URL, or after `--` the command that starts a stdio server.",
        metavar="URL | -- COMMAND ARGS", show_default=False)] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Scan every enabled upstream of this configuration file.",
        show_default=False)] = None,
    tools_file: Annotated[Path | None, typer.Option(
        "--tools-file", help='Scan the tools in this JSON file (a list, or {"tools": [...]}).',
        show_default=False)] = None,
    output_format: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="text (a terminal), json or sarif.")] = OutputFormat.text,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="BASTION_TOKEN", show_default=False,
        help="Bearer token for a URL (default: $BASTION_TOKEN).")] = None,
    era: Annotated[str, typer.Option(help="auto, legacy or modern (a live server).")] = "auto",
    timeout: Annotated[float, typer.Option(
        min=1, max=600, help="Seconds to connect to and list a live server.")] = 60.0,
) -> None:
    """Scan an MCP server's tools, prompts, resources and instructions for poisoning and hidden
    text: a live server (`bastion scan URL`, `bastion scan -- COMMAND ARGS`), every upstream of
    a configuration (--config), or a JSON file (--tools-file). Exit 0 if nothing is blocked,
    1 if something is, 2 on an error."""
    errors = Console(stderr=True)
    given = sum((bool(target), config_file is not None, tools_file is not None))
    if given != 1:
        raise typer.BadParameter("give one thing to scan: a URL, `-- COMMAND ARGS`, "
                                 "--config FILE or --tools-file FILE")
    if era not in ("auto", "legacy", "modern"):
        raise typer.BadParameter(f"--era must be auto, legacy or modern, not {era!r}")
    try:
        result = _collect(target, config_file, tools_file, token, era, timeout, errors)
    except ScanError as exc:
        # `bastion --debug` is the root command's option.
        _refuse(exc, str(exc), errors, debug=bool(context.find_root().params.get("debug")))
    for server, message in result.errors:
        errors.print(Text(f"error: cannot scan {shown(server)}: {shown(message, 2000)}",
                          style="red"), soft_wrap=True)
    if output_format is OutputFormat.text:
        print_text(result, Console())
    else:
        document = to_json(result) if output_format is OutputFormat.json else to_sarif(result)
        # ASCII only: escapes keep invisible and control characters out of the terminal.
        typer.echo(json.dumps(document, ensure_ascii=True, indent=2))
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add `scan` to the `bastion` app."""
    app.command("scan")(scan)


__all__ = ["MAX_FILE_BYTES", "MAX_ITEMS", "OutputFormat", "ScanError", "ScanResult",
           "ScannedItem", "Source", "Target", "load_tools_file", "print_text", "register",
           "scan", "scan_sources", "shown", "to_json", "to_sarif"]
