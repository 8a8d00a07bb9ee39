"""The gateway's `HttpAuthenticator`: bearer credentials in, a `Principal` or a challenge out.

`build_authenticator(config.auth, resource_url=..., state_dir=...)` gives the `Authenticator`
the HTTP endpoint calls (None when `auth.mode` is `none`). Per request:

- `authenticate(headers, query_string)`, before the body is read: a token in the query string
  is refused (401 `invalid_request`, SPEC-TP-04); no `Authorization` header is a 401 with no
  error code, pointing at the protected resource metadata and naming the required scopes
  (SPEC-AUTH-02); anything but exactly one `Bearer <token68>` is a 400 `invalid_request`; a
  `bst_` credential is checked as an API key, anything else as a JWT; a refused credential is
  a 401 `invalid_token` whose description says why (never repeating the credential).
- `check_access(principal, method, params)`, on every parsed JSON-RPC request: the
  `required_scopes` and the scopes of every matching `scope_rules` entry; a missing one is a
  403 `insufficient_scope` whose `scope` lists every scope the operation needs, so the client
  can step up in one go (SPEC-AUTH-03).

It also serves the RFC 9728 protected resource metadata (`protected_resource_metadata()` at
`metadata_paths()`), and the principal of the local user of a stdio gateway.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bastion.config.auth import AuthConfig, ScopeRule, canonical_resource
from bastion.guard.identity.api_keys import KEY_PREFIX, ApiKeyStore, ApiKeyVerifier
from bastion.guard.identity.dev_issuer import (
    DEV_ALGORITHM,
    DEV_ISSUER,
    load_or_create_dev_key,
    public_key,
)
from bastion.guard.identity.errors import IdentityError, InvalidToken, MalformedCredential
from bastion.guard.identity.jwks import JwksCache, StaticKeys
from bastion.guard.identity.tokens import MAX_TOKEN_BYTES, TokenVerifier, TrustedIssuer
from bastion.protocol import principal as principals
from bastion.protocol.principal import Principal
from bastion.transport.http.auth import AuthChallenge
from bastion.transport.http.h1client import HTTPClient

WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: `Bearer` + the longest token + slack; a longer header is refused before any parsing.
MAX_AUTHORIZATION_BYTES = MAX_TOKEN_BYTES + 64
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
#: RFC 6750 §3: error_description may hold only these characters.
_DESCRIPTION_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')
_RESOURCE_METHODS = frozenset({"resources/read", "resources/subscribe",
                               "resources/unsubscribe"})


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _targets(method: str, params: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The tool, prompt and resource a request is about (at most one of them is set)."""
    if method == "completion/complete":
        ref = params.get("ref")
        if isinstance(ref, Mapping):
            name, uri = ref.get("name"), ref.get("uri")
            return (None, name if isinstance(name, str) else None,
                    uri if isinstance(uri, str) else None)
        return None, None, None
    name = params.get("name")
    name = name if isinstance(name, str) else None
    if method == "tools/call":
        return name, None, None
    if method == "prompts/get":
        return None, name, None
    if method in _RESOURCE_METHODS:
        uri = params.get("uri")
        return None, None, uri if isinstance(uri, str) else None
    return None, None, None


def _rule_matches(rule: ScopeRule, method: str, targets: tuple[str | None, ...]) -> bool:
    tool, prompt, resource = targets

    def any_match(value: str | None, globs: list[str]) -> bool:
        return value is not None and any(fnmatch.fnmatchcase(value, glob) for glob in globs)

    return (any_match(method, rule.methods) or any_match(tool, rule.tools)
            or any_match(prompt, rule.prompts) or any_match(resource, rule.resources))


