"""The webhook when an approval opens: JSON and Slack payloads, the HMAC signature, and
failures that never reach the call; against a real local HTTP server (SPEC-TOOL-06)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.guard.approval import SIGNATURE_HEADER
from tests.approval.support import ARGS, BOB, ISOLATE, service
from tests.live_server import start_uvicorn, stop_uvicorn

SECRET = "hook-secret-0123456789"


class Receiver:
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.status = 200

    async def hook(self, request: Request) -> Response:
        self.received.put_nowait((dict(request.headers), await request.body()))
        return Response(status_code=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    state = Receiver()
    app = Starlette(routes=[Route("/hook", state.hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task, port = await start_uvicorn(server)
    yield state, port
    await stop_uvicorn(server, task)


def hooked(tmp_path: Path, port: int, **webhook: Any) -> Any:
    return service(tmp_path, fields={
        "link": "https://bastion.example/approvals/{id}",
        "webhook": {"url": f"http://127.0.0.1:{port}/hook", "timeout": 2, **webhook}})


async def test_json_payload_signed(tmp_path: Path, receiver: tuple[Receiver, int]) -> None:
    state, port = receiver
    approvals = hooked(tmp_path, port, secret=SECRET)
    opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
    headers, body = await asyncio.wait_for(state.received.get(), 5)
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], expected)
    payload = orjson.loads(body)
    assert payload["event"] == "approval.requested"
    approval = payload["approval"]
    assert approval["id"] == opened.id and approval["tool"] == "edr__isolate_host"
    assert approval["who"]["sub"] == "bob" and approval["agent"] == "agent-1"
    assert approval["url"] == f"https://bastion.example/approvals/{opened.id}"
    assert approval["arguments"]["host"] == "ws-042"
    assert ARGS["token"] not in body.decode()  # redacted
    assert approval["expires_at"].endswith("Z")
    await approvals.aclose()


async def test_slack_payload_unsigned_and_escaped(tmp_path: Path,
                                                  receiver: tuple[Receiver, int]) -> None:
    state, port = receiver
    approvals = hooked(tmp_path, port, format="slack")
    sneaky = {**ARGS, "reason": "<https://attacker.example|Approve> <!channel> ```"}
    opened = await approvals.open(BOB, ISOLATE, sneaky, "v1")
    headers, body = await asyncio.wait_for(state.received.get(), 5)
    assert SIGNATURE_HEADER.lower() not in headers
    payload = orjson.loads(body)
    assert set(payload) == {"text", "blocks"}
    assert f"https://bastion.example/approvals/{opened.id}" in payload["text"]
    button = payload["blocks"][-1]["elements"][0]
    assert button["url"] == f"https://bastion.example/approvals/{opened.id}"
    shown = orjson.dumps(payload["blocks"][:-1]).decode()
    assert "<https://attacker.example" not in shown and "<!channel>" not in shown
    assert "&lt;!channel&gt;" in shown
    await approvals.aclose()


async def test_failures_are_logged_without_secrets_and_never_raised(
        tmp_path: Path, receiver: tuple[Receiver, int], caplog: pytest.LogCaptureFixture) -> None:
    state, port = receiver
    state.status = 500
    approvals = hooked(tmp_path, port, secret=SECRET)
    with caplog.at_level(logging.WARNING, logger="bastion.approval"):
        opened = await approvals.open(BOB, ISOLATE, ARGS, "v1")
        await approvals.aclose()
    assert opened.status == "pending"
    assert "answered 500" in caplog.text and SECRET not in caplog.text
    assert "/hook" not in caplog.text  # the URL's path may be a credential


async def test_unreachable_receiver_does_not_delay_the_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    approvals = hooked(tmp_path, port)
    with caplog.at_level(logging.WARNING, logger="bastion.approval"):
        opened = await asyncio.wait_for(approvals.open(BOB, ISOLATE, ARGS, "v1"), 1)
        await approvals.aclose()
    assert opened.status == "pending"
    assert "failed" in caplog.text
