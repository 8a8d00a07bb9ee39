"""The approvals REST API over a real socket: who may see and decide, the errors, CSRF and
bad input (SPEC-TOOL-05, SPEC-TOOL-06, SPEC-LOCAL-01, SPEC-TP-04)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.admin.conftest import Admin
from tests.approval.support import ARGS

pytestmark = pytest.mark.timeout(20)
API = "/admin/api/approvals"


async def test_spec_tool_06_list_show_approve(admin: Admin) -> None:
    opened = await admin.open()
    carol = admin.bearer("carol", "soc-lead")
    listed = await admin.call("GET", f"{API}?status=pending&limit=50", carol)
    assert listed.status == 200 and listed.headers["cache-control"] == "no-store"
    (item,) = listed.json()["approvals"]
    assert item["id"] == opened.id and item["tool"] == "edr__isolate_host"
    assert item["who"]["sub"] == "bob" and item["arguments"]["host"] == "ws-042"
    assert ARGS["token"] not in listed.text  # SPEC-TOOL-05: approvers see secrets redacted

    shown = await admin.call("GET", f"{API}/{opened.id}", carol)
    assert shown.status == 200
    assert [event["step"] for event in shown.json()["events"]] == ["requested"]
    assert ARGS["token"] not in shown.text and "arguments_shown" not in shown.text

    decided = await admin.post_json(f"{API}/{opened.id}/approve", {"reason": "confirmed"},
                                    carol)
    assert decided.status == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["reason"] == "confirmed"
    stored = await admin.service.get(opened.id)
    assert stored.status == "approved" and stored.decided_by is not None
    assert stored.decided_by["sub"] == "carol"
    # Decided ones leave the default (pending) listing but stay in `all`.
    assert (await admin.call("GET", API, carol)).json()["approvals"] == []
    everything = await admin.call("GET", f"{API}?status=all", carol)
    assert [a["id"] for a in everything.json()["approvals"]] == [opened.id]


async def test_spec_tool_06_deny_wakes_the_waiter(admin: Admin) -> None:
    opened = await admin.open()
    waiting = asyncio.create_task(admin.service.wait(opened.id, 10))
    await asyncio.sleep(0.05)
    denied = await admin.post_json(f"{API}/{opened.id}/deny", {}, admin.bearer("carol",
                                                                               "soc-lead"))
    assert denied.status == 200 and denied.json()["status"] == "denied"
    assert (await asyncio.wait_for(waiting, 5)).status == "denied"


async def test_spec_tp_04_401_without_a_valid_bearer(admin: Admin) -> None:
    opened = await admin.open()
    missing = await admin.call("GET", API)
    assert missing.status == 401 and missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer ")
    assert "resource_metadata=" in missing.headers["www-authenticate"]
    in_url = await admin.call("GET", f"{API}?access_token={admin.token('carol', 'soc-lead')}")
    assert in_url.status == 401 and in_url.json()["error"] == "invalid_request"
    forged = await admin.post_json(f"{API}/{opened.id}/approve", {},
                                   {"authorization": "Bearer not.a.token"})
    assert forged.status == 401 and forged.json()["error"] == "invalid_token"
    token = admin.token("carol", "soc-lead")
    two_tokens = await admin.call("GET", API, {"authorization": f"Bearer {token} {token}"})
    assert two_tokens.status == 400 and two_tokens.json()["error"] == "invalid_request"
    assert (await admin.service.get(opened.id)).status == "pending"


async def test_spec_tool_06_403_for_non_approvers_and_self_approval(admin: Admin) -> None:
    opened = await admin.open()
    mallory = admin.bearer("mallory", "analyst")
    refused = await admin.post_json(f"{API}/{opened.id}/approve", {}, mallory)
    assert refused.status == 403 and refused.json()["error"] == "not_an_approver"
    assert (await admin.post_json(f"{API}/{opened.id}/deny", {}, mallory)).status == 403
    # Neither an approver nor the requester: the details are not hers to read.
    assert (await admin.call("GET", f"{API}/{opened.id}", mallory)).status == 404
    assert (await admin.call("GET", API, mallory)).json()["approvals"] == []
    # The requester holds the approver role too, and still may not approve his own call.
    bob = admin.bearer("bob", "responder", "soc-lead")
    assert (await admin.call("GET", f"{API}/{opened.id}", bob)).status == 200
    self_approval = await admin.post_json(f"{API}/{opened.id}/approve", {}, bob)
    assert self_approval.status == 403 and self_approval.json()["error"] == "self_approval"
    assert (await admin.service.get(opened.id)).status == "pending"
    # He may take his own call away, though.
    withdrawn = await admin.post_json(f"{API}/{opened.id}/deny", {"reason": "oops"}, bob)
    assert withdrawn.status == 200 and withdrawn.json()["status"] == "denied"
    # A refused caller does not learn how it ended: still 403, not 409.
    late = await admin.post_json(f"{API}/{opened.id}/approve", {}, mallory)
    assert late.status == 403


async def test_409_twice_and_404_unknown(admin: Admin) -> None:
    opened = await admin.open()
    carol = admin.bearer("carol", "soc-lead")
    assert (await admin.post_json(f"{API}/{opened.id}/approve", {}, carol)).status == 200
    again = await admin.post_json(f"{API}/{opened.id}/deny", {}, carol)
    assert again.status == 409 and again.json()["error"] == "not_pending"
    assert "already approved" in again.json()["message"]
    unknown = await admin.call("GET", f"{API}/apr_nosuchthing", carol)
    assert unknown.status == 404 and unknown.json()["error"] == "not_found"
    assert (await admin.post_json(f"{API}/apr_nosuchthing/approve", {}, carol)).status == 404


async def test_spec_local_01_csrf_origin_and_content_type(admin: Admin) -> None:
    opened = await admin.open()
    carol = admin.bearer("carol", "soc-lead")
    path = f"{API}/{opened.id}/approve"
    for origin in ("https://attacker.example", "null", "http://127.0.0.1:1"):
        crossed = await admin.post_json(path, {}, {**carol, "origin": origin})
        assert crossed.status == 403 and crossed.json()["error"] == "cross_origin", origin
    # GETs too: a script on another site learns nothing, even with a token in hand.
    listed = await admin.call("GET", API, {**carol, "origin": "https://attacker.example"})
    assert listed.status == 403 and opened.id not in listed.text
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        typed = await admin.call("POST", path, {**carol, "content-type": media}, b"{}")
        assert typed.status == 415, media
    # A session cookie is not a credential here: no bearer, no decision.
    cookie = await admin.call("POST", path, {"content-type": "application/json",
                                             "cookie": "__Host-bastion-admin=x.y"}, b"{}")
    assert cookie.status == 401
    assert (await admin.service.get(opened.id)).status == "pending"
    # The gateway's own origins pass: the request's and the resource's.
    for origin in (admin.base, "https://gw.example.com"):
        other = await admin.open()
        own = await admin.post_json(f"{API}/{other.id}/deny", {}, {**carol, "origin": origin})
        assert own.status == 200, own.text


async def test_bad_bodies_and_queries_are_400(admin: Admin) -> None:
    opened = await admin.open()
    carol = admin.bearer("carol", "soc-lead")
    path = f"{API}/{opened.id}/approve"
    json_headers = {**carol, "content-type": "application/json"}
    for body in (b"{not json", b"[]", b'{"reason": 5}', b'{"reason": "x", "also": 1}',
                 orjson.dumps({"reason": "x" * 1001})):
        bad = await admin.call("POST", path, json_headers, body)
        assert bad.status == 400, (body[:20], bad.text)
    huge = await admin.call("POST", path, json_headers,
                            orjson.dumps({"reason": "x" * (17 * 1024)}))
    assert huge.status == 413
    for query in ("status=nope", "limit=0", "limit=abc", "limit=5000"):
        assert (await admin.call("GET", f"{API}?{query}", carol)).status == 400, query
    assert (await admin.service.get(opened.id)).status == "pending"
    # An empty body is no reason at all.
    assert (await admin.call("POST", path, json_headers, b"")).status == 200