class Authenticator:
    """Bearer authentication and scope checks for the HTTP endpoint (see the module doc)."""

    def __init__(self, config: AuthConfig, *, resource_url: str,
                 tokens: TokenVerifier | None, api_keys: ApiKeyVerifier | None,
                 jwks: list[JwksCache] | None = None, http: HTTPClient | None = None) -> None:
        self.config = config
        self.resource_url = canonical_resource(resource_url)
        self.tokens = tokens
        self.api_keys = api_keys
        self._jwks = jwks or []
        self._http = http
        parts = urlsplit(self.resource_url)
        self.metadata_url = f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path}"
        self._required = frozenset(config.required_scopes)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the API keys and start their reloading; fetch the issuers' keys in advance
        (a failure there is logged and retried on the first request, not fatal)."""
        if self.api_keys is not None:
            await self.api_keys.start()
        await asyncio.gather(*(cache.prefetch() for cache in self._jwks))

    async def aclose(self) -> None:
        if self.api_keys is not None:
            await self.api_keys.aclose()
        if self._http is not None:
            await self._http.aclose()

    # -- HttpAuthenticator -------------------------------------------------------------------

    async def authenticate(self, headers: Mapping[str, str], query_string: bytes) -> Principal:
        # Parsed, not searched: `access%5Ftoken` is the same parameter.
        if query_string and any(name == "access_token" for name, _ in parse_qsl(
                query_string.decode("latin-1"), keep_blank_values=True)):
            raise self._challenge(401, "invalid_request", "access tokens are accepted only in "
                                  "the Authorization header, never in the URL")
        value = headers.get("authorization")
        if not value:
            raise AuthChallenge(401, "authentication required: send an access token in the "
                                "Authorization header", www_authenticate=self._header(
                                    scope=" ".join(sorted(self._required)) or None))
        try:
            return self._check_required(await self._verify(value))
        except MalformedCredential as exc:
            raise self._challenge(400, "invalid_request", str(exc)) from None
        except IdentityError as exc:
            raise self._challenge(401, "invalid_token", str(exc)) from None

    async def _verify(self, value: str) -> Principal:
        if len(value) > MAX_AUTHORIZATION_BYTES:
            raise MalformedCredential(f"the Authorization header is longer than "
                                      f"{MAX_AUTHORIZATION_BYTES} bytes")
        match = _BEARER.fullmatch(value.strip())
        if match is None:
            raise MalformedCredential("the Authorization header must be one credential: "
                                      "Bearer <token>")
        token = match.group(1)
        if token.startswith(KEY_PREFIX):
            if self.api_keys is None:
                raise InvalidToken("this gateway does not accept API keys")
            return self.api_keys.verify(token)
        if self.tokens is None:
            raise InvalidToken("this gateway accepts only API keys")
        return await self.tokens.verify(token)

    def _check_required(self, principal: Principal) -> Principal:
        if not self._required <= principal.scopes:
            raise self._insufficient(self._required)
        return principal

    def check_access(self, principal: Principal, method: str, params: dict[str, Any]) -> None:
        needed = set(self._required)
        targets = _targets(method, params if isinstance(params, Mapping) else {})
        for rule in self.config.scope_rules:
            if _rule_matches(rule, method, targets):
                needed.update(rule.scopes)
        if not needed <= principal.scopes:
            raise self._insufficient(needed)

    # -- challenges --------------------------------------------------------------------------

    def _insufficient(self, needed: set[str] | frozenset[str]) -> AuthChallenge:
        scope = " ".join(sorted(needed))
        return self._challenge(403, "insufficient_scope",
                               f"this request needs the scopes: {scope}", scope=scope)

    def _challenge(self, status: int, error: str, description: str,
                   scope: str | None = None) -> AuthChallenge:
        description = _DESCRIPTION_UNSAFE.sub("?", description)[:300]
        return AuthChallenge(status, description, error=error, www_authenticate=self._header(
            error=error, error_description=description, scope=scope))

    def _header(self, **params: str | None) -> str:
        params["resource_metadata"] = self.metadata_url
        return "Bearer " + ", ".join(f"{name}={_quoted(value)}"
                                     for name, value in params.items() if value)

    # -- metadata and the local user ---------------------------------------------------------

    def protected_resource_metadata(self) -> dict[str, Any]:
        """The RFC 9728 document: this resource, its authorization servers and scopes."""
        if self.config.mode == "dev":
            servers = [DEV_ISSUER]
        else:
            servers = [entry.issuer for entry in self.config.issuers]
        document: dict[str, Any] = {
            "resource": self.resource_url,
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "Bastion",
        }
        scopes = self.config.published_scopes()
        if scopes:
            document["scopes_supported"] = scopes
        return document

    def metadata_paths(self) -> list[str]:
        """Where the metadata is served: the path-inserted form and the root form."""
        path = urlsplit(self.resource_url).path
        return list(dict.fromkeys([f"{WELL_KNOWN}{path}", WELL_KNOWN]))

    def local_principal(self) -> Principal:
        """The user of a stdio gateway (the operating-system account), with `local_roles`."""
        return principals.local_principal(frozenset(self.config.local_roles))


def build_authenticator(config: AuthConfig, *, resource_url: str, state_dir: Path
                        ) -> Authenticator | None:
    """The authenticator for `config` (None when `mode` is `none`); call `start()` next.

    `resource_url` is the gateway's URL as its listener sees it; `auth.resource` wins when
    set (either way canonicalized), and is the `aud` every token must carry."""
    if config.mode == "none":
        return None
    resource_url = config.resource_url(resource_url)
    api_keys = (ApiKeyVerifier(ApiKeyStore.in_state_dir(state_dir)) if config.api_keys
                else None)
    if config.mode == "dev":
        key = public_key(load_or_create_dev_key(state_dir))
        issuer = TrustedIssuer(DEV_ISSUER, StaticKeys([key]), frozenset({DEV_ALGORITHM}),
                               frozenset({resource_url}), method="dev")
        tokens = TokenVerifier([issuer], claims=config.claims, leeway=config.leeway)
        return Authenticator(config, resource_url=resource_url, tokens=tokens,
                             api_keys=api_keys)
    http = HTTPClient(connect_timeout=5.0, limit=4)
    caches: list[JwksCache] = []
    issuers: list[TrustedIssuer] = []
    for entry in config.issuers:
        cache = JwksCache(entry.issuer, http, jwks_uri=entry.jwks_uri,
                          allow_insecure_loopback=config.allow_insecure_loopback)
        caches.append(cache)
        issuers.append(TrustedIssuer(entry.issuer, cache, frozenset(entry.algorithms),
                                     frozenset({resource_url, *entry.audiences})))
    tokens = TokenVerifier(issuers, claims=config.claims, leeway=config.leeway)
    return Authenticator(config, resource_url=resource_url, tokens=tokens, api_keys=api_keys,
                         jwks=caches, http=http)
