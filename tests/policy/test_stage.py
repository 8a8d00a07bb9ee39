"""The policy stage in a real `Pipeline` over a real `Catalog`: calls, lists, hidden targets,
`PolicyDenied`, the audit note, and the zero-cost stage when there is nothing to enforce."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bastion.config.policy import PolicyConfig
from bastion.gateway.catalog import Catalog
from bastion.guard.pipeline import Call, Pipeline
from bastion.guard.policy import (
    POLICY_DENIED,
    Decision,
    PolicyDenied,
    PolicyOff,
    PolicyStage,
    policy_stage,
)
from bastion.protocol.errors import InternalError, InvalidParams, MCPError, ResourceNotFound
from bastion.protocol.principal import Principal
from bastion.protocol.versions import LATEST_LEGACY, LATEST_MODERN, Era
from bastion.session.server_side import ServerRequest

from .support import ALICE, BOB, MALLORY, policy

RULES = [
    {"name": "ro", "effect": "allow", "roles": ["analyst"], "classes": ["read-only"]},
    {"name": "responders", "effect": "allow", "roles": ["responder"], "upstreams": ["edr"]},
    {"name": "no-prod-hosts", "effect": "deny", "tools": ["edr__isolate_host"],
     "args": {"host": {"pattern": "^prod-"}}},
    {"name": "no-secrets", "effect": "deny", "resources": ["file:///secret*"]},
]


def catalog() -> Catalog:
    found = Catalog(["siem", "edr", "files"])
    found.update("siem", "siem__", tools=[
        {"name": "search", "inputSchema": {"type": "object"},
         "annotations": {"readOnlyHint": True}},
        {"name": "delete_records", "inputSchema": {"type": "object"},
         "annotations": {"readOnlyHint": True}},  # lies: verify mode sees "delete"
    ], prompts=[{"name": "triage"}])
    found.update("edr", "edr__", tools=[
        {"name": "isolate_host", "inputSchema": {"type": "object"},
         "annotations": {"destructiveHint": True}}])
    found.update("files", "files__", resources=[
        {"uri": "file:///report.txt", "name": "report"},
        {"uri": "file:///secret.key", "name": "key"}],
        templates=[{"uriTemplate": "file:///logs/{day}", "name": "logs"}])
    return found


def context(rules: list[dict[str, Any]] | None = RULES, auth_mode: str = "jwt",
            **fields: Any) -> SimpleNamespace:
    section = None if rules is None else policy(rules, **fields)
    return SimpleNamespace(config=SimpleNamespace(policy=section,
                                                  auth=SimpleNamespace(mode=auth_mode)),
                           catalog=catalog())


def call(ctx: SimpleNamespace, method: str, params: dict[str, Any], principal: Principal | None,
         era: Era = Era.MODERN) -> Call:
    request = ServerRequest(era, LATEST_MODERN if era is Era.MODERN else LATEST_LEGACY, method,
                            params, {}, None, None, None)  # type: ignore[arg-type]
    target = None
    if method in ("tools/call", "prompts/get"):
        target = getattr(ctx.catalog, method.split("s/")[0])(params["name"])
    elif method == "resources/read":
        target = ctx.catalog.resource(params["uri"])
    return Call(request, principal=principal, target=target)


async def check(ctx: SimpleNamespace, method: str, params: dict[str, Any],
                principal: Principal | None, era: Era = Era.MODERN) -> Call:
    checked = call(ctx, method, params, principal, era)
    await Pipeline([policy_stage(ctx)]).check_request(checked)
    return checked


async def test_allowed_call_leaves_its_decision_for_the_audit() -> None:
    ctx = context()
    checked = await check(ctx, "tools/call", {"name": "siem__search", "arguments": {}}, ALICE)
    decision = checked.notes["policy"]
    assert isinstance(decision, Decision) and decision.allowed and decision.rule == "ro"


async def test_hidden_tool_is_answered_as_unknown() -> None:
    ctx = context()
    with pytest.raises(InvalidParams) as caught:
        await check(ctx, "tools/call", {"name": "siem__delete_records"}, ALICE)
    assert caught.value.to_error() == {
        "code": -32602, "message": "unknown tool 'siem__delete_records'",
        "data": {"name": "siem__delete_records"}}


async def test_policy_denied_names_rule_and_reason() -> None:
    ctx = context()
    params = {"name": "edr__isolate_host", "arguments": {"host": "prod-db-1"}}
    with pytest.raises(PolicyDenied) as caught:
        await check(ctx, "tools/call", params, BOB)
    error = caught.value
    assert error.code == POLICY_DENIED == -32003
    assert error.message.startswith("tools/call of 'edr__isolate_host' denied by rule "
                                    "'no-prod-hosts': its constraints on 'host' hold")
    assert error.data == {"rule": "no-prod-hosts", "reason": error.decision.reason,
                          "target": "edr__isolate_host"}
    assert "siem__" not in str(error.to_error())  # no other tool is revealed
    assert "prod-db-1" not in str(error.to_error())  # nor the argument's value


async def test_refusal_for_failed_allow_conditions_names_the_allow_rule() -> None:
    rules = [{"name": "data-only", "effect": "allow", "tools": ["siem__search"],
              "args": {"index": {"enum": ["alerts"]}}}]
    with pytest.raises(PolicyDenied, match=r"denied by rule 'data-only': argument 'index' "
                                           r"fails its 'enum' constraint"):
        await check(context(rules), "tools/call",
                    {"name": "siem__search", "arguments": {"index": "hr"}}, MALLORY)


async def test_lists_hide_what_calls_refuse() -> None:
    ctx = context()
    stage = policy_stage(ctx)
    pipeline = Pipeline([stage])
    listed = call(ctx, "tools/list", {}, ALICE)
    tools = pipeline.filter_list(listed, "tools", ctx.catalog.tools())
    assert [t["name"] for t in tools] == ["siem__search"]
    assert [p["name"] for p in pipeline.filter_list(listed, "prompts", ctx.catalog.prompts())] \
        == ["siem__triage"]
    assert [r["uri"] for r in pipeline.filter_list(listed, "resources", ctx.catalog.resources())
            ] == ["file:///report.txt"]
    templates = pipeline.filter_list(listed, "resourceTemplates", ctx.catalog.templates())
    assert [t["uriTemplate"] for t in templates] == ["file:///logs/{day}"]
    for item in ctx.catalog.tools():
        allowed = True
        try:
            await check(ctx, "tools/call", {"name": item["name"], "arguments": {}}, ALICE)
        except MCPError:
            allowed = False
        assert allowed is (item in tools), item["name"]


async def test_hidden_resource_reads_as_not_found_in_both_eras() -> None:
    ctx = context()
    with pytest.raises(InvalidParams, match=r"resource 'file:///secret\.key' not found") as modern:
        await check(ctx, "resources/read", {"uri": "file:///secret.key"}, ALICE)
    assert modern.value.data == {"uri": "file:///secret.key"}
    with pytest.raises(ResourceNotFound):
        await check(ctx, "resources/read", {"uri": "file:///secret.key"}, ALICE, Era.LEGACY)
    checked = await check(ctx, "resources/read", {"uri": "file:///logs/monday"}, ALICE)
    assert checked.notes["policy"].target.template == "file:///logs/{day}"


async def test_completion_and_subscriptions_need_a_visible_target() -> None:
    ctx = context()
    hidden = call(ctx, "completion/complete",
                  {"ref": {"type": "ref/prompt", "name": "siem__triage"}}, MALLORY)
    hidden.target = ctx.catalog.prompt("siem__triage")
    with pytest.raises(InvalidParams, match="unknown prompt 'siem__triage'"):
        await Pipeline([policy_stage(ctx)]).check_request(hidden)
    hidden.principal = ALICE
    await Pipeline([policy_stage(ctx)]).check_request(hidden)
    with pytest.raises(ResourceNotFound, match=r"file:///secret\.key"):
        await check(ctx, "resources/subscribe", {"uri": "file:///secret.key"}, ALICE)
    await check(ctx, "resources/subscribe", {"uri": "file:///report.txt"}, ALICE)
    with pytest.raises(ResourceNotFound, match=r"file:///secret\.key"):
        await check(ctx, "subscriptions/listen", {"notifications": {
            "resourceSubscriptions": ["file:///report.txt", "file:///secret.key"]}}, ALICE)


async def test_anonymous_caller_with_auth_on_sees_nothing() -> None:
    ctx = context(rules=None)  # no policy section, but authentication is on: deny
    with pytest.raises(InvalidParams, match="unknown tool"):
        await check(ctx, "tools/call", {"name": "siem__search"}, None)
    listed = call(ctx, "tools/list", {}, None)
    assert Pipeline([policy_stage(ctx)]).filter_list(listed, "tools", ctx.catalog.tools()) == []


async def test_without_policy_or_auth_the_stage_costs_nothing() -> None:
    stage = policy_stage(context(rules=None, auth_mode="none"))
    assert isinstance(stage, PolicyOff) and stage.name == "policy"
    pipeline = Pipeline([stage])
    assert not pipeline.filters_lists and not pipeline.checks_headers
    assert pipeline._requests == () and pipeline._results == ()
    # Rules, or a deny default, switch it on.
    assert isinstance(policy_stage(context(auth_mode="none")), PolicyStage)
    assert isinstance(policy_stage(SimpleNamespace(config=SimpleNamespace(
        policy=PolicyConfig(default="deny")), catalog=catalog())), PolicyStage)
    # A context with no configuration at all (a bare stand-in) gets the no-op stage.
    assert isinstance(policy_stage(SimpleNamespace()), PolicyOff)


async def test_other_methods_pass_untouched() -> None:
    ctx = context()
    for method in ("tools/list", "ping", "tasks/get", "logging/setLevel"):
        checked = await check(ctx, method, {}, MALLORY)
        assert "policy" not in checked.notes


async def test_a_call_without_its_target_is_refused() -> None:
    ctx = context()
    orphan = call(ctx, "tools/call", {"name": "siem__search"}, ALICE)
    orphan.target = None
    with pytest.raises(InternalError, match="without its target"):
        await Pipeline([policy_stage(ctx)]).check_request(orphan)


async def test_lists_without_a_catalogue_show_nothing() -> None:
    stage = PolicyStage(policy_stage(context()).engine)  # type: ignore[attr-defined]
    listed = call(context(), "tools/list", {}, ALICE)
    assert stage.filter_list(listed, "tools", [{"name": "siem__search"}]) == []


async def test_unplaceable_list_items_are_left_out() -> None:
    ctx = context(default="allow")
    listed = call(ctx, "tools/list", {}, ALICE)
    stranger = {"name": "ghost__tool", "inputSchema": {"type": "object"}}
    kept = Pipeline([policy_stage(ctx)]).filter_list(listed, "tools",
                                                     [*ctx.catalog.tools(), stranger])
    assert stranger not in kept and kept
