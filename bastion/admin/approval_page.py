"""The approver's web pages: sign in, the pending requests, one request with Approve and Deny.

```
GET  /admin/login[?next=/admin/approvals/ID]   a form asking for an access token
POST /admin/login      token=...&next=...      sets the session cookie, 303 to `next`
POST /admin/logout                             clears it
GET  /admin/approvals                          the pending requests you may decide
GET  /admin/approvals/{id}                     what, who, the redacted arguments, the rule,
                                               expiry, status, the events; the two buttons
POST /admin/approvals/{id}/decision  csrf=...&decision=approve|deny&reason=...
```

A browser cannot attach a bearer token to a link, and a token never goes in a URL
(SPEC-TP-04), so the approver pastes a token (e.g. from `bastion dev-token` or their identity
provider) into the login form once; the gateway checks it like any bearer token and sets the
`__Host-bastion-admin` session cookie (see `bastion.admin.guard` for its shape and limits).
`Authorization: Bearer` works on every page too (curl, a browser extension). Forms carry a
CSRF token bound to the approval and the approver, and every request with a foreign `Origin`
is refused (SPEC-LOCAL-01); the cookie is `SameSite=Strict` besides.

Every page is `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';
form-action 'self'; frame-ancestors 'none'`, `X-Frame-Options: DENY`, `Cache-Control:
no-store`, and every value shown is `html.escape`d: arguments come from an agent, which may
have been steered by anything it read.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.admin.approvals_api import parse_status, visible, visible_list
from bastion.admin.guard import COOKIE_NAME, AdminGuard, AdminRefused, read_body, refusal_of
from bastion.guard.approval import ApprovalError, ApprovalEvent, ApprovalRequest, ApprovalService
from bastion.protocol.principal import Principal
from bastion.transport.http.auth import AuthChallenge

PAGES = "/admin/approvals"
LOGIN = "/admin/login"
LOGOUT = "/admin/logout"
_FORM = "application/x-www-form-urlencoded"
_NEXT = re.compile(r"/admin/approvals(/[A-Za-z0-9_-]{1,100})?")
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY", "cache-control": "no-store", "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
          "text-align:left;vertical-align:top}pre{background:#f4f4f4;padding:.6rem;"
          "white-space:pre-wrap;word-break:break-all}button{margin-right:1rem;padding:.4rem 1rem}")

Page = Callable[[Request, Principal], Awaitable[Response]]


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def utc_text(timestamp: float | None) -> str:
    """A time for people (UTC), or "-"."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def actor_text(record: dict[str, Any] | None) -> str:
    """Who took a step, for people: subject (issuer) and agent, or the system."""
    if not record:
        return "-"
    if "system" in record:
        return f"system ({record['system']})"
    agent = f" via {record['client_id']}" if record.get("client_id") else ""
    return f"{record.get('sub')} ({record.get('iss')}){agent}"


def html_page(title: str, body: str, status: int = 200,
              headers: dict[str, str] | None = None) -> Response:
    document = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
                f"<body><h1>{_e(title)}</h1>{body}</body></html>")
    return HTMLResponse(document, status, headers={**_HEADERS, **(headers or {})})


def _message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return html_page("Refused" if status < 500 else "Unavailable", f"<p>{_e(text)}</p>"
                     f'<p><a href="{PAGES}">Pending approvals</a></p>', status, headers)


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(name)}</th><td>{value}</td></tr>"
                               for name, value in pairs) + "</table>"


def render_approval(request: ApprovalRequest, events: list[ApprovalEvent],
                    csrf: str | None) -> str:
    """The body of one approval's page; buttons only when it is pending and `csrf` given."""
    arguments = orjson.dumps(request.arguments_shown, option=orjson.OPT_INDENT_2).decode()
    facts = _rows([
        ("Tool", _e(request.tool)), ("Upstream", f"{_e(request.upstream)} (its tool "
                                                  f"{_e(request.upstream_tool)})"),
        ("Requested by", _e(actor_text(request.principal))), ("Agent", _e(request.agent)),
        ("Rule", _e(request.rule)), ("Status", f"<strong>{_e(request.status)}</strong>"),
        ("Requested", _e(utc_text(request.created_at))),
        ("Expires", _e(utc_text(request.expires_at))),
        ("Decided by", _e(actor_text(request.decided_by))), ("Reason", _e(request.reason)),
        ("Arguments SHA-256", f"<code>{_e(request.arguments_sha256)}</code>"),
    ])
    trail = "<table><tr><th>When</th><th>Step</th><th>By</th><th>Reason</th></tr>" + "".join(
        f"<tr><td>{_e(utc_text(event.at))}</td><td>{_e(event.step)}</td>"
        f"<td>{_e(actor_text(event.actor))}</td><td>{_e(event.reason)}</td></tr>"
        for event in events) + "</table>"
    body = (f"{facts}<h2>Arguments (secrets redacted)</h2><pre>{_e(arguments)}</pre>"
            f"<h2>Events</h2>{trail}")
    if request.status == "pending" and csrf is not None:
        body += (f'<h2>Decide</h2><form method=post action="{PAGES}/{_e(request.id)}/decision">'
                 f'<input type=hidden name=csrf value="{_e(csrf)}">'
                 '<p><label>Reason (optional)<br><textarea name=reason rows=3 cols=60 '
                 'maxlength=1000></textarea></label></p>'
                 '<button type=submit name=decision value=approve>Approve</button>'
                 '<button type=submit name=decision value=deny>Deny</button></form>')
    return body + f'<p><a href="{PAGES}">All pending approvals</a></p>'


