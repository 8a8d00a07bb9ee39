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
    {"arguments": "all"}, {"max_argument_bytes": -1}, {"max_argument_bytes": 10**6},
])
def test_spec_audit_config_bad_values(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AuditConfig.model_validate(data)


def test_spec_audit_config_postgres_dsn_is_secret() -> None:
    dsn = "postgresql://bastion:s3cret-pw@db.internal:5432/audit"
    config = AuditConfig.model_validate({"postgres": dsn, "instance": "gw-1"})
    assert config.dsn == dsn
    assert "s3cret-pw" not in repr(config) and "s3cret-pw" not in str(config.model_dump())
    assert AuditConfig().dsn is None


@pytest.mark.parametrize("data", [
    {"postgres": "mysql://db/audit"}, {"postgres": "db.internal"},
    {"postgres": "host=db password=x"},
    {"sqlite": "a.sqlite3", "postgres": "postgresql://db/audit"},
])
def test_spec_audit_config_bad_postgres(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        AuditConfig.model_validate(data)
    # The message is the model's: the loader quotes no dict-valued input.
    assert caught.value.errors()[0]["loc"] == ()


def test_spec_audit_config_file_never_shows_the_dsn(tmp_path: Path) -> None:
    from bastion.config import ConfigError, load_config

    for text in ("audit:\n  postgres: 'mysql://u:pw-LEAK@db/audit'\n",
                 "audit:\n  sqlite: a\n  postgres: 'postgresql://u:pw-LEAK@db/a'\n"):
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path / "c.yaml")
        assert "pw-LEAK" not in str(caught.value) and "audit" in str(caught.value)
