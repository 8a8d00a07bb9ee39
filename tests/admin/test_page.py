"""The approver's web pages over a real socket: sign-in cookie, the page (escaped, redacted,
framed by nothing), and the CSRF-protected decision form (SPEC-TOOL-05, SPEC-TOOL-06,
SPEC-CD-02, SPEC-LOCAL-01, SPEC-SESS-05, SPEC-TP-04)."""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pytest

from bastion.admin import COOKIE_NAME, SESSION_TTL, AdminGuard
from bastion.guard.identity import DEV_ISSUER
from bastion.protocol.principal import Principal
from tests.admin.conftest import Admin, Reply
from tests.approval.support import ARGS

pytestmark = pytest.mark.timeout(20)
FORM = {"content-type": "application/x-www-form-urlencoded"}
_CSRF = re.compile(r'name=csrf value="([^"]+)"')


async def login(admin: Admin, token: str, **fields: str) -> Reply:
    body = urlencode({"token": token, **fields}).encode()
    return await admin.call("POST", "/admin/login", FORM, body)


async def session(admin: Admin, subject: str, *roles: str) -> dict[str, str]:
    reply = await login(admin, admin.token(subject, *roles))
    assert reply.status == 303, reply.text
    value = reply.headers["set-cookie"].split(";")[0]
    return {"cookie": value}


async def decide(admin: Admin, approval_id: str, headers: dict[str, str], **fields: str
                 ) -> Reply:
    return await admin.call("POST", f"/admin/approvals/{approval_id}/decision",
                            {**FORM, **headers}, urlencode(fields).encode())


def csrf_of(page: Reply) -> str:
    (token,) = _CSRF.findall(page.text)
    return token


def assert_locked_down(reply: Reply) -> None:
    assert reply.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'")
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["cache-control"] == "no-store"


async def test_spec_tp_04_login_sets_a_strict_host_cookie(admin: Admin) -> None:
    form = await admin.call("GET", "/admin/login?next=/admin/approvals/apr_x")
    assert form.status == 200 and 'value="/admin/approvals/apr_x"' in form.text
    assert "set-cookie" not in form.headers
    assert_locked_down(form)
    # A token in the URL signs nobody in.
    in_url = await admin.call("GET", f"/admin/login?token={admin.token('carol', 'soc-lead')}")
    assert "set-cookie" not in in_url.headers

    reply = await login(admin, admin.token("carol", "soc-lead"), next="/admin/approvals/apr_x")
    assert reply.status == 303 and reply.headers["location"] == "/admin/approvals/apr_x"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    max_age = int(re.search(r"Max-Age=(\d+)", cookie, re.I)[1])  # type: ignore[index]
    assert 500 < max_age <= 600  # never past the token's own expiry (ttl 600 s)

    # `next` is a path of these pages only: no open redirect.
    away = await login(admin, admin.token("carol", "soc-lead"), next="https://evil.example/")
    assert away.headers["location"] == "/admin/approvals"
    assert (await login(admin, admin.token("carol"), next="//evil.example")
            ).headers["location"] == "/admin/approvals"


async def test_login_refuses_bad_tokens_and_foreign_origins(admin: Admin) -> None:
    bad = await login(admin, "not-a-token")
    assert bad.status in (400, 401) and "set-cookie" not in bad.headers
    assert 'name=token' in bad.text  # the form again, with the reason
    empty = await login(admin, "")
    assert empty.status == 400 and "set-cookie" not in empty.headers
    crossed = await admin.call("POST", "/admin/login", {**FORM, "origin": "https://evil.example"},
                               urlencode({"token": admin.token("carol", "soc-lead")}).encode())
    assert crossed.status == 403 and "set-cookie" not in crossed.headers
    as_json = await admin.call("POST", "/admin/login", {"content-type": "application/json"},
                               b'{"token": "x"}')
    assert as_json.status == 415


async def test_spec_tool_05_page_shows_the_call_escaped_and_redacted(admin: Admin) -> None:
    opened = await admin.open({**ARGS, "host": "<script>alert(1)</script>\"'&"})
    cookie = await session(admin, "carol", "soc-lead")
    page = await admin.call("GET", f"/admin/approvals/{opened.id}", cookie)
    assert page.status == 200, page.text
    assert_locked_down(page)
    text = page.text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert ARGS["token"] not in text  # the secret argument is redacted
    for shown in ("edr__isolate_host", "isolate_host", "bob", "agent-1",
                  "isolation-needs-a-second-person", "pending", "requested", "UTC",
                  opened.arguments_sha256, "Approve", "Deny"):
        assert shown in text, shown
    listing = await admin.call("GET", "/admin/approvals", cookie)
    assert listing.status == 200 and opened.id in listing.text
    assert "<script>" not in listing.text
    # Bearer works as well as the cookie (curl, extensions).
    bearer = await admin.call("GET", f"/admin/approvals/{opened.id}",
                              admin.bearer("carol", "soc-lead"))
    assert bearer.status == 200 and opened.id in bearer.text


async def test_pages_need_a_session(admin: Admin) -> None:
    opened = await admin.open()
    away = await admin.call("GET", f"/admin/approvals/{opened.id}")
    assert away.status == 303
    assert away.headers["location"] == (f"/admin/login?next=%2Fadmin%2Fapprovals%2F"
                                        f"{opened.id}")
    forged = {"cookie": f"{COOKIE_NAME}=eyJzdWIiOiJjYXJvbCJ9.AAAA"}
    assert (await admin.call("GET", f"/admin/approvals/{opened.id}", forged)).status == 303
    refused = await decide(admin, opened.id, forged, csrf="x", decision="approve")
    assert refused.status == 401
    invalid_bearer = await admin.call("GET", "/admin/approvals",
                                      {"authorization": "Bearer nope.nope.nope"})
    assert invalid_bearer.status == 401 and "www-authenticate" in invalid_bearer.headers
    # Mallory may sign in but the request is not hers to see.
    mallory = await session(admin, "mallory", "analyst")
    hidden = await admin.call("GET", f"/admin/approvals/{opened.id}", mallory)
    assert hidden.status == 404 and ARGS["host"] not in hidden.text
    assert_locked_down(hidden)
    # Logging out clears the cookie.
    out = await admin.call("POST", "/admin/logout", mallory)
    assert out.status == 303 and 'Max-Age=0' in out.headers["set-cookie"]


