"""The `bastion` CLI: commands against real stdio servers, and bad input."""

from __future__ import annotations

import shutil
import sys

import orjson
import pytest
from typer.testing import CliRunner

from bastion.cli import app

runner = CliRunner()
TIME_SERVER = shutil.which("mcp-server-time") or f"{sys.executable} -m mcp_server_time"


def test_version_names_both_eras():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert "2025-11-25" in result.output and "2026-07-28" in result.output


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_call_prints_the_result_as_json(era):
    result = runner.invoke(
        app,
        ["call", "get_current_time", "--stdio", TIME_SERVER, "--era", era,
         "--args", '{"timezone": "UTC"}'],
    )
    assert result.exit_code == 0, result.output
    payload = orjson.loads(result.output)
    assert payload["structuredContent"]["timezone"] == "UTC"


def test_tools_lists_in_a_table():
    result = runner.invoke(app, ["tools", "--stdio", TIME_SERVER])
    assert result.exit_code == 0, result.output
    assert "get_current_time" in result.output and "convert_time" in result.output


def test_missing_program_is_one_line_without_traceback():
    result = runner.invoke(app, ["call", "x", "--stdio", "/nonexistent/server-binary"])
    assert result.exit_code == 1
    assert "cannot start" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_bad_arguments_are_refused(args, message):
    result = runner.invoke(app, ["call", "x", "--stdio", TIME_SERVER, "--args", args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_era_is_refused():
    result = runner.invoke(app, ["tools", "--stdio", TIME_SERVER, "--era", "future"])
    assert result.exit_code != 0
    assert "auto, legacy or modern" in result.output


def test_tool_error_exits_2():
    result = runner.invoke(
        app, ["call", "get_current_time", "--stdio", TIME_SERVER, "--args",
              '{"timezone": "Not/AZone"}'],
    )
    assert result.exit_code == 2, result.output
    payload = orjson.loads(result.output)
    assert payload["isError"] is True
    assert "Not/AZone" in payload["content"][0]["text"]
