"""`bastion policy explain`: what the policy of a configuration file decides, and why.

No gateway runs: the principal comes from the options, the upstream of a tool or prompt from
its prefix (the upstream's `prefix`, `<name>__` by default) unless `--upstream` names it, and
the tool's annotations from `--annotations`. Exit codes: 0 the call is allowed, 1 it is
denied, 2 the options or the configuration are wrong.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.text import Text

from bastion.config import BastionConfig, ConfigError, load_config
from bastion.config.policy import PolicyConfig
from bastion.gateway.catalog import Catalog
from bastion.guard.policy.engine import PolicyEngine
from bastion.guard.policy.explain import print_explanation
from bastion.guard.policy.rules import Target
from bastion.protocol.principal import ANONYMOUS, Principal

console = Console()
errors = Console(stderr=True)

ListOption = Annotated[list[str] | None, typer.Option(
    help="Repeatable, or comma-separated: --roles a,b.")]


def _fail(message: str) -> NoReturn:
    # Text, not markup: the message may quote brackets from the file or the options.
    errors.print(Text(message, style="red"), soft_wrap=True)
    raise typer.Exit(2)


def _json_object(option: str, text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        _fail(f"error: {option} is not valid JSON ({exc}); give an object such as "
              "'{\"path\": \"/data/x\"}'")
    if not isinstance(value, dict):
        _fail(f"error: {option} must be a JSON object, not {type(value).__name__}")
    return value


def _names(values: list[str] | None) -> frozenset[str]:
    """Repeated options and comma-separated lists alike: `--roles a,b --roles c`."""
    return frozenset(part.strip() for value in values or () for part in value.split(",")
                     if part.strip())


def _attributes(values: list[str] | None) -> dict[str, Any]:
    found: dict[str, list[str]] = {}
    for value in values or ():
        claim, sep, item = value.partition("=")
        if not sep or not claim:
            _fail(f"error: --attr must be CLAIM=VALUE, not {value!r}")
        found.setdefault(claim, []).append(item)
    return found


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        _fail(f"error: --at must be an ISO 8601 time such as 2026-11-21T10:00 or "
              f"2026-11-21T10:00+01:00, not {text!r}")


def _upstream_of(config: BastionConfig, name: str, given: str | None) -> str:
    upstreams = list(config.mcp_servers.values())
    if given is not None:
        if given not in config.mcp_servers:
            known = ", ".join(config.mcp_servers) or "none"
            _fail(f"error: no upstream named {given!r} in the configuration (upstreams: {known})")
        return given
    owner = Catalog([u.name for u in upstreams],
                    prefixes={u.name: u.effective_prefix for u in upstreams}
                    ).owner_of_prefix(name)
    if owner is None:
        unprefixed = [u.name for u in upstreams if not u.effective_prefix]
        owner = unprefixed[0] if len(unprefixed) == 1 else None
    if owner is None:
        _fail(f"error: cannot tell which upstream offers {name!r} from its prefix; give "
              "--upstream")
    return owner


def explain(
    config_file: Annotated[Path, typer.Option(
        "--config", "-c", help="The configuration file with the `policy:` section.")],
    tool: Annotated[str | None, typer.Option(help="A tool's public name.")] = None,
    prompt: Annotated[str | None, typer.Option(help="A prompt's public name.")] = None,
    resource: Annotated[str | None, typer.Option(help="A resource URI.")] = None,
    upstream: Annotated[str | None, typer.Option(
        help="The upstream (default: from the tool or prompt's prefix).")] = None,
    sub: Annotated[str | None, typer.Option(
        "--sub", help="The subject (default: the anonymous caller).")] = None,
    roles: ListOption = None,
    groups: ListOption = None,
    scopes: ListOption = None,
    client: Annotated[str | None, typer.Option(help="The agent's client id.")] = None,
    auth_method: Annotated[str, typer.Option(
        help="How the caller authenticated: jwt, api_key, dev or local.")] = "jwt",
    attr: Annotated[list[str] | None, typer.Option(
        help="A claim the rules may match: CLAIM=VALUE (repeatable).")] = None,
    args: Annotated[str | None, typer.Option(
        "--args", help="The call's arguments, a JSON object.")] = None,
    annotations: Annotated[str | None, typer.Option(
        help="The tool's annotations, a JSON object (readOnlyHint, ...).")] = None,
    title: Annotated[str | None, typer.Option(help="The tool's title.")] = None,
    at: Annotated[str | None, typer.Option(
        help="When the call happens (ISO 8601; without an offset, UTC). Default: now.")] = None,
) -> None:
    """Explain the policy's decision for one call; exit 0 if allowed, 1 if denied, 2 on
    bad options or configuration."""
    chosen = [(kind, value) for kind, value in
              (("tool", tool), ("prompt", prompt), ("resource", resource)) if value]
    if len(chosen) != 1:
        _fail("error: give exactly one of --tool, --prompt and --resource")
    kind, name = chosen[0]
    arguments = _json_object("--args", args)
    hints = _json_object("--annotations", annotations)
    now = _moment(at)
    if auth_method not in ("jwt", "api_key", "dev", "local"):
        _fail(f"error: --auth-method must be jwt, api_key, dev or local, not {auth_method!r}")
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        _fail(str(exc))
    policy: PolicyConfig = getattr(config, "policy", None) or PolicyConfig()
    auth = getattr(config, "auth", None)
    default = policy.effective_default(getattr(auth, "mode", "none") if auth else "none")
    if kind == "resource" and upstream is None and len(config.mcp_servers) == 1:
        upstream = next(iter(config.mcp_servers))
    owner = _upstream_of(config, name, upstream)
    definition: dict[str, Any] = {"name": name}
    if kind == "tool":
        definition["annotations"] = hints
        if title is not None:
            definition["title"] = title
    if sub is None and (roles or groups or scopes or client or attr):
        _fail("error: give --sub with --roles, --groups, --scopes, --client or --attr (without "
              "--sub the caller is the anonymous one, who has none)")
    principal = ANONYMOUS if sub is None else Principal(
        subject=sub, issuer="bastion:explain", method=auth_method,  # type: ignore[arg-type]
        client_id=client, roles=_names(roles), groups=_names(groups), scopes=_names(scopes),
        attributes=_attributes(attr))
    engine = PolicyEngine(policy, default=default)
    explanation = engine.explain(principal, Target(kind, name, owner, definition),  # type: ignore[arg-type]
                                 arguments, now=now)
    print_explanation(console, explanation, principal)
    raise typer.Exit(0 if explanation.decision.allowed else 1)


def register(app: typer.Typer) -> None:
    """Add the `policy` command group to the main `bastion` app."""
    policy_app = typer.Typer(help="Inspect the authorization policy.", no_args_is_help=True,
                             add_completion=False)
    policy_app.command("explain")(explain)
    app.add_typer(policy_app, name="policy")
