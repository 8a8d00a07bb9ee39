"""SPEC-AUDIT: the `audit:` configuration section: defaults, paths, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.config.audit import DEFAULT_AUDIT_DB, AuditConfig


def test_spec_audit_config_defaults_and_paths(tmp_path: Path) -> None:
    config = AuditConfig()
    assert config.enabled and config.full_policy == "block"
    assert config.database(tmp_path) == tmp_path / DEFAULT_AUDIT_DB
    assert config.instance_id()
    relative = AuditConfig.model_validate({"sqlite": "logs/a.sqlite3", "instance": "gw-eu"})
    assert relative.database(tmp_path, base_dir=Path("/etc/bastion")) == \
        Path("/etc/bastion/logs/a.sqlite3")
    assert relative.instance_id() == "gw-eu"
    assert AuditConfig(sqlite=Path("/var/a.db")).database(tmp_path) == Path("/var/a.db")


@pytest.mark.parametrize("data", [
    {"full_policy": "panic"}, {"queue_size": 0}, {"batch_size": -1}, {"flush_ms": 0},
    {"checkpoint_every": 0}, {"checkpoint_seconds": 0}, {"instance": ""}, {"unknown": 1},
])
def test_spec_audit_config_bad_values(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AuditConfig.model_validate(data)
