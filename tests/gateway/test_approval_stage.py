"""The approval stage end to end: a running gateway (`auth: {mode: jwt}`, a real identity
provider), the demo SOC servers as stdio upstreams, and real clients (Bastion's in both eras,
the official SDK's). A responder's `edr__isolate_host` waits for a soc-lead; what the EDR
upstream reports as isolated shows whether the call ran.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx2
import orjson
import pytest
from mcp import Client as SdkClient
from mcp.client.streamable_http import streamable_http_client

from bastion.client import ClientHandlers, connect_http
from bastion.config import BastionConfig
from bastion.gateway.app import Gateway
from bastion.guard.approval import (
    ApprovalMismatch,
    ApprovalRequest,
    ApprovalService,
    ApprovalStore,
)
from bastion.guard.approval.stage import APPROVAL_DENIED, ApprovalsOff, ApprovalStage
from bastion.guard.pipeline import GuardError
from bastion.guard.policy.rules import Target
from bastion.protocol.errors import MCPError
from bastion.protocol.principal import Principal
from tests.gateway.conftest import EVERYTHING, LiveGateway, make_config
from tests.identity.conftest import RESOURCE, Idp

pytestmark = pytest.mark.timeout(60)

SOC = [sys.executable, "-m", "bastion.testing.soc"]
POLICY = {"rules": [
    {"name": "soc-reads", "effect": "allow", "roles": ["responder"], "classes": ["read-only"]},
    {"name": "responders-contain-hosts", "effect": "allow", "roles": ["responder"],
     "tools": ["edr__isolate_host", "edr__release_host"]},
]}
RULE = {"name": "isolation-needs-a-second-person", "tools": ["edr__isolate_host"],
        "roles": ["responder"], "approvers": {"roles": ["soc-lead"]}}
ARGS = {"host": "ws-017", "reason": "credential dumping"}


def config(idp: Idp, tmp_path, *, wait: int = 20, expiry: str | None = None,
           stages: list[str] | None = None, rules: list[dict[str, Any]] | None = None):
    rule = dict(RULE, expiry=expiry) if expiry else RULE
    fields: dict[str, Any] = {}
    if stages is not None:
        fields["guard"] = {"stages": stages}
    return make_config(
        {"edr": {"command": SOC[0], "args": [*SOC[1:], "edr"]}},
        auth={"mode": "jwt", "resource": RESOURCE, "allow_insecure_loopback": True,
              "issuers": [{"issuer": idp.issuer, "jwks_uri": idp.jwks_uri}]},
        policy=POLICY, state_dir=str(tmp_path),
        approvals={"wait": wait, "rules": [rule] if rules is None else rules}, **fields)


async def start(gateway_http, idp: Idp, tmp_path, **options: Any) -> LiveGateway:
    live = await gateway_http(config(idp, tmp_path, **options))
    stage = live.gateway.pipeline.stage("approval")
    assert isinstance(stage, ApprovalStage)
    stage.progress_interval = 0.2  # progress often, so a test sees several
    return live


@pytest.fixture
async def live(idp: Idp, tmp_path, gateway_http) -> LiveGateway:
    return await start(gateway_http, idp, tmp_path)


def lead(idp: Idp, subject: str = "carol") -> Principal:
    return Principal(subject=subject, issuer=idp.issuer, method="jwt",
                     roles=frozenset({"soc-lead"}))


def responder(idp: Idp) -> str:
    return idp.mint(sub="bob", roles=["responder"])


def service(live: LiveGateway) -> ApprovalService:
    assert live.gateway.approvals is not None
    return live.gateway.approvals


async def pending(approvals: ApprovalService, seen: set[str] | None = None) -> ApprovalRequest:
    """The first pending request not in `seen` (waits for the call to open it)."""
    for _ in range(200):
        for request in await approvals.list(status="pending"):
            if seen is None or request.id not in seen:
                return request
        await asyncio.sleep(0.05)
    raise AssertionError("no approval request was opened")


async def denied(live: LiveGateway, idp: Idp, arguments: dict[str, Any] = ARGS) -> MCPError:
    """The `ApprovalDenied` a waiting (legacy) client's call ends with."""
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("edr__isolate_host", arguments)
    assert refused.value.code == APPROVAL_DENIED
    return refused.value