async def test_spec_tool_06_decide_through_the_form(admin: Admin) -> None:
    opened = await admin.open()
    cookie = await session(admin, "carol", "soc-lead")
    page = await admin.call("GET", f"/admin/approvals/{opened.id}", cookie)
    token = csrf_of(page)
    done = await decide(admin, opened.id, cookie, csrf=token, decision="deny",
                        reason="<b>not now</b>")
    assert done.status == 303 and done.headers["location"] == f"/admin/approvals/{opened.id}"
    stored = await admin.service.get(opened.id)
    assert stored.status == "denied" and stored.reason == "<b>not now</b>"
    after = await admin.call("GET", f"/admin/approvals/{opened.id}", cookie)
    assert "&lt;b&gt;not now&lt;/b&gt;" in after.text and "<b>not now" not in after.text
    assert "/decision" not in after.text and "Approve" not in after.text  # no buttons now
    again = await decide(admin, opened.id, cookie, csrf=token, decision="approve")
    assert again.status == 409 and "already denied" in again.text


async def test_spec_sess_05_csrf_token_is_bound_to_approval_and_approver(admin: Admin
                                                                          ) -> None:
    first, second = await admin.open(), await admin.open()
    carol = await session(admin, "carol", "soc-lead")
    dave = await session(admin, "dave", "soc-lead")
    carol_first = csrf_of(await admin.call("GET", f"/admin/approvals/{first.id}", carol))
    dave_second = csrf_of(await admin.call("GET", f"/admin/approvals/{second.id}", dave))
    for headers, approval_id, token in (
            (carol, second.id, carol_first),   # another approval
            (carol, second.id, dave_second),   # another approver
            (carol, first.id, ""),             # none
            (carol, first.id, "A" * 43)):      # made up
        refused = await decide(admin, approval_id, headers, csrf=token, decision="approve")
        assert refused.status == 403, refused.text
    framed = await admin.call("GET", f"/admin/approvals/{first.id}",
                              {**carol, "origin": "https://evil.example"})
    assert framed.status == 403 and "Approve" not in framed.text
    crossed = await decide(admin, first.id, {**carol, "origin": "https://evil.example"},
                           csrf=carol_first, decision="approve")
    assert crossed.status == 403
    as_json = await admin.call("POST", f"/admin/approvals/{first.id}/decision",
                               {**carol, "content-type": "application/json"}, b"{}")
    assert as_json.status == 415
    odd = await decide(admin, first.id, carol, csrf=carol_first, decision="maybe")
    assert odd.status == 400
    assert {(await admin.service.get(i)).status for i in (first.id, second.id)} == {"pending"}
    mallory = await session(admin, "mallory", "analyst")
    # A valid token for her (she cannot load the page to get one) still meets the rule.
    same_key = AdminGuard(None, admin.csrf_key)  # type: ignore[arg-type]
    mallory_token = same_key.csrf_token(first.id, _principal("mallory"))
    not_approver = await decide(admin, first.id, mallory, csrf=mallory_token,
                                decision="approve")
    assert not_approver.status == 403 and "may not decide" in not_approver.text
    ok = await decide(admin, first.id, carol, csrf=carol_first, decision="approve")
    assert ok.status == 303 and (await admin.service.get(first.id)).status == "approved"


def _principal(subject: str) -> Principal:
    return Principal(subject=subject, issuer=DEV_ISSUER, method="dev", client_id="console")


def test_guard_refuses_short_keys_and_bent_cookies() -> None:
    with pytest.raises(ValueError, match="32"):
        AdminGuard(None, b"short")  # type: ignore[arg-type]
    guard = AdminGuard(None, b"k" * 32)  # type: ignore[arg-type]
    carol = Principal(subject="carol", issuer="bastion:dev", method="dev",
                      roles=frozenset({"soc-lead"}), expires_at=time.time() + 60)
    value, lifetime = guard.cookie_for(carol)
    assert 55 <= lifetime <= 60
    back = guard.from_cookie(value)
    assert back is not None and back.binding == carol.binding and back.roles == carol.roles
    body, mac = value.split(".")
    for bent in ("", "x", f"{body}.", f"{body}x.{mac}", f"{body}.{mac[:-2]}AA", f"{mac}.{body}",
                 "a.b.c", value + "=" * 4000):
        assert guard.from_cookie(bent) is None, bent
    assert guard.from_cookie(value, now=time.time() + 61) is None  # expired with the token
    other = AdminGuard(None, b"j" * 32)  # type: ignore[arg-type]
    assert other.from_cookie(value) is None
    forever = Principal(subject="carol", issuer="bastion:dev", method="dev")
    assert guard.cookie_for(forever)[1] == SESSION_TTL
    token = guard.csrf_token("apr_1", carol)
    assert guard.check_csrf(token, "apr_1", carol)
    assert guard.check_csrf(token, "apr_1", carol, now=time.time() + 3600)  # the next hour
    assert not guard.check_csrf(token, "apr_1", carol, now=time.time() + 7300)
    assert not guard.check_csrf(token, "apr_2", carol)
