"""Who is asking the admin routes, and whether the request is really theirs (CSRF).

`AdminGuard` is shared by the JSON API (`approvals_api`) and the web pages (`approval_page`):

- **Bearer first.** A request with `Authorization` is authenticated by the gateway's own
  `HttpAuthenticator` (the same tokens and API keys as the MCP endpoint; a token in the URL is
  refused, SPEC-TP-04). A refusal is the authenticator's `AuthChallenge` (401 with its
  `WWW-Authenticate`).
- **The browser session cookie** (pages only). A browser cannot attach a bearer token to a
  link or a form, so `POST /admin/login` takes the token once in a form field (never in the
  URL), authenticates it, and sets `__Host-bastion-admin`: the principal (issuer, subject,
  agent, roles, credential id) and an expiry of at most 8 hours (never past the token's own),
  HMAC-signed with a key derived from `csrf_key`. `Secure; HttpOnly; SameSite=Strict;
  Path=/` and the `__Host-` prefix keep it off other sites, out of scripts and away from
  subdomains. The cookie is the token's stand-in: the roles are those of the token at login,
  and a role removed at the identity provider, or an API key revoked, still counts for the
  browser session until the cookie expires (at most 8 h, never past the token's `exp`).
- **CSRF tokens** for the page's forms: HMAC(approval id, approver binding, hour) under
  another derived key; valid for the current and the previous hour, compared in constant
  time. A token for one approval or one approver is worth nothing for another.
- **Origin.** Every request whose `Origin` header is present must be the gateway's own origin
  (the request's scheme and Host, the authenticator's resource origin, or one given), so a
  cross-site form or fetch is refused before anything else happens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request

from bastion.guard.approval import (
    ApprovalError,
    ApprovalNotFound,
    ApprovalNotPending,
    ApprovalRequest,
    NotAnApprover,
    SelfApproval,
)
from bastion.protocol.principal import Principal
from bastion.transport.http.auth import HttpAuthenticator

COOKIE_NAME = "__Host-bastion-admin"
#: The longest a browser session lasts, in seconds.
SESSION_TTL = 8 * 3600
#: The largest request body any admin route reads.
MAX_BODY = 16 * 1024
#: A browser drops cookies past ~4 KiB; a principal with more roles cannot use the page.
MAX_COOKIE = 3800
_CSRF_WINDOW = 3600
_MIN_KEY = 32


class AdminRefused(Exception):
    """A request the admin routes refuse: its HTTP status, a short code and what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refusal_of(exc: ApprovalError | ValueError) -> AdminRefused:
    """The HTTP answer to an error of the approval service."""
    if isinstance(exc, SelfApproval):
        return AdminRefused(403, "self_approval", str(exc))
    if isinstance(exc, NotAnApprover):
        return AdminRefused(403, "not_an_approver", str(exc))
    if isinstance(exc, ApprovalNotFound):
        return AdminRefused(404, "not_found", str(exc))
    if isinstance(exc, ApprovalNotPending):
        return AdminRefused(409, "not_pending", str(exc))
    if isinstance(exc, ValueError):
        return AdminRefused(400, "bad_request", str(exc))
    return AdminRefused(503, "unavailable", str(exc))


