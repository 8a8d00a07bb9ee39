"""A real authorization server and a real protected MCP server, on loopback, for the OAuth tests.

`MockAS` is a Starlette app that behaves as its `ASOptions` say (metadata location and
contents, RFC 9207 `iss`, CIMD, DCR, token endpoint methods, refresh) and records every
request it gets. `ProtectedMCP` puts Bastion's conformance fixture server (`everything`)
behind a small bearer check that accepts only tokens its current authorization server issued
for this very resource, serves its protected resource metadata, and answers 401 / 403 with
the challenges RFC 6750 / RFC 9728 describe. Both run under uvicorn on 127.0.0.1 in the
test's event loop (`Rig`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.client.oauth import HeadlessAuthorizer, OAuthClientSettings, OAuthProvider
from bastion.testing.everything import build_server
from bastion.transport.http import asgi_app
from bastion.transport.http.egress import EgressClient, EgressPolicy

REDIRECT_URI = "http://127.0.0.1:7777/callback"
Scope = dict[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[dict[str, Any]]],
                 Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


# -- the authorization server ------------------------------------------------------------------


@dataclass
class ASOptions:
    #: Names its DCR clients: `dcr-<name>-<n>`.
    name: str = "client"
    prefix: str = ""  # the issuer's path
    #: Which well-known URL serves the metadata: oauth-insert, oidc-insert or oidc-append.
    metadata: str = "oauth-insert"
    issuer_override: str | None = None
    pkce: list[str] | None = field(default_factory=lambda: ["S256"])
    iss_supported: bool | None = True
    iss_mode: str = "correct"  # correct, wrong, omit, normalized
    cimd: bool = False
    registration: bool = True
    auth_methods: list[str] = field(default_factory=lambda: ["none"])
    #: What DCR answers: a secret (or None) and a token endpoint method (or None).
    dcr_secret: str | None = "dcr-secret-value"
    dcr_method: str | None = None
    scopes_supported: list[str] | None = None
    refresh: bool = True
    expires_in: int = 3600
    token_type: str = "Bearer"
    #: The authorization endpoint answers with this error instead of a code.
    deny: str | None = None
    refresh_fails: bool = False
    #: Scopes it never grants, whatever is asked.
    withhold: list[str] = field(default_factory=list)
    #: The authorization endpoint shows a sign-in page (200) instead of redirecting.
    login_page: bool = False


@dataclass
class Grant:
    scopes: list[str]
    resource: str | None
    client_id: str | None


class MockAS:
    """An OAuth authorization server that approves at once (see the module doc)."""

    def __init__(self, options: ASOptions | None = None) -> None:
        self.options = options or ASOptions()
        self.base = ""  # set once its port is known
        self.hits: list[str] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[tuple[dict[str, str], str | None]] = []
        self.registrations: list[dict[str, Any]] = []
        self.tokens: dict[str, Grant] = {}
        self._codes: dict[str, Grant] = {}
        self._refresh: dict[str, Grant] = {}
        self._serial = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/{path:path}", self._get, methods=["GET"]),
            Route("/{path:path}", self._post, methods=["POST"]),
        ])

    @property
    def issuer(self) -> str:
        return f"{self.base}{self.options.prefix}"

    def metadata_path(self) -> str:
        prefix, kind = self.options.prefix, self.options.metadata
        if kind == "oidc-insert":
            return f"/.well-known/openid-configuration{prefix}"
        if kind == "oidc-append":
            return f"{prefix}/.well-known/openid-configuration"
        return f"/.well-known/oauth-authorization-server{prefix}"

    def metadata(self) -> dict[str, Any]:
        o = self.options
        doc: dict[str, Any] = {
            "issuer": o.issuer_override or self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": o.auth_methods,
        }
        if o.registration:
            doc["registration_endpoint"] = f"{self.issuer}/register"
        if o.pkce is not None:
            doc["code_challenge_methods_supported"] = o.pkce
        if o.iss_supported is not None:
            doc["authorization_response_iss_parameter_supported"] = o.iss_supported
        if o.cimd:
            doc["client_id_metadata_document_supported"] = True
        if o.scopes_supported is not None:
            doc["scopes_supported"] = o.scopes_supported
        return doc

    async def _get(self, request: Request) -> Response:
        path = request.url.path
        self.hits.append(path)
        if path == self.metadata_path():
            return JSONResponse(self.metadata())
        if path == f"{self.options.prefix}/authorize":
            return self._authorize(dict(request.query_params))
        return JSONResponse({"error": "not_found"}, status_code=404)

    def _authorize(self, query: dict[str, str]) -> Response:
        self.authorize_requests.append(query)
        if self.options.login_page:
            return Response("<form>sign in</form>", media_type="text/html")
        params: dict[str, str] = {}
        if self.options.deny:
            params["error"] = self.options.deny
            params["error_description"] = "the user said no"
        else:
            code = f"code-{next(self._serial)}"
            scopes = [s for s in query.get("scope", "").split() if s not in self.options.withhold]
            self._codes[code] = Grant(scopes, query.get("resource"), query.get("client_id"))
            params["code"] = code
        if "state" in query:
            params["state"] = query["state"]
        mode = self.options.iss_mode
        if mode != "omit":
            params["iss"] = {"correct": self.issuer, "wrong": "https://evil.example.com",
                             "normalized": f"{self.issuer}/"}[mode]
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(params)}", 302)

    async def _post(self, request: Request) -> Response:
        path = request.url.path
        self.hits.append(path)
        if path == f"{self.options.prefix}/register" and self.options.registration:
            body = orjson.loads(await request.body())
            self.registrations.append(body)
            client_id = f"dcr-{self.options.name}-{len(self.registrations)}"
            answer: dict[str, Any] = {"client_id": client_id,
                                      "redirect_uris": body.get("redirect_uris", [])}
            if self.options.dcr_secret is not None:
                answer["client_secret"] = self.options.dcr_secret
            if self.options.dcr_method is not None:
                answer["token_endpoint_auth_method"] = self.options.dcr_method
            return JSONResponse(answer, status_code=201)
        if path == f"{self.options.prefix}/token":
            form = dict(parse_qsl((await request.body()).decode()))
            self.token_requests.append((form, request.headers.get("authorization")))
            return self._token(form)
        return JSONResponse({"error": "not_found"}, status_code=404)

    def _token(self, form: dict[str, str]) -> Response:
        if form.get("grant_type") == "authorization_code":
            grant = self._codes.pop(form.get("code", ""), None)
        elif form.get("grant_type") == "refresh_token" and not self.options.refresh_fails:
            grant = self._refresh.pop(form.get("refresh_token", ""), None)
        else:
            grant = None
        if grant is None:
            return JSONResponse({"error": "invalid_grant", "error_description": "no such grant"},
                                status_code=400)
        serial = next(self._serial)
        token = f"access-{serial}-secretvalue"
        self.tokens[token] = grant
        answer: dict[str, Any] = {"access_token": token, "token_type": self.options.token_type,
                                  "expires_in": self.options.expires_in}
        if grant.scopes:
            answer["scope"] = " ".join(grant.scopes)
        if self.options.refresh:
            refresh = f"refresh-{serial}-secretvalue"
            self._refresh[refresh] = grant
            answer["refresh_token"] = refresh
        return JSONResponse(answer)

    def basic_client_id(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        return unquote_plus(base64.b64decode(header[6:]).decode().partition(":")[0])


# -- the protected MCP server -------------------------------------------------------------------


@dataclass
class ResourceOptions:
    prm: str = "path"  # path, root, or custom (only reachable through the challenge)
    in_header: bool = True
    challenge_scope: str | None = None
    scopes_supported: list[str] | None = None
    #: Scopes a tools/call needs beyond a valid token (403 insufficient_scope otherwise).
    call_scopes: list[str] = field(default_factory=list)
    resource_override: str | None = None
    #: Refuse every token (a server that is broken, or hostile).
    reject_all: bool = False


class ProtectedMCP:
    """The `everything` MCP server behind a bearer check (see the module doc)."""

    def __init__(self, authority: MockAS, options: ResourceOptions | None = None) -> None:
        self.authority = authority
        self.options = options or ResourceOptions()
        self.base = ""
        self.inner = asgi_app(build_server())
        #: (JSON-RPC method, Authorization header) of every POST to /mcp.
        self.seen: list[tuple[str | None, str | None]] = []
        self.prm_hits: list[str] = []

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def resource(self) -> str:
        return self.options.resource_override or (
            self.base if self.options.prm == "root" else self.url)

    def prm_path(self) -> str:
        return {"path": "/.well-known/oauth-protected-resource/mcp",
                "root": "/.well-known/oauth-protected-resource",
                "custom": "/custom/prm.json"}[self.options.prm]

    def challenge(self, error: str | None = None, scope: str | None = None) -> str:
        parts = [f'error="{error}"'] if error else []
        if scope:
            parts.append(f'scope="{scope}"')
        if self.options.in_header:
            parts.append(f'resource_metadata="{self.base}{self.prm_path()}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(("/.well-known/", "/custom/")):
            self.prm_hits.append(path)
            if path != self.prm_path():
                await _respond(send, 404, {"error": "not_found"})
                return
            doc: dict[str, Any] = {"resource": self.resource,
                                   "authorization_servers": [self.authority.issuer]}
            if self.options.scopes_supported is not None:
                doc["scopes_supported"] = self.options.scopes_supported
            await _respond(send, 200, doc)
            return
        body = await Request(scope, receive).body()
        method = _method(body) if scope["method"] == "POST" else scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        authorization = headers.get("authorization")
        if scope["method"] == "POST":
            self.seen.append((method, authorization))
        refusal = self._check(authorization, method)
        if refusal is not None:
            status, challenge = refusal
            await _respond(send, status, {"error": "refused"},
                           [(b"www-authenticate", challenge.encode())])
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)

    def _check(self, authorization: str | None, method: str | None) -> tuple[int, str] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return 401, self.challenge(scope=self.options.challenge_scope)
        grant = self.authority.tokens.get(authorization[7:])
        if grant is None or grant.resource != self.resource or self.options.reject_all:
            return 401, self.challenge("invalid_token", self.options.challenge_scope)
        needed = self.options.call_scopes if method == "tools/call" else []
        if not set(needed) <= set(grant.scopes):
            return 403, self.challenge("insufficient_scope", " ".join(needed))
        return None


def _method(body: bytes) -> str | None:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return message.get("method") if isinstance(message, dict) else None


async def _respond(send: Any, status: int, doc: dict[str, Any],
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(doc)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


# -- running them ----------------------------------------------------------------------------------


class Rig:
    """Starts apps under uvicorn on 127.0.0.1, makes providers, and cleans up after the test."""

    def __init__(self) -> None:
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def serve(self, target: MockAS | ProtectedMCP | Starlette | Any,
                    app: ASGI | None = None, **config_options: Any) -> str:
        """Start `app` (default: `target.app`, or `target` itself); sets `target.base`.
        With `ssl_certfile`/`ssl_keyfile` in `config_options` it serves https."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        scheme = "https" if "ssl_certfile" in config_options else "http"
        base = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        if isinstance(target, MockAS | ProtectedMCP):
            target.base = base
        app = app or getattr(target, "app", target)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto",
                                **config_options)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._servers.append((server, task))
        for _ in range(500):
            if server.started:
                return base
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        raise AssertionError("uvicorn did not start")

    async def stack(self, as_options: ASOptions | None = None,
                    resource_options: ResourceOptions | None = None
                    ) -> tuple[MockAS, ProtectedMCP]:
        authority = MockAS(as_options)
        await self.serve(authority)
        mcp = ProtectedMCP(authority, resource_options)
        await self.serve(mcp)
        return authority, mcp

    def egress(self, **policy: Any) -> EgressClient:
        egress = EgressClient(EgressPolicy(allow_insecure_loopback=True, **policy))
        self._closers.append(egress.aclose)
        return egress

    def provider(self, url: str, settings: OAuthClientSettings | None = None,
                 **options: Any) -> OAuthProvider:
        egress = self.egress()
        options.setdefault("authorizer", HeadlessAuthorizer(egress))
        return OAuthProvider(url, settings or OAuthClientSettings(redirect_uri=REDIRECT_URI),
                             egress=egress, **options)

    async def close(self) -> None:
        for closer in self._closers:
            await closer()
        for server, _task in self._servers:
            server.should_exit = True
        for _server, task in self._servers:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    running = Rig()
    yield running
    await running.close()
