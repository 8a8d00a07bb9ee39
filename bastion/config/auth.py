"""The `auth:` section of the configuration: who may call the gateway, and with which scopes.

Bastion is an OAuth 2.1 resource server. `mode` says which credentials it accepts:

- `none`: nobody is authenticated (loopback and stdio gateways only);
- `jwt`: access tokens (RFC 9068 JWTs) from the identity providers under `issuers`;
- `dev`: tokens from Bastion's own development issuer (`bastion dev-token`), for local use.

In `jwt` and `dev` mode Bastion API keys (`bastion keys create`) are accepted too unless
`api_keys: false`. Every token must name this gateway in `aud` (`resource`, RFC 8707); scopes
are coarse consent (`required_scopes` for everything, `scope_rules` for step-up), never a
substitute for the policy.

The scope lint of SPEC-AUTH-04 runs here, at load time: a wildcard or omnibus scope (`*`,
`all`, `admin:*`) or `offline_access` can never reach the published metadata or a challenge.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

#: Algorithms a token may be signed with: asymmetric only, so a public key can never be
#: used as an HMAC secret (HS/RS confusion), and never `none`.
ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    "EdDSA", "Ed25519", "Ed448",
})
DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")
#: Scopes that grant everything or outlive the session: refused by the lint (SPEC-AUTH-04).
_OMNIBUS_SCOPES = frozenset({"*", "all", "offline_access"})
#: RFC 6749 §3.3 scope-token characters.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")
#: A claim path: names separated by dots (`realm_access.roles`).
_CLAIM_PATH = re.compile(r"[A-Za-z0-9_:/$-]+(\.[A-Za-z0-9_:/$-]+){0,7}")

Glob = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Role = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Model(BaseModel):
    # Like the main configuration: a misspelt key is an error, not an ignored setting.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str, *, allow_insecure_loopback: bool) -> str:
    """`url` if Bastion may fetch keys or metadata from it; ValueError saying why not.

    https only; plain http only on a loopback host and only with `allow_insecure_loopback`
    (SPEC-SSRF-01). No credentials or fragment in the URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute URL with a host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"{url!r} must not carry credentials or a fragment")
    if scheme == "https":
        return url
    if scheme == "http" and allow_insecure_loopback and is_loopback_host(parts.hostname):
        return url
    if scheme == "http" and is_loopback_host(parts.hostname):
        raise ValueError(f"{url!r} is plain http; set auth.allow_insecure_loopback: true to "
                         "allow http on loopback (tests and development only)")
    raise ValueError(f"{url!r} must be an https URL")