async def isolated(live: LiveGateway, idp: Idp) -> set[str]:
    async with connect_http(live.url, bearer_token=responder(idp)) as client:
        result = await client.call_tool("edr__list_hosts", {})
    hosts = orjson.loads(result["content"][0]["text"])
    return {h["host"] for h in hosts if h["isolated"]}


# -- approved: the call runs, once, as approved ------------------------------------------------


async def test_SPEC_APPROVAL_01_sdk_client_waits_and_runs_once_approved(live, idp):
    approvals = service(live)

    async def approve() -> ApprovalRequest:
        request = await pending(approvals)
        return await approvals.approve(request.id, lead(idp), "confirmed with the owner")

    headers = {"Authorization": f"Bearer {responder(idp)}"}
    async with httpx2.AsyncClient(headers=headers) as http, SdkClient(
            streamable_http_client(live.url, http_client=http), mode="legacy") as client:
        approver = asyncio.create_task(approve())
        result = await client.call_tool("edr__isolate_host", ARGS)
        approved = await approver
    assert "ws-017" in result.content[0].text and not result.is_error
    done = await approvals.get(approved.id)
    assert done.status == "executed" and done.result_status == "ok"
    assert done.principal["sub"] == "bob" and done.arguments == ARGS
    assert done.decided_by["sub"] == "carol"
    assert await isolated(live, idp) == {"ws-017"}


