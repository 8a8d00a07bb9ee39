"""The `pins:` section of the configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.config import BastionConfig, ConfigError, load_config
from bastion.config.pins import PinsConfig, parse_sha256

SHA = "ab" * 32


def test_PIN_5_4_entries_parse_with_defaults_and_normalised_digests():
    pins = PinsConfig.model_validate({"mode": "strict", "approved": [
        {"server": "siem", "name": "search", "sha256": SHA.upper()},
        {"server": "siem", "kind": "template", "name": "alert://{id}",
         "sha256": f"sha256:{SHA}"}]})
    assert [(e.kind, e.sha256) for e in pins.approved] == [("tool", SHA), ("template", SHA)]
    assert PinsConfig().mode == "auto" and PinsConfig().approved == []
    assert PinsConfig().effective_mode(loopback=True) == "tofu"
    assert PinsConfig().effective_mode(loopback=False) == "strict"
    assert PinsConfig(mode="strict").effective_mode(loopback=True) == "strict"
    assert PinsConfig(mode="tofu").effective_mode(loopback=False) == "tofu"


@pytest.mark.parametrize("entry, message", [
    ({"server": "siem", "name": "search", "sha256": SHA[:-1]}, "64 hex digits"),
    ({"server": "siem", "name": "search", "sha256": "g" * 64}, "64 hex digits"),
    ({"server": "siem", "name": "search", "sha256": "md5:" + SHA}, "64 hex digits"),
    ({"server": "siem", "name": "search"}, "sha256"),
    ({"server": "siem", "name": "", "sha256": SHA}, "name"),
    ({"server": "bad name", "name": "x", "sha256": SHA}, "server"),
    ({"server": "siem", "kind": "resource", "name": "x", "sha256": SHA}, "kind"),
    ({"server": "siem", "name": "x", "sha256": SHA, "digest": SHA}, "digest"),
])
def test_PIN_5_4_bad_entries_are_refused(entry, message):
    with pytest.raises(ValidationError, match=message):
        PinsConfig.model_validate({"approved": [entry]})


def test_PIN_5_4_bad_mode_and_unknown_servers_are_refused():
    with pytest.raises(ValidationError, match="mode"):
        PinsConfig.model_validate({"mode": "trust"})
    pins = PinsConfig.model_validate({"approved": [
        {"server": "siem", "name": "a", "sha256": SHA},
        {"server": "ghost", "name": "a", "sha256": SHA}]})
    pins.check_upstreams(["siem", "ghost"])
    with pytest.raises(ValueError, match="not configured: ghost; known upstreams: siem"):
        pins.check_upstreams(["siem"])
    with pytest.raises(ValueError, match="64 hex"):
        parse_sha256(None)  # type: ignore[arg-type]


@pytest.mark.skipif("pins" not in BastionConfig.model_fields,
                    reason="pins: is not wired into BastionConfig yet (the lead does that)")
def test_PIN_5_4_the_configuration_file_carries_the_section(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text(f"mcpServers: {{siem: {{command: python}}}}\npins:\n  mode: strict\n"
                    f"  approved:\n    - {{server: siem, name: search, sha256: {SHA}}}\n")
    assert load_config(path).pins.mode == "strict"  # type: ignore[attr-defined]
    path.write_text("pins: {approved: [{server: siem, name: search, sha256: nope}]}\n")
    with pytest.raises(ConfigError, match="64 hex digits"):
        load_config(path)
