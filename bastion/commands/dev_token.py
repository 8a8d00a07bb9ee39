"""`bastion dev-token`: mint an access token from the development issuer (`auth.mode: dev`).

The token is signed with the key in the configuration's state directory (generated on first
use) and names the gateway's resource URL as its audience: `auth.resource`, or the URL of the
configured listener (`--resource` overrides both, for a gateway started with another
`--http`). Only the token goes to standard output, so `TOKEN=$(bastion dev-token ...)` works.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.commands.keys import ConfigOption, errors, fail, load, parse_duration, split_values
from bastion.config import BastionConfig, resolve_state_dir
from bastion.config.auth import AuthConfig, canonical_resource, listener_resource_url
from bastion.guard.identity.dev_issuer import load_or_create_dev_key, mint_dev_token
from bastion.guard.identity.errors import IdentityError


def _auth_of(config: BastionConfig) -> AuthConfig:
    # `auth` joins BastionConfig with the gateway's wiring; until then the defaults apply.
    auth = getattr(config, "auth", None)
    return auth if isinstance(auth, AuthConfig) else AuthConfig()


def dev_token(
    subject: Annotated[str, typer.Option("--sub", help="The user the token speaks for.")],
    roles: Annotated[list[str] | None, typer.Option("--roles", help="Roles (repeat or a,b).")
                     ] = None,
    groups: Annotated[list[str] | None, typer.Option("--groups", help="Groups (repeat or a,b).")
                      ] = None,
    scopes: Annotated[list[str] | None, typer.Option("--scope", help="Scopes (repeat, a,b or "
                                                     "'a b').")] = None,
    client: Annotated[str | None, typer.Option("--client", help="The agent (azp claim).")
                      ] = None,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", help="Lifetime such as 1h (default: auth.dev.token_ttl).")] = None,
    resource: Annotated[str | None, typer.Option(
        "--resource", help="The gateway's resource URL (default: from the configuration).")
                        ] = None,
    config_file: ConfigOption = None,
) -> None:
    """Mint a development access token for a local gateway in `auth.mode: dev`."""
    config = load(config_file)
    auth = _auth_of(config)
    lifetime = parse_duration(ttl) if ttl is not None else auth.dev.token_ttl
    server = config.server
    try:
        audience = (canonical_resource(resource) if resource is not None else
                    auth.resource_url(listener_resource_url(server.host, server.port,
                                                            server.path)))
        key = load_or_create_dev_key(resolve_state_dir(config))
        token = mint_dev_token(key, audience=audience, subject=subject,
                               roles=split_values(roles), groups=split_values(groups),
                               scopes=split_values(scopes), client_id=client, ttl=lifetime)
    except (ValueError, IdentityError) as exc:
        fail(str(exc), 2 if isinstance(exc, ValueError) else 1)
    if auth.mode != "dev":
        errors.print(f"[yellow]note: auth.mode is {auth.mode!r} in this configuration; only a "
                     "gateway in mode dev accepts this token.[/yellow]")
    errors.print(f"token for {subject!r}, audience {audience}, valid {lifetime} s",
                 highlight=False)
    typer.echo(token)


def register(app: typer.Typer) -> None:
    """Add `dev-token` to the `bastion` app."""
    app.command("dev-token")(dev_token)