def canonical_resource(url: str) -> str:
    """The canonical form of a resource URL (RFC 8707, SPEC-AUTH-05): lowercase scheme and
    host, no default port, no fragment, no trailing slash; ValueError if it is not one."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the resource {url!r} must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the resource {url!r} must not carry credentials")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the resource {url!r} has an invalid port") from None
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def _check_scopes(scopes: list[str]) -> list[str]:
    for scope in scopes:
        if scope.lower() in _OMNIBUS_SCOPES or "*" in scope:
            raise ValueError(f"the scope {scope!r} is a wildcard or omnibus scope (or "
                             "offline_access); publish minimal, specific scopes (SPEC-AUTH-04)")
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"{scope!r} is not a valid scope: 1 to 128 printable ASCII "
                             "characters without spaces, quotes or backslashes")
    return list(dict.fromkeys(scopes))


def _check_claim_paths(value: str | list[str]) -> list[str]:
    paths = [value] if isinstance(value, str) else value
    if not paths:
        raise ValueError("give at least one claim name")
    for path in paths:
        if not _CLAIM_PATH.fullmatch(path):
            raise ValueError(f"{path!r} is not a claim path: names of letters, digits and "
                             "'_:/$-' separated by dots, at most 8 deep")
    return paths


class IssuerConfig(_Model):
    """One trusted identity provider (authorization server)."""

    #: Compared exactly with the token's `iss`.
    issuer: str = Field(min_length=1, max_length=2048)
    #: Where its signing keys are; discovered from its metadata (RFC 8414, then OpenID
    #: Connect discovery) when absent.
    jwks_uri: str | None = Field(default=None, max_length=2048)
    #: The signature algorithms accepted from it (asymmetric only).
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS), min_length=1)
    #: `aud` values accepted besides the resource URL.
    audiences: list[Annotated[str, StringConstraints(min_length=1, max_length=2048)]] = Field(
        default_factory=list)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(f"algorithm {name!r} is not accepted: use asymmetric "
                                 f"algorithms ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); "
                                 "'none' and HMAC (HS*) never are")
        return list(dict.fromkeys(value))


class ScopeRule(_Model):
    """Step-up: a request matching any glob here needs `scopes` too (403 otherwise)."""

    methods: list[Glob] = Field(default_factory=list)
    #: Public tool names (as the agent sees them, prefix included).
    tools: list[Glob] = Field(default_factory=list)
    prompts: list[Glob] = Field(default_factory=list)
    #: Resource URIs.
    resources: list[Glob] = Field(default_factory=list)
    scopes: list[str] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _lint(cls, value: list[str]) -> list[str]:
        return _check_scopes(value)

    @model_validator(mode="after")
    def _matches_something(self) -> ScopeRule:
        if not (self.methods or self.tools or self.prompts or self.resources):
            raise ValueError("a scope rule needs at least one of methods, tools, prompts or "
                             "resources")
        return self


class ClaimsConfig(_Model):
    """Where the token keeps what Bastion reads: claim names or dotted paths, tried in order."""

    roles: str | list[str] = "roles"
    groups: str | list[str] = "groups"
    scope: str | list[str] = Field(default_factory=lambda: ["scope", "scp"])
    client_id: str | list[str] = Field(default_factory=lambda: ["azp", "client_id"])

    @field_validator("roles", "groups", "scope", "client_id")
    @classmethod
    def _paths(cls, value: str | list[str]) -> list[str]:
        return _check_claim_paths(value)

    def paths(self, name: Literal["roles", "groups", "scope", "client_id"]) -> tuple[str, ...]:
        value = getattr(self, name)
        return (value,) if isinstance(value, str) else tuple(value)


class DevIssuerConfig(_Model):
    """Options of the development issuer (`mode: dev`)."""

    #: Lifetime of a `bastion dev-token` without `--ttl`, in seconds.
    token_ttl: int = Field(default=3600, ge=60, le=7 * 86400)


class AuthConfig(_Model):
    """The whole `auth:` section (see the module doc)."""

    mode: Literal["none", "jwt", "dev"] = "none"
    #: The canonical URL of this gateway's MCP endpoint: the `aud` every token must carry.
    #: Derived from the listener (`http://host:port/path`) when absent.
    resource: str | None = Field(default=None, max_length=2048)
    issuers: list[IssuerConfig] = Field(default_factory=list)
    #: Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    leeway: int = Field(default=30, ge=0, le=300)
    #: Published in the protected resource metadata; defaults to the scopes named below.
    scopes_supported: list[str] = Field(default_factory=list)
    #: Every request needs all of these.
    required_scopes: list[str] = Field(default_factory=list)
    scope_rules: list[ScopeRule] = Field(default_factory=list)
    claims: ClaimsConfig = Field(default_factory=ClaimsConfig)
    #: Accept Bastion API keys (`Authorization: Bearer bst_...`).
    api_keys: bool = True
    #: Allow http:// JWKS and metadata URLs on loopback hosts (tests, development).
    allow_insecure_loopback: bool = False
    #: The roles of the local user of a stdio gateway.
    local_roles: list[Role] = Field(default_factory=list)
    dev: DevIssuerConfig = Field(default_factory=DevIssuerConfig)

    @field_validator("scopes_supported", "required_scopes")
    @classmethod
    def _lint(cls, value: list[str]) -> list[str]:
        return _check_scopes(value)

    @field_validator("resource")
    @classmethod
    def _canonical(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).fragment:
            raise ValueError("the resource URL must not have a fragment")
        return None if value is None else canonical_resource(value)

    @model_validator(mode="after")
    def _consistent(self) -> AuthConfig:
        if self.mode == "jwt" and not self.issuers:
            raise ValueError("mode jwt needs at least one entry under `issuers`")
        seen: set[str] = set()
        for entry in self.issuers:
            if entry.issuer in seen:
                raise ValueError(f"the issuer {entry.issuer!r} is listed twice")
            seen.add(entry.issuer)
            for url in (entry.issuer, entry.jwks_uri):
                if url is not None:
                    check_fetch_url(url, allow_insecure_loopback=self.allow_insecure_loopback)
        if self.scopes_supported:
            unknown = set(self.needed_scopes()) - set(self.scopes_supported)
            if unknown:
                raise ValueError(f"scopes {sorted(unknown)} are required but missing from "
                                 "scopes_supported, so clients could never learn to ask for "
                                 "them")
        return self

    def needed_scopes(self) -> list[str]:
        """Every scope a request may need: the required ones and those of the rules."""
        names = list(self.required_scopes)
        for rule in self.scope_rules:
            names.extend(rule.scopes)
        return list(dict.fromkeys(names))

    def published_scopes(self) -> list[str]:
        """`scopes_supported` of the metadata: as configured, else the scopes in use."""
        return list(self.scopes_supported) or self.needed_scopes()

    def resource_url(self, default: str) -> str:
        """The canonical resource URL: `resource`, else `default` (the listener's URL)."""
        return self.resource if self.resource is not None else canonical_resource(default)

    def public_origin(self, host: str, port: int, path: str) -> str:
        """Where clients reach the gateway: the origin of `resource`, else of the listener
        on host:port serving `path`."""
        parts = urlsplit(self.resource_url(listener_resource_url(host, port, path)))
        return f"{parts.scheme}://{parts.netloc}"


def listener_resource_url(host: str, port: int, path: str) -> str:
    """The resource URL derived from the HTTP listener, when `auth.resource` is absent."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return canonical_resource(f"http://{name}:{port}{path}")
