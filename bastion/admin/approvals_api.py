"""The approvals REST API where approvers act: list, show, approve, deny.

```
GET  /admin/api/approvals?status=pending&limit=50   -> {"approvals": [for_display, ...]}
GET  /admin/api/approvals/{id}                      -> for_display + {"events": [...]}
POST /admin/api/approvals/{id}/approve  {"reason": "..."}  -> for_display
POST /admin/api/approvals/{id}/deny     {"reason": "..."}  -> for_display
```

Every request carries `Authorization: Bearer` (a token or API key the gateway accepts; 401
with the authenticator's `WWW-Authenticate` otherwise). Who may decide is the approval
service's own check (the rule's approver roles and subjects; never the requester unless the
rule allows it): 403 `not_an_approver` / `self_approval`, 404 unknown, 409 already decided.
A caller sees only the requests it may decide or made itself (another's is 404: its details
are for its approvers); a listing shows those among the newest `limit * 4` (at most 1000).
Deciding is the service's check alone, made before it looks at the status, so a refused
caller learns nothing of how a request ended.

Why this is CSRF-safe: the API takes its credential only from the `Authorization` header,
never from a cookie, so a browser has no ambient credential to send on an attacker's behalf;
a POST must be `Content-Type: application/json`, which no HTML form can send and which a
cross-origin script can send only after a CORS preflight that this API never answers with
permission; and any request whose `Origin` is present and not the gateway's own is refused
first (SPEC-LOCAL-01). Bodies are capped at 16 KiB (413), read only after authentication;
bad JSON is 400. Responses are `Cache-Control: no-store`. Arguments are always the redacted
copy (`ApprovalRequest.for_display`); the raw arguments never leave the store.

`bastion.admin.approval_routes` gives these routes and the web pages (`approval_page`)
together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.admin.guard import AdminGuard, AdminRefused, may_see, read_body, refusal_of
from bastion.guard.approval import (
    STATUSES,
    ApprovalError,
    ApprovalRequest,
    ApprovalService,
    Status,
)
from bastion.guard.approval.store import MAX_LIST
from bastion.protocol.principal import Principal
from bastion.transport.http.auth import AuthChallenge

API = "/admin/api/approvals"
DEFAULT_LIMIT = 50
_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}

Handler = Callable[[Request], Awaitable[Response]]


def json_response(document: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(document), status, headers={**_HEADERS, **(headers or {})},
                    media_type="application/json")


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": code, "message": message}, status, headers)


def _answering(handler: Callable[[Request, Principal], Awaitable[Response]],
               guard: AdminGuard) -> Handler:
    """`handler` behind the Origin check, bearer authentication and the error mapping."""

    async def endpoint(request: Request) -> Response:
        try:
            guard.check_origin(request)
            principal = await guard.bearer(request)
            return await handler(request, principal)
        except AuthChallenge as exc:
            return _error(exc.status, exc.error or "unauthorized", exc.message,
                          {"www-authenticate": exc.www_authenticate})
        except AdminRefused as exc:
            return _error(exc.status, exc.code, exc.message)
        except (ApprovalError, ValueError) as exc:
            refused = refusal_of(exc)
            return _error(refused.status, refused.code, refused.message)

    return endpoint


async def visible(service: ApprovalService, approval_id: str,
                  principal: Principal) -> ApprovalRequest:
    """The request, when `principal` may see it; `AdminRefused` 404 otherwise (the same
    answer as an unknown id, so ids cannot be probed)."""
    try:
        request = await service.get(approval_id)
    except ApprovalError as exc:
        raise refusal_of(exc) from None
    if not may_see(request, principal):
        raise AdminRefused(404, "not_found", f"no approval {approval_id!r} you may see")
    return request


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIST:
        raise AdminRefused(400, "bad_request", f"limit must be a number from 1 to {MAX_LIST}")
    return int(value)


def parse_status(value: str | None) -> Status | None:
    """The status to list (None for all): `pending` by default, `all`, or one of STATUSES."""
    if value is None:
        return "pending"
    if value == "all":
        return None
    if value not in STATUSES:
        raise AdminRefused(400, "bad_request", "status must be all or one of: "
                           + ", ".join(STATUSES))
    return cast(Status, value)


async def visible_list(service: ApprovalService, principal: Principal, status: Status | None,
                       limit: int) -> list[ApprovalRequest]:
    """The newest requests `principal` may see (see the module doc)."""
    requests = await service.list(status, min(limit * 4, MAX_LIST))
    return [request for request in requests if may_see(request, principal)][:limit]


def _reason(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AdminRefused(400, "bad_json", f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) - {"reason"}:
        raise AdminRefused(400, "bad_request", 'the body must be {"reason": "..."} (the '
                           "reason is optional)")
    reason = document.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise AdminRefused(400, "bad_request", "reason must be text")
    return reason or None


def api_routes(service: ApprovalService, guard: AdminGuard) -> list[BaseRoute]:
    """The JSON routes (see the module doc)."""

    async def list_approvals(request: Request, principal: Principal) -> Response:
        status = parse_status(request.query_params.get("status"))
        limit = parse_limit(request.query_params.get("limit"))
        found = await visible_list(service, principal, status, limit)
        return json_response({"approvals": [item.for_display() for item in found]})

    async def show(request: Request, principal: Principal) -> Response:
        approval = await visible(service, request.path_params["approval_id"], principal)
        events = await service.events(approval.id)
        return json_response({**approval.for_display(), "events": [asdict(e) for e in events]})

    def deciding(approve: bool) -> Callable[[Request, Principal], Awaitable[Response]]:
        async def decide(request: Request, principal: Principal) -> Response:
            approval_id = request.path_params["approval_id"]
            reason = _reason(await read_body(request, "application/json"))
            act = service.approve if approve else service.deny
            return json_response((await act(approval_id, principal, reason)).for_display())
        return decide

    item = API + "/{approval_id}"
    return [
        Route(API, _answering(list_approvals, guard), methods=["GET"]),
        Route(item, _answering(show, guard), methods=["GET"]),
        Route(item + "/approve", _answering(deciding(True), guard),
              methods=["POST"]),
        Route(item + "/deny", _answering(deciding(False), guard), methods=["POST"]),
    ]

