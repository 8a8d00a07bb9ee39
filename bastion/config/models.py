"""The pydantic models of the one configuration file, and the embedded defaults.

Upstreams are declared under `mcpServers` in the common mcp.json shape (`command`, `args`,
`env`, `cwd` for stdio; `url`, `headers` for Streamable HTTP), with Bastion's own fields per
upstream. VS Code's `servers` key is accepted in place of `mcpServers`.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from bastion.config.anomaly import AnomalyConfig
from bastion.config.approvals import ApprovalsConfig
from bastion.config.audit import AuditConfig
from bastion.config.auth import AuthConfig
from bastion.config.keys import decode_session_key
from bastion.config.metrics import HealthConfig, MetricsConfig
from bastion.config.pins import PinsConfig
from bastion.config.policy import PolicyConfig
from bastion.config.ratelimit import RateLimitConfig
from bastion.config.redaction import RedactionConfig
from bastion.config.scan import ScanConfig
from bastion.config.tracing import LoggingConfig, TracingConfig

#: Upstream names become tool-name prefixes and log labels: keep them plain.
UPSTREAM_NAME_RULE = ("use letters, digits, '_', '.' or '-' (at most 64 characters, starting "
                      "with a letter or digit)")
UpstreamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: A prefix is glued to tool names, so it may only hold what a tool name may hold.
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")
#: Command-line options whose value is likely a credential; shown as *** in displays.
_SECRET_OPTION = re.compile(r"(?i)token|secret|passw|api[-_]?key|auth|credential")


class _Model(BaseModel):
    # A misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


#: Header names a credential may go in: a token, as HTTP says.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


class UpstreamOAuthClient(_Model):
    """A client identity registered out of band at one authorization server."""

    client_id: str = Field(min_length=1, max_length=1024)
    client_secret: SecretStr | None = None
    token_endpoint_auth_method: Literal["none", "client_secret_basic",
                                        "client_secret_post"] | None = None


class UpstreamOAuth(_Model):
    """Per-user OAuth toward an HTTP upstream: each user authorizes the gateway once, in a
    browser, and the gateway calls the upstream with that user's own token. The redirect URI
    is the gateway's `/oauth/callback` at its public origin (`bastion.gateway.authorizations`)."""

    scopes: list[str] = Field(default_factory=list)
    client_name: str = Field(default="Bastion", min_length=1, max_length=200)
    #: CIMD: the https URL of the gateway's client metadata document.
    client_metadata_url: str | None = None
    #: Pre-registered clients by authorization server issuer (exact string).
    clients: dict[str, UpstreamOAuthClient] = Field(default_factory=dict)
    offline_access: bool = True
    #: Let the OAuth client talk plain http to loopback servers (tests, local development).
    allow_insecure_loopback: bool = False
    #: Private networks (CIDR) that discovery and token requests may reach.
    allowed_networks: list[str] = Field(default_factory=list)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ValueError(f"allowed_networks: {network!r} is not a network in CIDR "
                                 "form (e.g. 10.1.2.0/24)") from None
        return value

    @field_validator("client_metadata_url")
    @classmethod
    def _cimd(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname or parts.path in ("", "/"):
                raise ValueError("client_metadata_url must be an https URL with a path")
        return value


class UpstreamAuth(_Model):
    """The gateway's own credential for an HTTP upstream: a static secret, from the
    environment (`bearer: ${SIEM_TOKEN}`) or a file (`bearer_file: /run/secrets/siem`, read
    at each connection, so a rotated secret is picked up), or per-user OAuth (`oauth:`).
    Never the client's token: that is never forwarded (SPEC-TP-02)."""

    bearer: SecretStr | None = None
    bearer_file: Path | None = None
    oauth: UpstreamOAuth | None = None
    #: The header it goes in, and the scheme before it (`""` for the bare value, as an
    #: `X-Api-Key` header wants).
    header: str = "Authorization"
    scheme: str = "Bearer"

    @field_validator("header")
    @classmethod
    def _token_header(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError("header must be an HTTP header name (letters, digits, '-')")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> UpstreamAuth:
        given = [self.bearer, self.bearer_file, self.oauth]
        if sum(source is not None for source in given) != 1:
            raise ValueError("give `bearer` (e.g. ${TOKEN}), `bearer_file` or `oauth`, "
                             "exactly one")
        if self.bearer is not None and not self.bearer.get_secret_value().strip():
            raise ValueError("`bearer` is empty (is its environment variable set?)")
        return self


class UpstreamConfig(_Model):
    """One MCP server behind the gateway: a stdio command or a Streamable HTTP URL."""

    # YAML reads `PORT: 8080` as a number; env values and args are strings to the child.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    name: str = ""
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    # Values are often credentials: kept out of repr() so they never reach a log line.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    #: The gateway's credential for an HTTP upstream (see `UpstreamAuth`).
    auth: UpstreamAuth | None = None
    #: Environment variables of a stdio upstream read from files (`{VAR: path}`), so a
    #: secret need not sit in the configuration or the gateway's own environment.
    env_files: dict[str, Path] = Field(default_factory=dict)
    #: `None` means `<name>__`; `""` leaves the upstream's names unchanged.
    prefix: str | None = None
    #: Seconds one call may take (progress notifications restart the clock).
    timeout: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout: float = Field(default=30.0, gt=0, le=600)
    enabled: bool = True
    #: `auto` probes `server/discover` and falls back to `initialize`.
    protocol: Literal["auto", "legacy", "modern"] = "auto"
    #: mcp.json files often carry a `type` (`stdio`, `http`, `streamable-http`); accepted,
    #: and checked against what the entry declares.
    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, value: str | None) -> str | None:
        if value is not None and not _PREFIX.match(value):
            raise ValueError("prefix may hold only letters, digits, '_', '.' and '-' "
                             "(at most 64 characters)")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamConfig:
        if self.command is not None and self.url is not None:
            raise ValueError("give `command` (a stdio server) or `url` (an HTTP server), not both")
        if self.command is None and self.url is None:
            raise ValueError("give `command` (a stdio server) or `url` (an HTTP server)")
        if self.url is not None:
            parts = urlsplit(self.url)
            # The URL itself may carry a credential, so only its scheme is repeated.
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url must be http:// or https:// with a host name "
                                 f"(got scheme {parts.scheme!r})")
        if self.auth is not None and self.command is not None:
            raise ValueError("`auth` is for HTTP upstreams; give a stdio server its secret "
                             "with `env` or `env_files`")
        if self.env_files and self.url is not None:
            raise ValueError("`env_files` is for stdio upstreams; use `auth` for an HTTP one")
        if self.type is not None and (self.type == "stdio") != (self.command is not None):
            raise ValueError(f"type {self.type!r} does not match the entry's "
                             f"{'command' if self.command else 'url'}")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    @property
    def effective_prefix(self) -> str:
        return f"{self.name}__" if self.prefix is None else self.prefix

    def display_target(self) -> str:
        """The command line or URL, for people and logs: likely credentials become `***`."""
        if self.command is not None:
            return " ".join([shlex.quote(self.command), *_redacted_args(self.args)])
        parts = urlsplit(self.url or "")
        netloc = parts.netloc.rpartition("@")[2]
        if "@" in parts.netloc:
            netloc = f"***@{netloc}"
        query = "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
        return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def _redacted_args(args: list[str]) -> list[str]:
    """Shell-quoted arguments; the value of an option named like a credential becomes ***."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        option, equals, _ = arg.partition("=")
        if hide_next:
            shown.append("***")
            hide_next = False
        elif option.startswith("-") and _SECRET_OPTION.search(option):
            hide_next = not equals
            shown.append(f"{shlex.quote(option)}=***" if equals else shlex.quote(arg))
        else:
            shown.append(shlex.quote(arg))
    return shown


class ServerConfig(_Model):
    """How Bastion serves MCP: the HTTP listener and its limits."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests).
    port: int = Field(default=8848, ge=0, le=65535)
    path: str = "/mcp"
    #: Host names (or host:port) accepted in the Host header; loopback names when empty.
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    max_body_size: int = Field(default=4 * 1024 * 1024, gt=0, le=256 * 1024 * 1024)
    #: On SIGTERM, calls in flight get this long to finish.
    drain_timeout: float = Field(default=10.0, ge=0, le=600)
    #: Items per page of a merged list.
    page_size: int = Field(default=100, ge=1, le=10_000)

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path must start with /")
        return value


