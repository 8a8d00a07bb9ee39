"""`bastion approvals list|show|approve|deny` against the store a gateway uses, with a real
child process deciding while a waiter in this process waits (SPEC-TOOL-06)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bastion.commands import approvals
from bastion.config.approvals import ApprovalsConfig
from bastion.guard.approval import ApprovalRequest, ApprovalService, ApprovalStore
from tests.admin.conftest import BOB
from tests.approval.support import ARGS, ISOLATE, RULE

pytestmark = pytest.mark.timeout(20)
runner = CliRunner()
WIDE = {"COLUMNS": "250"}
_APP = ("import typer; from bastion.commands.approvals import register; "
        "app = typer.Typer(add_completion=False); app.callback()(lambda: None); "
        "register(app); app()")


def bastion_app() -> typer.Typer:
    """`bastion` with only `approvals` (a group, as the real app is)."""
    group = typer.Typer(add_completion=False, callback=lambda: None)
    approvals.register(group)
    return group


@pytest.fixture(name="app")
def app_fixture() -> typer.Typer:
    return bastion_app()


def write_config(tmp_path: Path, local_roles: str = "[]") -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text("server: {host: 127.0.0.1, port: 9100, path: /mcp}\n"
                    f"state_dir: state\nmcpServers: {{}}\nauth: {{local_roles: {local_roles}}}\n"
                    "approvals:\n  rules:\n"
                    "    - {name: isolation-needs-a-second-person, tools: [edr__isolate_host],"
                    " roles: [responder], approvers: {roles: [soc-lead]}, expiry: 10m}\n")
    return path


def service(tmp_path: Path) -> ApprovalService:
    return ApprovalService(ApprovalsConfig.model_validate({"rules": [RULE]}),
                           ApprovalStore.in_state_dir(tmp_path / "state"), poll_interval=0.05)


async def _open(approvals_service: ApprovalService) -> ApprovalRequest:
    return await approvals_service.open(BOB, ISOLATE, dict(ARGS), "v1",
                                        upstream_tool="isolate_host")


def opened(tmp_path: Path) -> ApprovalRequest:
    return asyncio.run(_open(service(tmp_path)))


def run(app: typer.Typer, *args: object):
    return runner.invoke(app, [str(arg) for arg in args], env=WIDE)


def test_list_show_deny(app: typer.Typer, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    empty = run(app, "approvals", "list", "--config", config)
    assert empty.exit_code == 0 and "No pending approvals" in empty.output
    request = opened(tmp_path)
    listed = run(app, "approvals", "list", "--config", config)
    assert listed.exit_code == 0, listed.output
    assert request.id in listed.output and "edr__isolate_host" in listed.output
    assert "bob (bastion:dev)" in listed.output and "pending" in listed.output
    shown = run(app, "approvals", "show", request.id, "--config", config)
    assert shown.exit_code == 0, shown.output
    assert "ws-042" in shown.output and ARGS["token"] not in shown.output  # redacted
    assert "requested" in shown.output and request.arguments_sha256 in shown.output
    denied = run(app, "approvals", "deny", request.id, "--reason", "not today",
                 "--as-roles", "soc-lead", "--config", config)
    assert denied.exit_code == 0, denied.output
    assert "denied" in denied.output
    stored = service(tmp_path).store.get(request.id)
    assert stored.status == "denied" and stored.reason == "not today"
    assert stored.decided_by is not None and stored.decided_by["iss"] == "bastion:local"
    everything = run(app, "approvals", "list", "--status", "all", "--config", config)
    assert request.id in everything.output and "denied" in everything.output


def test_refusals_are_one_red_line(app: typer.Typer, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    request = opened(tmp_path)
    # No roles: the local user is not an approver of this rule.
    refused = run(app, "approvals", "approve", request.id, "--config", config)
    assert refused.exit_code == 1 and "may not decide" in refused.output
    assert "Traceback" not in refused.output
    unknown = run(app, "approvals", "show", "apr_nothing", "--config", config)
    assert unknown.exit_code == 1 and "no approval 'apr_nothing'" in unknown.output
    assert run(app, "approvals", "approve", "apr_nothing", "--as-roles", "soc-lead",
               "--config", config).exit_code == 1
    too_long = run(app, "approvals", "deny", request.id, "--as-roles", "soc-lead",
                   "--reason", "x" * 1001, "--config", config)
    assert too_long.exit_code == 2 and "at most 1000" in too_long.output
    bad_status = run(app, "approvals", "list", "--status", "maybe", "--config", config)
    assert bad_status.exit_code == 2 and "--status" in bad_status.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("approvals: {rules: [{name: x}]}\n")
    assert run(app, "approvals", "list", "--config", broken).exit_code == 2
    assert service(tmp_path).store.get(request.id).status == "pending"


def test_local_roles_decide_and_twice_is_refused(app: typer.Typer, tmp_path: Path) -> None:
    config = write_config(tmp_path, "[soc-lead]")
    request = opened(tmp_path)
    approved = run(app, "approvals", "approve", request.id, "--config", config)
    assert approved.exit_code == 0 and "approved" in approved.output
    again = run(app, "approvals", "deny", request.id, "--config", config)
    assert again.exit_code == 1 and "already approved" in again.output


async def test_spec_tool_06_a_waiter_sees_the_cli_decision(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    approvals_service = service(tmp_path)
    request = await _open(approvals_service)
    waiting = asyncio.create_task(approvals_service.wait(request.id, 15))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _APP, "approvals", "approve", request.id, "--as-roles",
        "soc-lead", "--reason", "checked with the host owner", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(child.communicate(), 15)
    assert child.returncode == 0, err.decode()
    decided = await asyncio.wait_for(waiting, 5)
    assert decided.status == "approved" and decided.reason == "checked with the host owner"
    events = [event.step for event in await approvals_service.events(request.id)]
    assert events == ["requested", "approved"]
