"""Where approvers act: the admin REST API (`approvals_api`), the web pages
(`approval_page`) and what keeps both safe (`guard`: bearer authentication, the browser
session cookie, CSRF tokens, Origin checks).

`approval_routes(service, authenticator, csrf_key=...)` gives all the Starlette routes, to
mount beside the MCP endpoint (`bastion.gateway.serve.http_server`'s fallback app). The CLI
for operators on the gateway host is `bastion.commands.approvals`.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute

from bastion.admin.approval_page import page_routes
from bastion.admin.approvals_api import api_routes
from bastion.admin.guard import COOKIE_NAME, MAX_BODY, SESSION_TTL, AdminGuard, AdminRefused
from bastion.guard.approval import ApprovalService
from bastion.transport.http.auth import HttpAuthenticator


def approval_routes(service: ApprovalService, authenticator: HttpAuthenticator, *,
                    csrf_key: bytes, origins: Iterable[str] = ()) -> list[BaseRoute]:
    """The admin API and the approval pages.

    `csrf_key` (at least 32 secret bytes, stable across restarts so browser sessions survive
    them) signs the session cookie and the forms' CSRF tokens, each under its own derived key;
    `origins` are further origins the gateway is reached at (the request's own and the
    authenticator's resource origin always count)."""
    guard = AdminGuard(authenticator, csrf_key, origins=origins)
    return [*api_routes(service, guard), *page_routes(service, guard)]


__all__ = ["COOKIE_NAME", "MAX_BODY", "SESSION_TTL", "AdminGuard", "AdminRefused",
           "approval_routes"]
