"""Approval rules cannot be enforced by this gateway yet: it refuses to start with any,
rather than serve calls that should wait for a person."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bastion.gateway.app import Gateway
from bastion.guard.pipeline import GuardError
from tests.gateway.conftest import EVERYTHING, make_config, stdio_upstream

RULES = {"rules": [{"name": "isolation", "tools": ["edr__isolate_host"],
                    "approvers": {"roles": ["soc-lead"]}}]}


def test_a_gateway_with_approval_rules_refuses_to_start():
    config = make_config({"edr": stdio_upstream(EVERYTHING)}, approvals=RULES)
    with pytest.raises(GuardError, match="cannot make a call wait for a person"):
        Gateway(config)


def test_bastion_serve_says_so_in_one_line(tmp_path):
    file = tmp_path / "bastion.yaml"
    file.write_text("mcpServers:\n  edr: {command: python3}\napprovals:\n  rules:\n"
                    "    - {name: isolation, tools: [edr__isolate_host], "
                    "approvers: {roles: [soc-lead]}}\n")
    done = subprocess.run([sys.executable, "-m", "bastion.cli", "serve", "--config", str(file),
                           "--http", "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                          env={"BASTION_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin"})
    assert done.returncode == 2
    assert "cannot make a call wait for a person" in done.stderr
    assert "Traceback" not in done.stderr
