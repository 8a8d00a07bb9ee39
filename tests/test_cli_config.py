"""`bastion config check`: a valid file lists its upstreams without secrets; a bad one exits 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.config import ConfigError

runner = CliRunner()
# A wide console, so a leaked value would appear whole rather than folded across lines.
WIDE = {"COLUMNS": "250"}

VALID = """\
mcpServers:
  time:
    command: uvx
    args: [mcp-server-time, --api-key, ARG-SECRET-1, --token=ARG-SECRET-2]
    env: {TIME_API_KEY: ENV-SECRET-VALUE}
    timeout: 12
  remote:
    url: https://user:URL-SECRET-1@mcp.example.com/mcp?token=URL-SECRET-2
    headers: {Authorization: "Bearer HEADER-SECRET-TOKEN"}
    prefix: ""
    protocol: modern
    enabled: false
session_key: "%s"
""" % ("cd" * 32)


def test_check_lists_the_upstreams_and_exits_0(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text(VALID)
    result = runner.invoke(app, ["config", "check", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.startswith("│")}
    assert rows["time"] == ["stdio", "uvx mcp-server-time --api-key *** --token=***",
                            "env TIME_API_KEY", "'time__'", "12s", "yes", "auto"]
    assert rows["remote"] == ["http", "https://***@mcp.example.com/mcp?token=***",
                              "header Authorization", "''", "60s", "no", "modern"]
    assert "valid" in result.output and "2 upstreams (1 enabled)" in result.output


def test_check_never_prints_secret_values(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text(VALID)
    result = runner.invoke(app, ["config", "check", str(path)], env=WIDE)
    assert result.exit_code == 0
    assert "SECRET" not in result.output and "cd" * 32 not in result.output


def test_check_reports_every_problem_and_exits_2(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text("mcpServers:\n  time:\n    command: x\n    timeout: -1\n"
                    "    args: [\"${NOT_SET_ANYWHERE_42}\"]\n"
                    "    headers: {Authorization: Bearer HEADER-SECRET-TOKEN}\n"
                    "    url: http://h\n")
    result = runner.invoke(app, ["config", "check", str(path)], env=WIDE)
    assert result.exit_code == 2
    assert f"{path}: mcpServers.time.args[0]: environment variable NOT_SET_ANYWHERE_42 is " \
           "not set" in result.output
    assert "Traceback" not in result.output and "SECRET" not in result.output
    path.write_text("server: {port: 70000}\nmcpServers:\n  time:\n    command: x\n"
                    "    timeout: -1\n")
    result = runner.invoke(app, ["config", "check", str(path)], env=WIDE)
    assert result.exit_code == 2
    assert f"{path}: mcpServers.time.timeout: Input should be greater than 0 (got -1), " \
           "at line 5" in result.output
    assert f"{path}: server.port: Input should be less than or equal to 65535 (got 70000), " \
           "at line 1" in result.output


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text(""), "the file is empty"),
    (lambda p: p.write_text("a: [\n"), "invalid YAML"),
    (lambda p: p.write_text("- 1\n"), "must be a mapping"),
])
def test_check_bad_files_exit_2(tmp_path, make, message):
    path = tmp_path / "bastion.yaml"
    make(path)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_debug_shows_the_exception(tmp_path):
    result = runner.invoke(app, ["--debug", "config", "check", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)


def test_check_without_a_file_is_a_usage_error():
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output