async def test_SPEC_APPROVAL_02_waiting_call_reports_progress(live, idp):
    approvals = service(live)
    messages: list[tuple[float, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        messages.append((value, message))

    async def approve_after_progress() -> ApprovalRequest:
        request = await pending(approvals)
        while len(messages) < 2:
            await asyncio.sleep(0.05)
        return await approvals.approve(request.id, lead(idp))

    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        approver = asyncio.create_task(approve_after_progress())
        result = await client.call_tool("edr__isolate_host", ARGS, on_progress=progress)
        approved = await approver
    assert result.get("isError") is not True
    waiting = [m for m in messages if m[1] and "waiting for approval" in m[1]]
    assert len(waiting) >= 2 and all(approved.id in m[1] for m in waiting)
    values = [v for v, _ in waiting]
    assert values == sorted(set(values))  # increasing


async def test_SPEC_APPROVAL_03_decision_from_another_process_wakes_the_call(live, idp, tmp_path):
    # As the CLI would: its own service over the same file.
    other = ApprovalService(live.gateway.config.approvals,
                            ApprovalStore.in_state_dir(tmp_path))
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(other)
        await other.approve(request.id, lead(idp))
        result = await call
    assert result.get("isError") is not True
    assert (await other.get(request.id)).status == "executed"


# -- not approved: the call never runs -----------------------------------------------------------


async def test_SPEC_APPROVAL_04_denied_call_is_refused_naming_who_and_why(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(approvals)
        await approvals.deny(request.id, lead(idp), "that is the CEO's laptop")
        with pytest.raises(MCPError) as refused:
            await call
    assert refused.value.code == APPROVAL_DENIED
    assert request.id in refused.value.message
    assert "denied by carol: that is the CEO's laptop" in refused.value.message
    assert refused.value.data["status"] == "denied"
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_05_not_decided_in_time_is_withdrawn_and_denied(
        idp, tmp_path, gateway_http):
    live = await start(gateway_http, idp, tmp_path, wait=1)
    refused = await denied(live, idp)
    assert "not approved within 1 s" in refused.message
    approval_id = refused.data["approval"]
    assert (await service(live).get(approval_id)).status == "withdrawn"
    # A decision after the call gave up changes nothing.
    with pytest.raises(Exception, match="already withdrawn"):
        await service(live).approve(approval_id, lead(idp))
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_06_expired_request_is_denied(idp, tmp_path, gateway_http):
    live = await start(gateway_http, idp, tmp_path, wait=10, expiry="1s")
    refused = await denied(live, idp)
    assert "expired before anyone decided it" in refused.message
    assert refused.data["status"] == "expired"
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_07_an_approval_for_other_arguments_runs_nothing(
        idp, tmp_path, gateway_http):
    live = await start(gateway_http, idp, tmp_path, wait=1)
    approvals = service(live)
    bob = Principal(subject="bob", issuer=idp.issuer, method="jwt", client_id="agent-1",
                    roles=frozenset({"responder"}))
    entry = live.gateway.catalog.tool("edr__isolate_host")
    target = Target("tool", entry.key, entry.upstream, entry.definition)
    version = live.gateway.pipeline.stage("policy").engine.version
    # Approved for ws-017 ...
    other = await approvals.open(bob, target, {"host": "ws-017", "reason": "x"}, version)
    await approvals.approve(other.id, lead(idp))
    # ... the service refuses to spend it on srv-001 ...
    with pytest.raises(ApprovalMismatch, match="arguments"):
        await approvals.consume(other.id, bob, target, {"host": "srv-001", "reason": "x"},
                                version)
    # ... and a call for srv-001 waits for its own approval, which nobody gives.
    refused = await denied(live, idp, {"host": "srv-001", "reason": "x"})
    assert refused.data["approval"] != other.id
    assert (await approvals.get(other.id)).status == "approved"  # never spent
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_08_replay_after_execution_opens_a_new_request(
        idp, tmp_path, gateway_http):
    live = await start(gateway_http, idp, tmp_path, wait=1)
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        first = await pending(approvals)
        await approvals.approve(first.id, lead(idp))
        await call
        with pytest.raises(MCPError) as replayed:
            await client.call_tool("edr__isolate_host", ARGS)
    assert replayed.value.code == APPROVAL_DENIED
    assert replayed.value.data["approval"] != first.id
    assert (await approvals.get(first.id)).status == "executed"
    events = [e.step for e in await approvals.events(first.id)]
    assert events.count("executed") == 1


async def test_SPEC_APPROVAL_09_cancelled_call_withdraws_its_request(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(approvals)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(100):
            if (await approvals.get(request.id)).status != "pending":
                break
            await asyncio.sleep(0.05)
    assert (await approvals.get(request.id)).status == "withdrawn"
    assert await isolated(live, idp) == set()


# -- modern clients and legacy clients with URL elicitation: asked, then retried --------------


def page_of(approval_id: str) -> str:
    return f"https://gw.example.com/admin/approvals/{approval_id}"


def url_handlers(on_elicit: Any = None) -> ClientHandlers:
    """A client that declares URL elicitation (and accepts, unless `on_elicit` answers)."""
    async def accept(params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept"}

    return ClientHandlers(elicitation=on_elicit or accept, elicitation_modes=("form", "url"))


async def asked_for(client: Any) -> dict[str, Any]:
    """The URL elicitation a legacy client's call is answered with (-32042)."""
    with pytest.raises(MCPError) as asked:
        await client.call_tool("edr__isolate_host", ARGS)
    assert asked.value.code == -32042
    (elicitation,) = asked.value.data["elicitations"]
    assert elicitation["mode"] == "url"
    assert elicitation["url"] == page_of(elicitation["elicitationId"])
    return elicitation


async def test_SPEC_APPROVAL_11_modern_client_is_sent_to_the_approval_page(live, idp):
    approvals = service(live)
    asked: list[dict[str, Any]] = []

    async def follow_the_link(params: dict[str, Any]) -> dict[str, Any]:
        # The person opens the page; the first time nobody has decided yet (asked again),
        # the second time an approver has.
        asked.append(params)
        if len(asked) == 2:
            await approvals.approve(params["elicitationId"], lead(idp))
        return {"action": "accept"}

    async with connect_http(live.url, mode="modern", bearer_token=responder(idp),
                            handlers=url_handlers(follow_the_link)) as client:
        result = await client.call_tool("edr__isolate_host", ARGS)
    assert result.get("isError") is not True
    assert len(asked) == 2 and asked[0]["elicitationId"] == asked[1]["elicitationId"]
    approval_id = asked[0]["elicitationId"]
    assert asked[0]["mode"] == "url" and asked[0]["url"] == page_of(approval_id)
    assert approval_id in asked[0]["message"]
    assert (await approvals.get(approval_id)).status == "executed"
    assert len(await approvals.list()) == 1  # the retries opened nothing new
    assert await isolated(live, idp) == {"ws-017"}


@pytest.mark.parametrize("answer", ["deny", "decline"])
async def test_SPEC_APPROVAL_12_modern_client_denied_or_declining_is_refused(live, idp, answer):
    approvals = service(live)

    async def follow_the_link(params: dict[str, Any]) -> dict[str, Any]:
        if answer == "deny":
            await approvals.deny(params["elicitationId"], lead(idp), "not that host")
            return {"action": "accept"}
        return {"action": "decline"}

    async with connect_http(live.url, mode="modern", bearer_token=responder(idp),
                            handlers=url_handlers(follow_the_link)) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("edr__isolate_host", ARGS)
    assert refused.value.code == APPROVAL_DENIED
    status = (await approvals.get(refused.value.data["approval"])).status
    assert status == ("denied" if answer == "deny" else "withdrawn")
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_13_forged_or_moved_request_state_is_refused(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="modern", bearer_token=responder(idp),
                            handlers=url_handlers()) as client:
        first = await client.request("tools/call", {"name": "edr__isolate_host",
                                                    "arguments": ARGS})
        assert first["resultType"] == "input_required"
        (approval_id,) = first["inputRequests"]
        await approvals.approve(approval_id, lead(idp))
        for state, arguments in (("forged", ARGS), (first["requestState"],
                                                   {"host": "srv-001", "reason": "x"})):
            with pytest.raises(MCPError) as refused:
                await client.request("tools/call", {"name": "edr__isolate_host",
                                                    "arguments": arguments,
                                                    "requestState": state})
            assert refused.value.code == -32602
        # The approved state is spent once; replaying it is refused.
        done = await client.request("tools/call", {"name": "edr__isolate_host",
                                                   "arguments": ARGS,
                                                   "requestState": first["requestState"]})
        assert done.get("isError") is not True
        with pytest.raises(MCPError) as replayed:
            await client.request("tools/call", {"name": "edr__isolate_host", "arguments": ARGS,
                                                "requestState": first["requestState"]})
    assert replayed.value.code == APPROVAL_DENIED
    assert "already used" in replayed.value.message
    assert await isolated(live, idp) == {"ws-017"}


async def test_SPEC_APPROVAL_14_legacy_client_with_url_elicitation_gets_32042(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp),
                            handlers=url_handlers()) as client:
        # Still pending: asked again, for the same request.
        ids = [(await asked_for(client))["elicitationId"] for _ in range(2)]
        assert ids[0] == ids[1]
        await approvals.approve(ids[0], lead(idp))
        result = await client.call_tool("edr__isolate_host", ARGS)
        assert result.get("isError") is not True
        # Used: the same call again is a new request.
        assert (await asked_for(client))["elicitationId"] != ids[0]
    assert (await approvals.get(ids[0])).status == "executed"
    assert await isolated(live, idp) == {"ws-017"}


async def test_SPEC_APPROVAL_15_legacy_retry_after_a_denial_is_told_once(live, idp):
    approvals = service(live)
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp),
                            handlers=url_handlers()) as client:
        approval_id = (await asked_for(client))["elicitationId"]
        await approvals.deny(approval_id, lead(idp), "no")
        with pytest.raises(MCPError) as refused:
            await client.call_tool("edr__isolate_host", ARGS)
        assert refused.value.code == APPROVAL_DENIED and approval_id in refused.value.message
        assert (await asked_for(client))["elicitationId"] != approval_id
    assert await isolated(live, idp) == set()


async def test_SPEC_APPROVAL_16_upstream_rounds_after_the_approval_are_not_asked_again(
        idp, tmp_path, gateway_http):
    rule = {"name": "elicit", "tools": ["up__test_elicitation"], "roles": ["responder"],
            "approvers": {"roles": ["soc-lead"]}}
    settings = config(idp, tmp_path, rules=[rule]).model_dump(by_alias=True, mode="json")
    settings["mcpServers"]["up"] = {"command": EVERYTHING[0], "args": EVERYTHING[1:]}
    settings["policy"]["rules"].append({"name": "up", "effect": "allow",
                                        "upstreams": ["up"]})
    live = await gateway_http(BastionConfig.model_validate(settings))
    approvals = service(live)
    modes: list[str] = []

    async def answer(params: dict[str, Any]) -> dict[str, Any]:
        modes.append(params.get("mode", "form"))
        if params.get("mode") == "url":  # ours: the approval
            await approvals.approve(params["elicitationId"], lead(idp))
            return {"action": "accept"}
        return {"action": "accept", "content": {"username": "bob", "email": "b@example.com"}}

    async with connect_http(live.url, mode="modern", bearer_token=responder(idp),
                            handlers=url_handlers(answer)) as client:
        result = await client.call_tool("up__test_elicitation", {"message": "who?"})
    assert "bob" in result["content"][0]["text"]
    assert modes == ["url", "form"]
    (request,) = await approvals.list()
    assert request.status == "executed"


# -- bad input and configuration -----------------------------------------------------------------


async def test_SPEC_APPROVAL_10_arguments_too_large_to_hold_are_refused(live, idp):
    async with connect_http(live.url, bearer_token=responder(idp)) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("edr__isolate_host",
                                   {"host": "ws-017", "reason": "x" * 300_000})
    assert refused.value.code == -32602
    assert "more than the 262144" in refused.value.message
    assert await service(live).list() == []


async def test_calls_no_rule_names_do_not_wait(live, idp):
    async with connect_http(live.url, bearer_token=responder(idp)) as client:
        await client.call_tool("edr__release_host", {"host": "ws-017"})
    assert await service(live).list() == []


def test_rules_without_the_stage_refuse_to_start(idp, tmp_path):
    with pytest.raises(GuardError, match="does not list 'approval'"):
        Gateway(config(idp, tmp_path, stages=["header_body", "policy", "pin"]))


def test_the_approval_page_is_under_the_public_origin(idp, tmp_path):
    gateway = Gateway(config(idp, tmp_path))
    stage = gateway.pipeline.stage("approval")
    assert stage.page_url("apr_x") == "https://gw.example.com/admin/approvals/apr_x"
    gateway.set_public_origin("https://bastion.example:8443/")
    assert stage.page_url("apr_x/../y") == \
        "https://bastion.example:8443/admin/approvals/apr_x%2F..%2Fy"


def test_no_rules_no_stage_work(idp, tmp_path):
    gateway = Gateway(config(idp, tmp_path, rules=[]))
    assert isinstance(gateway.pipeline.stage("approval"), ApprovalsOff)
    assert gateway.approvals is None
    assert "approval" in gateway.config.guard.stages


# -- approvers act through the gateway's REST API and the CLI ------------------------------------


async def test_an_approver_approves_through_the_gateways_rest_api(live, idp):
    import httpx

    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(service(live))
        base = f"http://127.0.0.1:{live.port}/admin/api/approvals"
        async with httpx.AsyncClient() as http:
            as_requester = {"authorization": f"Bearer {responder(idp)}"}
            refused = await http.post(f"{base}/{request.id}/approve", json={},
                                      headers=as_requester)
            assert refused.status_code == 403  # not an approver (and never the requester)
            as_lead = {"authorization": f"Bearer {idp.mint(sub='carol', roles=['soc-lead'])}"}
            listed = (await http.get(base, headers=as_lead)).json()["approvals"]
            assert [a["id"] for a in listed] == [request.id]
            done = await http.post(f"{base}/{request.id}/approve", json={"reason": "ok"},
                                   headers=as_lead)
            assert done.status_code == 200, done.text
            again = await http.post(f"{base}/{request.id}/deny", json={}, headers=as_lead)
            assert again.status_code == 409
        result = await call
    assert result.get("isError") is not True
    assert (await service(live).get(request.id)).status == "executed"


async def test_an_operator_denies_with_the_cli(live, idp, tmp_path):
    from typer.testing import CliRunner

    from bastion.cli import app

    config_file = tmp_path / "bastion.yaml"
    config_file.write_text(orjson.dumps(live.gateway.config.model_dump(
        mode="json", by_alias=True, exclude_none=True)).decode())
    async with connect_http(live.url, mode="legacy", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(service(live))
        runner = CliRunner()
        shown = await asyncio.to_thread(runner.invoke, app, [
            "approvals", "list", "--config", str(config_file)], env={"COLUMNS": "250"})
        assert shown.exit_code == 0 and request.id in shown.output
        decided = await asyncio.to_thread(runner.invoke, app, [
            "approvals", "deny", request.id, "--reason", "not this host", "--config",
            str(config_file), "--as-roles", "soc-lead"])
        assert decided.exit_code == 0, decided.output
        with pytest.raises(MCPError) as refused:
            await call
    assert refused.value.code == APPROVAL_DENIED and "not this host" in refused.value.message


async def test_a_modern_client_without_url_elicitation_waits_in_the_call(live, idp):
    """Only a client that declared URL elicitation is sent to the page (it could not answer
    otherwise): any other modern client waits, like a legacy one."""
    approvals = service(live)
    async with connect_http(live.url, mode="modern", bearer_token=responder(idp)) as client:
        call = asyncio.create_task(client.call_tool("edr__isolate_host", ARGS))
        request = await pending(approvals)
        await approvals.approve(request.id, lead(idp))
        result = await call
    assert result.get("isError") is not True and result.get("resultType") == "complete"
