"""Telling approvers that a request is waiting: a JSON (or Slack-shaped) POST.

`json`: `{"event": "approval.requested", "approval": {id, rule, who, agent, tool, upstream,
arguments (redacted), expires_at, url}}`. `slack`: a Slack incoming-webhook message (`text`
and `blocks`) with the same facts and the approval link; everything taken from the call is
escaped, so an argument cannot make a link or a mention. With a `secret`, the header
`X-Bastion-Signature: sha256=<hex HMAC-SHA256 of the body>` lets the receiver check the sender.

Sending never raises and never blocks the call: the service runs it in the background, with a
bounded total time; failures are logged with the receiver's host only (a Slack webhook URL is
itself a credential). `SignedPoster` is that delivery on its own, shared with the anomaly
alerts (`bastion.telemetry.alerts`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from bastion.config.approvals import WebhookConfig
from bastion.guard.approval.request import ApprovalRequest
from bastion.transport.http.h1client import HTTPClient, HTTPClientError

logger = logging.getLogger("bastion.approval.webhook")
EVENT = "approval.requested"
SIGNATURE_HEADER = "X-Bastion-Signature"
#: Longest argument text shown in a Slack message (a section holds at most 3000).
_MAX_SLACK_ARGUMENTS = 2000
_MAX_RESPONSE = 64 * 1024


def approval_link(link: str | None, approval_id: str) -> str | None:
    """Where approvers act on `approval_id`, from the configured `link` template."""
    return link.replace("{id}", approval_id) if link else None


def json_payload(request: ApprovalRequest, link: str | None) -> dict[str, Any]:
    return {"event": EVENT, "approval": {
        "id": request.id, "rule": request.rule, "who": request.principal,
        "agent": request.agent, "tool": request.tool, "upstream": request.upstream,
        "arguments": request.arguments_shown, "expires_at": iso_utc(request.expires_at),
        "url": approval_link(link, request.id)}}


def slack_payload(request: ApprovalRequest, link: str | None) -> dict[str, Any]:
    who = slack_escape(str(request.principal.get("sub", "?")))
    tool = slack_escape(request.tool)
    arguments = orjson.dumps(request.arguments_shown, option=orjson.OPT_INDENT_2).decode()
    if len(arguments) > _MAX_SLACK_ARGUMENTS:
        arguments = arguments[:_MAX_SLACK_ARGUMENTS] + "\n…"
    # A backquote would end the code block the arguments are shown in.
    arguments = slack_escape(arguments.replace("`", "'"))
    url = approval_link(link, request.id)
    text = f"Approval needed: {who} wants to run {tool} (rule {slack_escape(request.rule)})"
    fields = [f"*Who:* {who}", f"*Agent:* {slack_escape(request.agent or '-')}",
              f"*Tool:* {tool}", f"*Upstream:* {slack_escape(request.upstream)}",
              f"*Expires:* {iso_utc(request.expires_at)}", f"*Id:* {request.id}"]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f"```{arguments}```"}},
    ]
    if url is not None:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Review"}, "url": url}]})
        text += f" <{url}|review>"
    return {"text": text, "blocks": blocks}


def sign(secret: str, body: bytes) -> str:
    """The `X-Bastion-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class SignedPoster:
    """POSTs JSON bodies to one configured receiver: signed when a secret is set, bounded by
    the configured timeout, and never raising (failures are logged with the host only)."""

    def __init__(self, config: WebhookConfig, *, label: str, logger: logging.Logger,
                 http: HTTPClient | None = None) -> None:
        self.config = config
        self.label = label
        self.logger = logger
        self._own_http = http is None
        self._http = http if http is not None else HTTPClient(
            connect_timeout=config.timeout, limit=4)
        self._host = urlsplit(config.url).hostname

    async def post(self, body: bytes, about: str) -> bool:
        """POST `body`; True when the receiver answered 2xx. `about` names what was sent,
        for the log (never a secret). Never raises."""
        headers = {"Content-Type": "application/json", "User-Agent": f"bastion-{self.label}s"}
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.config.secret.get_secret_value(), body)
        try:
            async with await self._http.request(
                    "POST", self.config.url, headers, body, read_timeout=self.config.timeout,
                    total_timeout=self.config.timeout) as response:
                await response.read(_MAX_RESPONSE)
                status = response.status
        except (HTTPClientError, OSError, ValueError) as exc:
            self.logger.warning("%s webhook to %s failed for %s: %s", self.label, self._host,
                                about, type(exc).__name__)
            return False
        if not 200 <= status < 300:
            self.logger.warning("%s webhook to %s answered %s for %s", self.label, self._host,
                                status, about)
            return False
        return True

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()


class Webhook:
    """POSTs approval notices to one configured receiver."""

    def __init__(self, config: WebhookConfig, *, link: str | None = None,
                 http: HTTPClient | None = None) -> None:
        self.config = config
        self.link = link
        self._poster = SignedPoster(config, label="approval", logger=logger, http=http)

    def body(self, request: ApprovalRequest) -> bytes:
        payload = (slack_payload if self.config.format == "slack" else json_payload)(
            request, self.link)
        return orjson.dumps(payload)

    async def send(self, request: ApprovalRequest) -> bool:
        """POST the notice; True when the receiver answered 2xx. Never raises."""
        return await self._poster.post(self.body(request), f"approval {request.id}")

    async def aclose(self) -> None:
        await self._poster.aclose()


def slack_escape(text: str) -> str:
    """`text` safe inside a Slack mrkdwn message."""
    # Slack's mrkdwn control characters: an argument cannot make a link or a mention.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def iso_utc(epoch: float) -> str:
    """`epoch` as an ISO 8601 UTC time ending in Z."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
