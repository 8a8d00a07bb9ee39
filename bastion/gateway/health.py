"""Is the gateway alive, are its upstreams, and the routes that say so: `/healthz`, `/readyz`
and `/metrics`.

`UpstreamProber` pings every connected upstream every `health.probe_seconds` (each ping
bounded by `health.probe_timeout_seconds`) and keeps, per upstream, the last and the smoothed
(EWMA) round trip, the failures in a row and the error rate over the last `health.window`
probes. Its `snapshot()` merges that into `Upstream.health()`; the metrics and the routes
read it. A ping that the upstream answers with a JSON-RPC error still proves it alive.

The routes:

- `GET /healthz` (liveness): 200 `{"status": "ok", "ready": ..., "upstreams": [...]}`
  while the process serves;
- `GET /readyz` (readiness): 200 when at least one upstream is up (or none is configured)
  and the audit log runs (when a callable says), 503 with the reasons otherwise;
- `GET /metrics`: the Prometheus text format.

With an authenticator (`require_auth: auto`), `/metrics` needs a credential whose principal
has one of `metrics.roles` or the scope `metrics.scope`; `/healthz` and `/readyz` answer
their status to anyone (probes carry no credential) but show the upstream details and
reasons only to such a principal. A request with an `Origin` header is refused (403): these
routes are for scrapers, probes and the CLI, never for a page in a browser (SPEC-LOCAL-01).
Errors shown (`last_error`) may hold URLs: their userinfo and query are cut out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.config.metrics import HealthConfig, MetricsConfig
from bastion.gateway.errors import UpstreamError
from bastion.gateway.upstream import Upstream
from bastion.protocol.errors import MCPError
from bastion.telemetry.metrics import CONTENT_TYPE, GatewayMetrics
from bastion.transport.http.auth import AuthChallenge, HttpAuthenticator

logger = logging.getLogger("bastion.gateway.health")

#: The weight of the newest probe in the smoothed latency.
EWMA_ALPHA = 0.3
#: The longest error text a health answer carries.
MAX_ERROR_TEXT = 300
_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
#: `scheme://user:password@` -> `scheme://`, and `?query` / `#fragment` dropped, in any URL.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*)[?#][^\s]*")


def scrub(text: str | None) -> str | None:
    """An error text safe to show: URLs without userinfo or query, at most 300 characters."""
    if text is None:
        return None
    text = _QUERY.sub(r"\1", _USERINFO.sub(r"\1", text))
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 1] + "…"


@dataclass(slots=True)
class ProbeStats:
    """What the probes learnt of one upstream."""

    window: int
    last_ms: float | None = None
    ewma_ms: float | None = None
    consecutive_failures: int = 0
    probes: int = 0
    last_probe_at: float | None = None
    last_probe_error: str | None = None
    recent: deque[bool] = field(init=False)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def record(self, ok: bool, elapsed_ms: float | None, error: str | None, now: float) -> None:
        self.probes += 1
        self.last_probe_at = now
        self.recent.append(ok)
        if ok:
            assert elapsed_ms is not None
            self.consecutive_failures = 0
            self.last_probe_error = None
            self.last_ms = elapsed_ms
            self.ewma_ms = (elapsed_ms if self.ewma_ms is None
                            else EWMA_ALPHA * elapsed_ms + (1 - EWMA_ALPHA) * self.ewma_ms)
        else:
            self.consecutive_failures += 1
            self.last_probe_error = scrub(error)

    @property
    def error_rate(self) -> float | None:
        if not self.recent:
            return None
        return round(self.recent.count(False) / len(self.recent), 4)

    def as_dict(self) -> dict[str, Any]:
        return {"latency_ms": _round(self.last_ms), "latency_ewma_ms": _round(self.ewma_ms),
                "error_rate": self.error_rate, "consecutive_failures": self.consecutive_failures,
                "probes": self.probes, "last_probe_at": self.last_probe_at,
                "last_probe_error": self.last_probe_error}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class UpstreamProber:
    """Periodic `ping`s to the connected upstreams (see the module doc)."""

    def __init__(self, upstreams: Iterable[Upstream], config: HealthConfig | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.upstreams = upstreams
        self.config = config if config is not None else HealthConfig()
        self.clock = clock
        self._stats: dict[str, ProbeStats] = {}
        self._task: asyncio.Task[None] | None = None

    def stats(self, name: str) -> ProbeStats:
        found = self._stats.get(name)
        if found is None:
            found = self._stats[name] = ProbeStats(self.config.window)
        return found

    async def start(self) -> None:
        """Probe in the background until `aclose()` (the first round at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bastion:upstream-prober")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:  # a bug here must not end the probing
                logger.exception("upstream probes failed")
            await asyncio.sleep(self.config.probe_seconds)

    async def probe_all(self) -> None:
        """One round: ping every upstream that is up, all at once."""
        await asyncio.gather(*(self.probe(u) for u in self.upstreams if u.state == "up"))

    async def probe(self, upstream: Upstream) -> bool:
        """Ping `upstream` once and record how it went; True when it answered in time."""
        timeout = self.config.probe_timeout_seconds
        loop = asyncio.get_running_loop()
        started = loop.time()
        error: str | None = None
        try:
            # The upstream's own timer cancels the ping there; ours bounds the whole wait.
            async with asyncio.timeout(timeout + 1):
                await upstream.request("ping", {}, timeout=timeout)
        except UpstreamError as exc:
            error = exc.message
        except MCPError:
            pass  # the upstream answered (with an error): it is alive
        except TimeoutError:
            error = f"no answer to ping within {timeout:g} s"
        except Exception as exc:  # whatever else went wrong is a failed probe, not a crash
            error = str(exc) or type(exc).__name__
        elapsed_ms = (loop.time() - started) * 1000
        stats = self.stats(upstream.name)
        failing = stats.consecutive_failures
        stats.record(error is None, elapsed_ms if error is None else None, error, self.clock())
        # Said once per change, not once per probe.
        if error is not None and not failing:
            logger.warning("upstream %r failed its health probe: %s", upstream.name,
                           stats.last_probe_error)
        elif error is None and failing:
            logger.info("upstream %r answers its health probes again (after %d failures)",
                        upstream.name, failing)
        return error is None

    def snapshot(self) -> list[dict[str, Any]]:
        """Each upstream's `health()` with the probe figures, errors scrubbed."""
        found = []
        for upstream in self.upstreams:
            health = upstream.health()
            health["last_error"] = scrub(health.get("last_error"))
            health.update(self.stats(upstream.name).as_dict())
            found.append(health)
        return found


def readiness(upstreams: list[dict[str, Any]], audit_running: bool | None) -> list[str]:
    """Why the gateway is not ready (empty: it is): no upstream up, or no audit log."""
    reasons = []
    if upstreams and not any(u.get("state") == "up" for u in upstreams):
        reasons.append("no upstream is up: " + "; ".join(
            f"{u.get('name')}: {u.get('state')}" for u in upstreams[:20]))
    if audit_running is False:
        reasons.append("the audit log is not running")
    return reasons


class ViewerCheck:
    """Who may scrape metrics and see health details: a principal with one of the roles or
    the scope, when an authenticator is configured and required."""

    def __init__(self, authenticator: HttpAuthenticator | None, required: bool,
                 roles: Iterable[str], scope: str) -> None:
        if required and authenticator is None:
            raise ValueError("require_auth is true, but the gateway has no authenticator: "
                             "configure `auth:` or set require_auth to auto")
        self.authenticator = authenticator if required else None
        self.roles = frozenset(roles)
        self.scope = scope

    async def allowed(self, request: Request, *, required: bool = False) -> bool:
        """True when no check applies or the caller passes it; False when the caller sent
        no credential (or is anonymous) and it is not `required`; `AuthChallenge` for a bad
        (or a missing, required) credential and `PermissionError` for a principal without
        the role or scope."""
        if self.authenticator is None:
            return True
        if len(request.headers.getlist("authorization")) > 1:
            raise AuthChallenge(400, "send one Authorization header",
                                www_authenticate='Bearer error="invalid_request"',
                                error="invalid_request")
        headers = dict(request.headers.items())
        try:
            principal = await self.authenticator.authenticate(
                headers, request.scope.get("query_string", b""))
        except AuthChallenge as exc:
            if exc.error is None and not required:  # no credential at all
                return False
            raise
        if not principal.authenticated:
            if required:
                raise PermissionError("an anonymous caller cannot read this")
            return False
        if self.roles.isdisjoint(principal.roles) and self.scope not in principal.scopes:
            raise PermissionError(f"this needs one of the roles {sorted(self.roles)} or the "
                                  f"scope {self.scope!r}")
        return True


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers={**_HEADERS, **(headers or {})},
                    media_type="application/json")