def _login_form(next_path: str, problem: str | None = None) -> str:
    warning = f"<p><strong>{_e(problem)}</strong></p>" if problem else ""
    return (f"{warning}<p>Paste an access token the gateway accepts (it is sent in this form, "
            "never in a URL, and kept only as a signed session of at most 8 hours).</p>"
            f'<form method=post action="{LOGIN}"><input type=hidden name=next '
            f'value="{_e(next_path)}"><p><input type=password name=token size=60 '
            'autocomplete=off required></p><button type=submit>Sign in</button></form>')


def _next_path(value: str | None) -> str:
    return value if value is not None and _NEXT.fullmatch(value) else PAGES


async def _form(request: Request) -> dict[str, str]:
    body = await read_body(request, _FORM)
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise AdminRefused(400, "bad_form", "the form could not be read") from None
    if any(len(values) != 1 for values in fields.values()):
        raise AdminRefused(400, "bad_form", "each form field must appear once")
    return {name: values[0] for name, values in fields.items()}


def page_routes(service: ApprovalService, guard: AdminGuard) -> list[BaseRoute]:
    """The web pages (see the module doc)."""

    def signed_in(page: Page, *, post: bool) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                guard.check_origin(request)
                principal = await guard.principal(request)
                if principal is None:
                    if post:
                        raise AdminRefused(401, "unauthorized", "sign in first")
                    query = urlencode({"next": _next_path(request.url.path)})
                    return RedirectResponse(f"{LOGIN}?{query}", 303, headers=_HEADERS)
                return await page(request, principal)
            except AuthChallenge as exc:
                return _message(exc.status, exc.message,
                                {"www-authenticate": exc.www_authenticate})
            except AdminRefused as exc:
                return _message(exc.status, exc.message)
            except (ApprovalError, ValueError) as exc:
                refused = refusal_of(exc)
                return _message(refused.status, refused.message)
        return endpoint

    async def pending(request: Request, principal: Principal) -> Response:
        status = parse_status(request.query_params.get("status"))
        found = await visible_list(service, principal, status, 100)
        rows = "".join(
            f'<tr><td><a href="{PAGES}/{_e(item.id)}">{_e(item.id)}</a></td>'
            f"<td>{_e(item.tool)}</td><td>{_e(actor_text(item.principal))}</td>"
            f"<td>{_e(item.rule)}</td><td>{_e(item.status)}</td>"
            f"<td>{_e(utc_text(item.expires_at))}</td></tr>" for item in found)
        table = ("<table><tr><th>ID</th><th>Tool</th><th>Requested by</th><th>Rule</th>"
                 f"<th>Status</th><th>Expires</th></tr>{rows}</table>" if found
                 else "<p>Nothing waiting for you.</p>")
        signed = (f"<div>Signed in as {_e(principal.subject)}. <form method=post "
                  f'action="{LOGOUT}"><button type=submit>Sign out</button></form></div>')
        return html_page("Approvals", signed + table)

    async def one(request: Request, principal: Principal) -> Response:
        approval = await visible(service, request.path_params["approval_id"], principal)
        events = await service.events(approval.id)
        body = render_approval(approval, events, guard.csrf_token(approval.id, principal))
        return html_page(f"Approval {approval.id}", body)

    async def decision(request: Request, principal: Principal) -> Response:
        approval_id = request.path_params["approval_id"]
        form = await _form(request)
        if not guard.check_csrf(form.get("csrf", ""), approval_id, principal):
            raise AdminRefused(403, "csrf", "the form is stale or not from this gateway; "
                               "reload the approval page and decide again")
        choice = form.get("decision")
        if choice not in ("approve", "deny"):
            raise AdminRefused(400, "bad_form", "decision must be approve or deny")
        act = service.approve if choice == "approve" else service.deny
        await act(approval_id, principal, form.get("reason") or None)
        return RedirectResponse(f"{PAGES}/{approval_id}", 303, headers=_HEADERS)

    async def login_form(request: Request) -> Response:
        return html_page("Sign in", _login_form(_next_path(request.query_params.get("next"))))

    async def login(request: Request) -> Response:
        next_path = PAGES
        try:
            guard.check_origin(request)
            form = await _form(request)
            next_path = _next_path(form.get("next"))
            token = form.get("token", "").strip()
            if not token:
                raise AdminRefused(400, "bad_form", "paste an access token")
            principal = await guard.token(token)
            value, lifetime = guard.cookie_for(principal)
        except AuthChallenge as exc:
            return html_page("Sign in", _login_form(next_path, exc.message), exc.status)
        except AdminRefused as exc:
            return html_page("Sign in", _login_form(next_path, exc.message), exc.status)
        response = RedirectResponse(next_path, 303, headers=_HEADERS)
        response.set_cookie(COOKIE_NAME, value, max_age=lifetime, path="/", secure=True,
                            httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        try:
            guard.check_origin(request)
        except AdminRefused as exc:
            return _message(exc.status, exc.message)
        response = RedirectResponse(LOGIN, 303, headers=_HEADERS)
        response.delete_cookie(COOKIE_NAME, path="/", secure=True, httponly=True,
                               samesite="strict")
        return response

    return [
        Route(LOGIN, login_form, methods=["GET"]),
        Route(LOGIN, login, methods=["POST"]),
        Route(LOGOUT, logout, methods=["POST"]),
        Route(PAGES, signed_in(pending, post=False), methods=["GET"]),
        Route(PAGES + "/{approval_id}", signed_in(one, post=False), methods=["GET"]),
        Route(PAGES + "/{approval_id}/decision", signed_in(decision, post=True),
              methods=["POST"]),
    ]