class GuardConfig(_Model):
    """The guard pipeline: stage names, in the order they run."""

    stages: list[str] = Field(default_factory=lambda: ["header_body", "policy", "ratelimit",
                                                        "pin", "approval", "scan", "redact"])


class BastionConfig(_Model):
    """The whole file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    mcp_servers: dict[UpstreamName, UpstreamConfig] = Field(
        default_factory=dict, alias="mcpServers",
        validation_alias=AliasChoices("mcpServers", "servers"))
    #: Where generated keys and local state live; relative to the configuration file.
    state_dir: Path | None = None
    #: 32 bytes as 64 hex digits or base64, for the AES-GCM session and state tokens; when
    #: absent, one is generated at first start and kept in the state directory.
    session_key: str | None = Field(default=None, repr=False)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    #: Who is calling: inbound authentication (OAuth 2.1 resource server, API keys).
    auth: AuthConfig = Field(default_factory=AuthConfig)
    #: Who may use what (default deny once authentication is on).
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    #: Approved definitions of tools, prompts and templates (rug-pull defence).
    pins: PinsConfig = Field(default_factory=PinsConfig)
    #: Secrets and PII removed from results before the agent sees them.
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    #: What the gateway does with the scanner's findings (tool poisoning, hidden text).
    scan: ScanConfig = Field(default_factory=ScanConfig)
    #: Which calls wait for a person.
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    #: The tamper-evident audit trail (SQLite in the state directory by default).
    audit: AuditConfig = Field(default_factory=AuditConfig)
    #: Prometheus metrics at `/metrics`.
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: Upstream probes and `/healthz`, `/readyz`.
    health: HealthConfig = Field(default_factory=HealthConfig)
    #: OpenTelemetry traces (the `otel` extra), exported over OTLP when configured.
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    #: Log format (text or structured JSON) and level.
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    #: Rate limits and quotas per principal, agent, upstream and tool.
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    #: Anomaly rules and where their alerts go.
    anomalies: AnomalyConfig = Field(default_factory=AnomalyConfig)

    #: The file this configuration was loaded from (None when built in code).
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("session_key")
    @classmethod
    def _decodable_key(cls, value: str | None) -> str | None:
        if value is not None:
            decode_session_key(value)
        return value

    @model_validator(mode="after")
    def _name_upstreams(self) -> BastionConfig:
        for name, upstream in self.mcp_servers.items():
            upstream.name = name
        self.pins.check_upstreams(self.mcp_servers)
        unknown = sorted(set(self.scan.upstreams) - set(self.mcp_servers))
        if unknown:
            raise ValueError(f"scan.upstreams names upstreams that are not configured: "
                             f"{', '.join(unknown)}")
        return self

    def anchor_paths(self) -> None:
        """Make the secret-file paths of the upstreams absolute, relative to this file."""
        base = self.base_dir
        if base is None:
            return
        for upstream in self.mcp_servers.values():
            if upstream.auth is not None and upstream.auth.bearer_file is not None:
                upstream.auth.bearer_file = base / upstream.auth.bearer_file.expanduser()
            upstream.env_files = {name: base / file.expanduser()
                                  for name, file in upstream.env_files.items()}

    @property
    def upstreams(self) -> list[UpstreamConfig]:
        """The enabled upstreams, in the file's order."""
        return [u for u in self.mcp_servers.values() if u.enabled]

    @property
    def source(self) -> Path | None:
        """The absolute path of the file this was loaded from, or None."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The directory relative paths in the file are relative to, or None."""
        return self._source.parent if self._source is not None else None


def default_config() -> BastionConfig:
    """What `bastion serve` runs without `--config`: a loopback listener and the dev servers."""
    servers = {"demo": {"command": sys.executable, "args": ["-m", "bastion.testing.everything"]}}
    if importlib.util.find_spec("mcp_server_time") is not None:
        servers["time"] = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}
    return BastionConfig.model_validate(
        {"server": {"host": "127.0.0.1", "port": 8848, "path": "/mcp"}, "mcpServers": servers})