async def _gate(check: ViewerCheck, request: Request, *, required: bool) -> bool | Response:
    """Whether the caller may see details, or the answer that refuses the request."""
    if "origin" in request.headers:
        return _json({"error": "cross_origin", "message": "this route is not for browsers"},
                     403)
    try:
        return await check.allowed(request, required=required)
    except AuthChallenge as exc:
        return _json({"error": exc.error or "unauthorized",
                      "message": f"{exc.message}; send a bearer token with one of the roles "
                                 f"{sorted(check.roles)} or the scope {check.scope!r}"},
                     exc.status, {"www-authenticate": exc.www_authenticate})
    except PermissionError as exc:
        return _json({"error": "forbidden", "message": str(exc)}, 403)


def health_routes(snapshot: Callable[[], list[dict[str, Any]]], config: HealthConfig,
                  check: ViewerCheck, *,
                  audit_running: Callable[[], bool] | None = None) -> list[BaseRoute]:
    """`/healthz` and `/readyz` over `snapshot` (the prober's, or the pool's `health`)."""

    def answer(liveness: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            allowed = await _gate(check, request, required=False)
            if isinstance(allowed, Response):
                return allowed
            # Scrubbed here too: `snapshot` may be a pool's raw `health`.
            upstreams = [{**item, "last_error": scrub(item.get("last_error"))}
                         for item in snapshot()]
            reasons = readiness(upstreams, audit_running() if audit_running else None)
            ready = not reasons
            if liveness:
                document: dict[str, Any] = {"status": "ok", "ready": ready}
            else:
                document = {"status": "ready" if ready else "not_ready", "ready": ready}
            if allowed:
                document["upstreams"] = upstreams
                document["reasons"] = reasons
            return _json(document, 200 if liveness or ready else 503)
        return endpoint

    return [Route(config.healthz_path, answer(True), methods=["GET"]),
            Route(config.readyz_path, answer(False), methods=["GET"])]


def metrics_routes(metrics: GatewayMetrics, config: MetricsConfig,
                   check: ViewerCheck) -> list[BaseRoute]:
    """`/metrics` in the Prometheus text format, for a viewer `check` lets through."""

    async def endpoint(request: Request) -> Response:
        refused = await _gate(check, request, required=True)
        if isinstance(refused, Response):
            return refused
        return Response(metrics.render(), headers=_HEADERS, media_type=CONTENT_TYPE)

    return [Route(config.path, endpoint, methods=["GET"])]


def observability_routes(metrics: GatewayMetrics | None, prober: UpstreamProber,
                         metrics_config: MetricsConfig, health_config: HealthConfig, *,
                         authenticator: HttpAuthenticator | None = None,
                         audit_running: Callable[[], bool] | None = None) -> list[BaseRoute]:
    """Every route of this module the configuration enables (what `serve` mounts)."""
    routes: list[BaseRoute] = []
    roles, scope = metrics_config.roles, metrics_config.scope
    if health_config.enabled:
        check = ViewerCheck(authenticator, health_config.needs_auth(authenticator is not None),
                            roles, scope)
        routes += health_routes(prober.snapshot, health_config, check,
                                audit_running=audit_running)
    if metrics is not None and metrics_config.enabled:
        check = ViewerCheck(authenticator, metrics_config.needs_auth(authenticator is not None),
                            roles, scope)
        routes += metrics_routes(metrics, metrics_config, check)
    return routes


__all__ = ["ProbeStats", "UpstreamProber", "ViewerCheck", "health_routes", "metrics_routes",
           "observability_routes", "readiness", "scrub"]
