"""The gateway as an MCP server: one endpoint in front of every configured upstream.

`Gateway` is a `ServerApp`, so the same transports that serve a `bastion.server.Server`
(stdio and the Streamable HTTP endpoint, both eras, with `EraRouter`) serve it. It answers
what it can itself (discovery, `initialize`, the merged lists, ping, log levels,
subscriptions) and relays the rest (`relay.Relay`) to the upstream that owns the tool,
prompt or resource, after the guard pipeline let the request through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bastion import __version__
from bastion.config import BastionConfig
from bastion.config.auth import is_loopback_host
from bastion.gateway.approval_tasks import ApprovalTasks
from bastion.gateway.auditing import GatewayAudit
from bastion.gateway.authorizations import Authorizations
from bastion.gateway.bridge import ActiveCalls, ParkedCalls
from bastion.gateway.catalog import Catalog, Entry
from bastion.gateway.errors import UpstreamUnavailable
from bastion.gateway.fanin import FanIn
from bastion.gateway.health import UpstreamProber
from bastion.gateway.relay import Relay
from bastion.gateway.tasks import GatewayTasks
from bastion.gateway.upstream import Upstream, UpstreamPool
from bastion.gateway.user_tokens import EncryptedTokenStore
from bastion.gateway.user_upstreams import (
    AuthorizationRequired,
    UserUpstream,
    UserUpstreams,
    authorization_answer,
)
from bastion.guard.approval.service import ApprovalService
from bastion.guard.approval.stage import ApprovalPending, ApprovalStage
from bastion.guard.outcome import Observer, Outcome
from bastion.guard.pipeline import Call, GuardError, build_pipeline
from bastion.guard.stages import STAGES
from bastion.protocol.capabilities import has_extension
from bastion.protocol.errors import InvalidParams, MethodNotFound, ResourceNotFound
from bastion.protocol.headers import InvalidHeaderAnnotation, header_params
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.messages import initialize_result
from bastion.protocol.meta import SERVER_INFO
from bastion.protocol.methods import CACHEABLE_METHODS, MODERN_TASK_REQUESTS, TASKS_EXTENSION
from bastion.protocol.principal import ANONYMOUS, Principal
from bastion.protocol.results import COMPLETE
from bastion.protocol.sealed import StateSealer
from bastion.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, Era, at_least
from bastion.server.app import set_log_level
from bastion.server.pagination import paginate
from bastion.server.subscriptions import Subscribers
from bastion.server.tasks import LEGACY_TASKS_VERSION
from bastion.session.server_side import PeerConnection, ServerRequest
from bastion.telemetry.anomaly import AnomalyDetector, anomaly_detector
from bastion.telemetry.logs import set_request_id
from bastion.telemetry.metrics import GatewayMetrics
from bastion.telemetry.tracing import Tracer, build_tracer
from bastion.transport.http.auth import AuthRefusal

logger = logging.getLogger("bastion.gateway")

Handler = Callable[[Call], Awaitable[dict[str, Any]]]

#: The list methods the gateway answers from its catalogue: (catalogue kind, result key).
_LISTS = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("templates", "resourceTemplates"),
}


class Gateway:
    """The gateway application (see the module doc)."""

    def __init__(self, config: BastionConfig, *, key: bytes | None = None,
                 default_principal: Principal = ANONYMOUS,
                 loopback_only: bool | None = None) -> None:
        self.config = config
        #: Whether only this machine can reach the gateway (stdio, or a loopback listener):
        #: pins may then be trusted on first use (`pins.mode: auto`).
        self.loopback_only = (is_loopback_host(config.server.host) if loopback_only is None
                              else loopback_only)
        #: Who a request is from when its transport authenticated nobody (stdio: the local
        #: user; an HTTP listener without authentication: anonymous).
        self.default_principal = default_principal
        self.info: dict[str, Any] = {"name": "bastion", "title": "Bastion MCP gateway",
                                     "version": __version__}
        self.modern_versions: tuple[str, ...] = MODERN_VERSIONS
        self.legacy_versions: tuple[str, ...] = LEGACY_VERSIONS
        self.page_size = config.server.page_size
        self.sealer = StateSealer(key)
        self.tasks = GatewayTasks(key)
        upstreams = config.upstreams
        self.prefixes = {u.name: u.effective_prefix for u in upstreams}
        self.catalog = Catalog([u.name for u in upstreams], prefixes=self.prefixes)
        self.subscribers = Subscribers()
        self.active = ActiveCalls()
        self.parked = ParkedCalls()
        self.fanin = FanIn(self)
        # Upstreams with per-user OAuth get a connection per user (`enable_user_oauth`),
        # not one shared connection.
        self.oauth_upstreams = [u for u in upstreams
                                if u.auth is not None and u.auth.oauth is not None]
        self.authorizations = Authorizations(on_completed=self._authorized)
        self.user_upstreams: UserUpstreams | None = None
        self.pool = UpstreamPool([u for u in upstreams if u not in self.oauth_upstreams],
                                 handlers_for=self.fanin.handlers_for,
                                 on_connected=self.fanin.upstream_connected,
                                 on_disconnected=self.fanin.upstream_disconnected)
        self.relay = Relay(self)
        if config.approvals.rules and "approval" not in config.guard.stages:
            # Fail closed: rules that cannot be enforced must not look as if they were.
            raise GuardError("approvals.rules are configured, but guard.stages does not list "
                             "'approval'; add it (after 'policy'), or remove the rules")
        self.pipeline = build_pipeline(config.guard.stages, STAGES, self)
        #: The approvals this gateway enforces (shared with the admin API and the page, so a
        #: decision made here wakes the waiting call at once), or None without rules.
        self.approvals: ApprovalService | None = getattr(
            self.pipeline.stage("approval"), "service", None)
        #: Calls held for an approval as tasks the gateway owns (both eras).
        self.approval_tasks = ApprovalTasks(self)
        #: The tamper-evident audit trail (None with `audit: {enabled: false}`).
        self.audit: GatewayAudit | None = GatewayAudit(
            config, getattr(self.pipeline.stage("redact"), "redactor", None)
        ) if config.audit.enabled else None
        #: What learns of every finished request besides the audit trail (metrics, anomaly
        #: rules): cheap, synchronous, never raising.
        self.observers: list[Observer] = []
        #: OpenTelemetry-compatible spans (`tracing:`; `NO_TRACING` when off).
        self.tracer: Tracer = build_tracer(config.tracing)
        self.prober = UpstreamProber(self.pool, config.health)
        self.metrics: GatewayMetrics | None = None
        if config.metrics.enabled:
            self.metrics = GatewayMetrics(config.metrics, upstreams=self.prober.snapshot)
            self.observers.append(self.metrics)
            if self.audit is not None:
                audit = self.audit
                self.metrics.audit_queue_depth = lambda: audit.queue_depth
            if self.approvals is not None:
                self.approvals.on_event = self.metrics.approval_event
        #: The anomaly rules (None with `anomalies: {enabled: false}`).
        self.anomalies: AnomalyDetector | None = anomaly_detector(config.anomalies)
        if self.anomalies is not None:
            self.observers.append(self.anomalies)
        self._header_params: dict[str, tuple[object, Mapping[str, tuple[str, ...]]]] = {}
        self._handlers: dict[str, Handler] = {
            "server/discover": self._discover,
            "ping": self._ping,
            "tools/call": self.relay.call_tool,
            "prompts/get": self.relay.get_prompt,
            "resources/read": self.relay.read_resource,
            "completion/complete": self.relay.complete,
            "resources/subscribe": self.fanin.subscribe,
            "resources/unsubscribe": self.fanin.unsubscribe,
            "subscriptions/listen": self.fanin.listen,
            "logging/setLevel": self._set_level,
            **{method: self.relay.task_request for method in MODERN_TASK_REQUESTS},
            "tasks/result": self.relay.task_request,
            "tasks/list": self.relay.task_request,
        }

    # -- lifetime ------------------------------------------------------------------------

    async def start(self, listener: str | None = None) -> None:
        """Open the audit trail (`listener`, e.g. the port, names its chain when
        `audit.instance` does not), start the guard's stages, then connect every upstream
        (in parallel; a failing one does not stop the others)."""
        if self.audit is not None:
            await self.audit.start(listener)
        if self.anomalies is not None:
            if self.audit is not None:
                self.anomalies.audit_sink = self.audit.write
            await self.anomalies.start()
        await self.pipeline.start()
        await self.pool.start()
        if self.config.health.enabled:
            await self.prober.start()

    def enable_user_oauth(self, redirect_uri: str, store: EncryptedTokenStore) -> None:
        """Serve the per-user OAuth upstreams, with `redirect_uri` (this gateway's
        `/oauth/callback` at its public origin; the caller mounts `authorizations.routes()`)
        and the encrypted `store`."""
        self.user_upstreams = UserUpstreams(
            self.oauth_upstreams, store=store, authorizations=self.authorizations,
            redirect_uri=redirect_uri, handlers_for=self.fanin.handlers_for,
            learn=self._learn)

    def set_public_origin(self, origin: str) -> None:
        """Where clients reach this gateway (`https://host[:port]`, as `serve` knows it once
        listening): the approval page a waiting call is sent to is under it."""
        stage = self.pipeline.stage("approval")
        if isinstance(stage, ApprovalStage):
            stage.origin = origin.rstrip("/")

    async def upstream_for(self, call: Call, name: str) -> Upstream | UserUpstream | None:
        """The connection a call to `name` goes over: the shared one, or the caller's own
        for a per-user OAuth upstream (raises `AuthorizationRequired`)."""
        users = self.user_upstreams
        if users is not None and users.handles(name):
            return await users.get(call.principal.binding, name)
        return self.pool.get(name)

    async def learn_for(self, call: Call, kind: str, name: str) -> Any:
        """For a name no entry has yet: when its prefix is a per-user OAuth upstream whose
        catalogue is not learnt, connect the caller (authorizing them first) and look again."""
        users = self.user_upstreams
        owner = self.catalog.owner_of_prefix(name) if kind in ("tool", "prompt") else None
        if users is None or not users.handles(owner) or owner in users.learnt:
            return None
        assert owner is not None
        # Nothing is known of the item yet (no annotations): the policy judges the bare name,
        # so only a principal it could let use it makes the gateway connect for them. (Only
        # the policy: pins and scans judge definitions, and there is none yet.)
        policy = self.pipeline.stage("policy")
        if policy is not None:
            call.target = Entry(kind, name, owner,  # type: ignore[arg-type]
                                name[len(self.prefixes[owner]):], {"name": name})
            await policy.check_request(call)
            call.target = None
        await users.get(call.principal.binding, owner)
        return getattr(self.catalog, kind)(name)

    async def _learn(self, upstream: UserUpstream) -> None:
        await self.fanin.refresh(upstream, ("tools", "prompts", "resources", "templates"))

    async def _authorized(self, binding: str, upstream: str) -> None:
        if self.user_upstreams is not None:  # a connection that failed to authorize goes
            await self.user_upstreams.forget(binding, upstream)

    async def aclose(self) -> None:
        if self.user_upstreams is not None:
            await self.user_upstreams.aclose()
        self.parked.close()
        self.approval_tasks.close()
        self.subscribers.close_listeners()
        await self.fanin.aclose()
        await self.prober.aclose()
        await self.pool.aclose()
        await self.pipeline.aclose()
        if self.anomalies is not None:  # its queued alerts go to the trail too
            await self.anomalies.aclose()
        await self.tracer.aclose()
        if self.audit is not None:  # last: what the calls above ended with is recorded
            await self.audit.aclose()

    # -- what the gateway offers ---------------------------------------------------------

    def capabilities(self, era: Era) -> dict[str, Any]:
        """The merged capabilities: the gateway always lists and relays, and says more as
        its upstreams do."""
        caps: dict[str, Any] = {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True, "subscribe": self.fanin.can_subscribe()},
            "completions": {},
            "logging": {},
        }
        if self.relay.has_tasks(era):
            if era is Era.MODERN:
                caps["extensions"] = {TASKS_EXTENSION: {}}
            else:
                caps["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        elif self.approvals is not None:
            # A call that waits for an approval can be held as a task of the gateway's own.
            if era is Era.MODERN:
                caps["extensions"] = {TASKS_EXTENSION: {}}
            else:
                caps["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        return caps

    def instructions(self) -> str | None:
        """The upstreams' instructions, each under its name (what the scanner lets by)."""
        scan = self.pipeline.stage("scan")
        allowed = getattr(scan, "allowed_instructions", None)
        parts = []
        for upstream in self.pool:
            text = upstream.description.instructions if upstream.description else None
            if text and allowed is not None:
                text = allowed(upstream.name, text)
            if text:
                parts.append(f"[{upstream.name}] {text}")
        return "\n\n".join(parts) or None

    def header_params_of(self, tool_name: str) -> Mapping[str, tuple[str, ...]]:
        """The `x-mcp-header` arguments of a tool (the header/body stage checks them)."""
        entry = self.catalog.tool(tool_name)
        if entry is None:
            return {}
        cached = self._header_params.get(tool_name)
        if cached is not None and cached[0] is entry.definition:
            return cached[1]
        try:
            found = header_params(entry.definition.get("inputSchema"))
        except InvalidHeaderAnnotation:
            found = {}
        self._header_params[tool_name] = (entry.definition, found)
        return found

    # -- ServerApp -------------------------------------------------------------------------

    def initialize_result(self, version: str, connection: PeerConnection) -> dict[str, Any]:
        extra = getattr(connection, "extra", None)
        if isinstance(extra, dict):
            # Sealed into a legacy HTTP session id: another replica learns which upstream
            # sessions this client's session was served by.
            extra["upstreams"] = {u.name: u.session_id for u in self.pool if u.session_id}
        caps = self.capabilities(Era.LEGACY)
        if not at_least(version, LEGACY_TASKS_VERSION):
            caps.pop("tasks", None)
        return initialize_result(version, caps, self.info, self.instructions())

    def supports_method(self, method: str, request: ServerRequest) -> bool:
        if request.era is Era.MODERN and method in MODERN_TASK_REQUESTS:
            return has_extension(request.client_capabilities, TASKS_EXTENSION)
        return method in self._handlers or method in _LISTS

    def connection_opened(self, connection: PeerConnection) -> None:
        self.subscribers.connections.add(connection)  # type: ignore[arg-type]

    def connection_closed(self, connection: PeerConnection) -> None:
        self.subscribers.connections.discard(connection)  # type: ignore[arg-type]
        self.fanin.connection_closed(connection)
        self.tasks.connection_closed(connection)
        self.approval_tasks.connection_closed(connection)

    def end_streams(self, source: object) -> None:
        self.subscribers.close_listeners(source)

    async def on_client_notification(self, notification: Notification,
                                     connection: PeerConnection) -> None:
        logger.debug("client notification %s", notification.method)

    async def handle(self, request: ServerRequest) -> dict[str, Any]:
        call = Call(request, request.headers, request.principal or self.default_principal)
        set_request_id(request.id)  # for the log records of this request's task
        audit = self.audit
        if audit is not None and not audit.records(request.method):
            audit = None
        tracer = self.tracer
        if audit is None and not self.observers and not tracer.enabled:
            return await self._handle(call)
        started, clock = time.time(), time.perf_counter()
        with tracer.call_span(call) as span:
            try:
                result = await self._handle(call)
            except (Exception, asyncio.CancelledError) as exc:
                outcome = Outcome(call, started, time.perf_counter() - clock, error=exc)
                span.finish(outcome)
                if isinstance(exc, asyncio.CancelledError):
                    # Not awaited: this task is being cancelled (the client went away).
                    asyncio.get_running_loop().create_task(self._finished(outcome, audit))
                else:
                    await self._finished(outcome, audit)
                raise
            outcome = Outcome(call, started, time.perf_counter() - clock, result=result)
            span.finish(outcome)
            await self._finished(outcome, audit)
        return result

    async def auth_refused(self, refusal: AuthRefusal) -> None:
        """The HTTP endpoint refused a request for its credentials: recorded."""
        if self.metrics is not None:
            self.metrics.auth_refused(refusal.error)
        if self.audit is not None:
            await self.audit.refused(
                status=refusal.status, error=refusal.error, message=refusal.message,
                method=refusal.method, request_id=refusal.request_id, remote=refusal.remote,
                user_agent=refusal.user_agent)

    async def _finished(self, outcome: Outcome, audit: GatewayAudit | None) -> None:
        if audit is not None:
            await audit.finished(outcome, self.tracer.current_ids()[0])
        for observer in self.observers:
            try:
                observer.observe(outcome)
            except Exception:  # an observer must never change an answer
                logger.exception("observer %r failed", observer)

    async def _handle(self, call: Call) -> dict[str, Any]:
        request = call.request
        method = request.method
        listed = _LISTS.get(method)
        if listed is not None:
            await self.pipeline.check_request(call)
            result = self._list(call, *listed)
        else:
            handler = self._handlers.get(method)
            if handler is None:
                raise MethodNotFound(f"method {method!r} is not available",
                                     data={"method": method})
            try:
                result = await handler(call)
            except AuthorizationRequired as exc:
                result = authorization_answer(exc, request.era, self.relay.sealer_for(call))
            except ApprovalPending as exc:  # the call waits for a person (input_required)
                result = exc.result
        if request.era is Era.MODERN:
            result.setdefault("resultType", COMPLETE)
            if method in CACHEABLE_METHODS and result["resultType"] == COMPLETE:
                # What a client sees depends on who it is (policy): never shared caching.
                result["ttlMs"] = 0
                result["cacheScope"] = "private"
            meta = result.get("_meta")
            if isinstance(meta, dict):
                meta[SERVER_INFO] = self.info
            else:
                result["_meta"] = {SERVER_INFO: self.info}
        else:
            for key in ("resultType", "ttlMs", "cacheScope"):
                result.pop(key, None)
        return result

    # -- answered here ---------------------------------------------------------------------

    def _list(self, call: Call, kind: str, key: str) -> dict[str, Any]:
        items: list[dict[str, Any]] = getattr(self.catalog, kind)()
        if self.pipeline.filters_lists:
            items = self.pipeline.filter_list(call, key, items)
        return paginate(items, key, call.params.get("cursor"), self.page_size)

    async def _discover(self, call: Call) -> dict[str, Any]:
        result: dict[str, Any] = {"supportedVersions": list(self.modern_versions),
                                  "capabilities": self.capabilities(Era.MODERN)}
        instructions = self.instructions()
        if instructions:
            result["instructions"] = instructions
        return result

    async def _ping(self, call: Call) -> dict[str, Any]:
        return {}

    async def _set_level(self, call: Call) -> dict[str, Any]:
        return await set_log_level(call.request)

    # -- routing -------------------------------------------------------------------------

    def unknown(self, kind: str, name: str, *, era: Era) -> Exception:
        """The error for a name no upstream offers: the spec's error, or the upstream's
        failure when the name is that of an upstream that is down."""
        owner = self.catalog.owner_of_prefix(name) if kind in ("tool", "prompt") else None
        upstream = self.pool.get(owner) if owner else None
        if upstream is not None and upstream.state != "up":
            return UpstreamUnavailable(upstream.name, upstream.last_error or upstream.state)
        if kind == "resource":
            if era is Era.MODERN:
                return InvalidParams(f"resource {name!r} not found", data={"uri": name})
            return ResourceNotFound(f"resource {name!r} not found", data={"uri": name})
        return InvalidParams(f"unknown {kind} {name!r}", data={"name": name})