def may_see(request: ApprovalRequest, principal: Principal) -> bool:
    """Whether `principal` may see `request`: one of its approvers, or its requester."""
    requester = (request.principal.get("iss"), request.principal.get("sub"))
    return (not principal.roles.isdisjoint(request.approver_roles)
            or principal.subject in request.approver_subjects
            or requester == (principal.issuer, principal.subject))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AdminGuard:
    """Authentication, browser sessions, CSRF tokens and Origin checks (see the module doc)."""

    def __init__(self, authenticator: HttpAuthenticator, csrf_key: bytes, *,
                 origins: Iterable[str] = ()) -> None:
        if not isinstance(csrf_key, bytes) or len(csrf_key) < _MIN_KEY:
            raise ValueError(f"csrf_key must be at least {_MIN_KEY} random bytes")
        self.authenticator = authenticator
        self._cookie_key = hmac.new(csrf_key, b"bastion admin session cookie",
                                    hashlib.sha256).digest()
        self._csrf_key = hmac.new(csrf_key, b"bastion admin csrf token", hashlib.sha256).digest()
        own = list(origins)
        resource = getattr(authenticator, "resource_url", None)
        if isinstance(resource, str):
            own.append(resource)
        self._origins = frozenset(filter(None, (_origin_of(url) for url in own)))

    # -- who ---------------------------------------------------------------------------------

    async def bearer(self, request: Request) -> Principal:
        """The principal of the request's `Authorization` header, or `AuthChallenge`."""
        if len(request.headers.getlist("authorization")) > 1:
            raise AdminRefused(400, "bad_request", "send one Authorization header")
        headers = {name: value for name, value in request.headers.items()}
        principal = await self.authenticator.authenticate(headers,
                                                          request.scope.get("query_string", b""))
        if not principal.authenticated:
            raise AdminRefused(403, "anonymous", "an anonymous caller cannot act on approvals")
        return principal

    async def token(self, token: str) -> Principal:
        """The principal of a token given in the login form (checked as a bearer token)."""
        principal = await self.authenticator.authenticate({"authorization": f"Bearer {token}"},
                                                          b"")
        if not principal.authenticated:
            raise AdminRefused(403, "anonymous", "an anonymous caller cannot act on approvals")
        return principal

    async def principal(self, request: Request, now: float | None = None) -> Principal | None:
        """For pages: the bearer's principal when `Authorization` is sent, else the session
        cookie's, else None (not logged in)."""
        if "authorization" in request.headers:
            return await self.bearer(request)
        value = request.cookies.get(COOKIE_NAME)
        return self.from_cookie(value, now) if value else None

    # -- the session cookie ------------------------------------------------------------------

    def cookie_for(self, principal: Principal, now: float | None = None) -> tuple[str, int]:
        """A signed session cookie for `principal` and its lifetime in seconds."""
        now = time.time() if now is None else now
        expires = now + SESSION_TTL
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        lifetime = math.floor(expires - now)
        if lifetime <= 0:
            raise AdminRefused(401, "expired", "the token has expired; get a new one")
        payload = {"sub": principal.subject, "iss": principal.issuer, "m": principal.method,
                   "cid": principal.client_id, "roles": sorted(principal.roles),
                   "jti": principal.credential_id, "exp": int(expires)}
        body = _b64(orjson.dumps(payload))
        value = f"{body}.{_b64(self._mac(self._cookie_key, body.encode()))}"
        if len(value) > MAX_COOKIE:
            raise AdminRefused(400, "too_many_roles", "this identity carries too many roles "
                               "for a browser session; use the API or the CLI")
        return value, lifetime

    def from_cookie(self, value: str, now: float | None = None) -> Principal | None:
        """The principal a session cookie names, or None when it is forged, bent or old."""
        if len(value) > MAX_COOKIE or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            given = _unb64(mac)
            if not hmac.compare_digest(given, self._mac(self._cookie_key, body.encode())):
                return None
            payload: Any = orjson.loads(_unb64(body))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        now = time.time() if now is None else now
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) \
                or now >= payload["exp"]:
            return None
        try:  # signed by us, so well formed unless the key was reused elsewhere
            return Principal(subject=payload["sub"], issuer=payload["iss"],
                             method=payload["m"], client_id=payload["cid"],
                             roles=frozenset(payload["roles"]), credential_id=payload["jti"],
                             expires_at=float(payload["exp"]))
        except (KeyError, TypeError, ValueError):
            return None

    # -- CSRF ------------------------------------------------------------------------------------

    def csrf_token(self, approval_id: str, principal: Principal, now: float | None = None) -> str:
        """The token the page's forms carry for this approval and this approver."""
        hour = int((time.time() if now is None else now) // _CSRF_WINDOW)
        return self._csrf(approval_id, principal.binding, hour)

    def check_csrf(self, token: str, approval_id: str, principal: Principal,
                   now: float | None = None) -> bool:
        hour = int((time.time() if now is None else now) // _CSRF_WINDOW)
        # Both compared every time: the answer takes as long whichever hour matches.
        current = hmac.compare_digest(token, self._csrf(approval_id, principal.binding, hour))
        previous = hmac.compare_digest(token, self._csrf(approval_id, principal.binding,
                                                         hour - 1))
        return current or previous

    def _csrf(self, approval_id: str, binding: str, hour: int) -> str:
        message = f"{approval_id}\x00{binding}\x00{hour}".encode()
        return _b64(self._mac(self._csrf_key, message))

    @staticmethod
    def _mac(key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, hashlib.sha256).digest()

    # -- Origin and bodies -------------------------------------------------------------------

    def check_origin(self, request: Request) -> None:
        """Refuse (403) a request whose `Origin` is present and not the gateway's own."""
        origin = request.headers.get("origin")
        if origin is None:
            return
        host = request.headers.get("host", "")
        own = {*self._origins, f"{request.url.scheme}://{host}".lower()}
        if origin.strip().lower() not in own:
            raise AdminRefused(403, "cross_origin", "this request comes from another site "
                               "(Origin header); act on approvals from the gateway's own pages")


async def read_body(request: Request, media_type: str, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (415) unless its media type is `media_type` and (413) past
    `limit` bytes, before more than `limit` bytes are read."""
    given = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if given != media_type:
        raise AdminRefused(415, "unsupported_media_type",
                           f"send the body as {media_type}, not {given or 'nothing'}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise AdminRefused(413, "too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AdminRefused(413, "too_large", f"the body is larger than {limit} bytes")
    return bytes(body)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()

