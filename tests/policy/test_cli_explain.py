"""`bastion policy explain`: the decision for one call from a configuration file alone.
Exit 0 allowed, 1 denied, 2 bad options or configuration."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from bastion.commands.policy import register
from bastion.config import BastionConfig

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
wired = pytest.mark.skipif(
    "policy" not in BastionConfig.model_fields,
    reason="BastionConfig has no `policy` field yet (the lead adds policy: PolicyConfig | None)")

CONFIG = """\
mcpServers:
  siem: {command: siem-server}
  edr: {command: edr-server, prefix: "hosts."}
policy:
  default: deny
  rules:
    - {name: ro, effect: allow, roles: [analyst], classes: [read-only]}
    - name: no-prod-hosts
      effect: deny
      tools: ["hosts.*"]
      args: {host: {pattern: "^prod-"}}
    - name: responders
      effect: allow
      roles: [responder]
      upstreams: [edr]
      hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", tz: Europe/Berlin}
"""


def app() -> typer.Typer:
    main = typer.Typer()

    @main.callback()
    def _root() -> None:
        """The main app stand-in: a group, so `policy` is a subcommand as under `bastion`."""

    register(main)
    return main


def explain(tmp_path, *options: str, config: str = CONFIG):
    path = tmp_path / "bastion.yaml"
    path.write_text(config)
    return runner.invoke(app(), ["policy", "explain", "--config", str(path), *options], env=WIDE)


@wired
def test_explain_allow_exits_0(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "alice", "--roles", "analyst", "--tool", "siem__search",
                     "--annotations", '{"readOnlyHint": true}')
    assert result.exit_code == 0, result.output
    assert "ALLOW" in result.output and "tool 'siem__search' on upstream 'siem'" in result.output
    rows = {line.split("│")[2].strip(): line for line in result.output.splitlines()
            if line.count("│") > 4}
    assert "matched" in rows["ro"]
    assert "not in roles [responder]" in rows["responders"]


@wired
def test_explain_deny_exits_1_naming_rule_and_reason(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "bob", "--roles", "responder", "--tool",
                     "hosts.isolate", "--args", '{"host": "prod-db-1"}',
                     "--at", "2026-11-20T10:00+01:00")
    assert result.exit_code == 1, result.output
    assert "DENY" in result.output and "upstream 'edr'" in result.output  # from its prefix
    assert "no-prod-hosts" in result.output and "constraints on 'host' hold" in result.output


@wired
def test_explain_outside_hours_is_denied_by_the_window(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "bob", "--roles", "responder", "--tool",
                     "hosts.isolate", "--args", '{"host": "ws-1"}', "--at", "2026-11-21T10:00")
    assert result.exit_code == 1, result.output
    assert "outside its hours" in result.output
    inside = explain(tmp_path, "--sub", "bob", "--roles", "responder", "--tool",
                     "hosts.isolate", "--args", '{"host": "ws-1"}', "--at", "2026-11-20T10:00")
    assert inside.exit_code == 0, inside.output


@wired
def test_explain_hidden_tool_says_so(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "mallory", "--tool", "siem__delete_records",
                     "--annotations", '{"readOnlyHint": true}')
    assert result.exit_code == 1
    assert "hidden from lists" in result.output and "readOnlyHint overruled" in result.output


@pytest.mark.parametrize(("options", "expected"), [
    (["--args", "{not json"], "--args is not valid JSON"),
    (["--args", "[1, 2]"], "--args must be a JSON object"),
    (["--annotations", "true"], "--annotations must be a JSON object"),
    (["--at", "tomorrow"], "--at must be an ISO 8601 time"),
])
def test_explain_bad_options_exit_2(tmp_path, options: list[str], expected: str) -> None:
    result = explain(tmp_path, "--sub", "alice", "--tool", "siem__search", *options)
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output


def test_explain_needs_exactly_one_target(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "alice")
    assert result.exit_code == 2 and "exactly one of --tool" in result.output
    result = explain(tmp_path, "--tool", "a", "--prompt", "b")
    assert result.exit_code == 2 and "exactly one of --tool" in result.output


def test_explain_unknown_config_file_exits_2(tmp_path) -> None:
    result = runner.invoke(app(), ["policy", "explain", "--config",
                                   str(tmp_path / "missing.yaml"), "--tool", "siem__search"])
    assert result.exit_code == 2
    assert "missing.yaml" in result.output and "no such file" in result.output


@wired
def test_explain_bad_policy_exits_2_naming_the_rule(tmp_path) -> None:
    broken = CONFIG.replace("classes: [read-only]", "classes: [read-ony]")
    result = explain(tmp_path, "--sub", "alice", "--tool", "siem__search", config=broken)
    assert result.exit_code == 2
    assert "rule 'ro'" in result.output and "unknown class 'read-ony'" in result.output


@wired
def test_explain_unplaceable_tool_asks_for_the_upstream(tmp_path) -> None:
    result = explain(tmp_path, "--sub", "alice", "--tool", "other__thing")
    assert result.exit_code == 2 and "give --upstream" in result.output
    result = explain(tmp_path, "--sub", "alice", "--tool", "other__thing", "--upstream", "nope")
    assert result.exit_code == 2 and "no upstream named 'nope'" in result.output


def test_explain_identity_options_need_a_subject(tmp_path) -> None:
    result = explain(tmp_path, "--roles", "analyst", "--tool", "siem__search",
                     config="mcpServers:\n  siem: {command: x}\n")
    assert result.exit_code == 2 and "give --sub" in result.output
