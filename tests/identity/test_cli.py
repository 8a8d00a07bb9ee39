"""`bastion keys` and `bastion dev-token`, run through Typer as a user would."""

from __future__ import annotations

import re
import stat

import pytest
import typer
from typer.testing import CliRunner

from bastion.commands import dev_token, keys
from bastion.config.auth import AuthConfig
from bastion.guard.identity import ApiKeyStore, ApiKeyVerifier, build_authenticator

pytestmark = pytest.mark.timeout(20)
runner = CliRunner()
WIDE = {"COLUMNS": "250"}
_KEY = re.compile(r"bst_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer(add_completion=False)
    application.callback()(lambda: None)  # a group, as the real `bastion` app is
    keys.register(application)
    dev_token.register(application)
    return application


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text("server: {host: 127.0.0.1, port: 9100, path: /mcp}\n"
                    "state_dir: state\nmcpServers: {}\n")
    return path


def run(app, *args: str):
    return runner.invoke(app, [str(arg) for arg in args], env=WIDE)


def test_keys_create_list_revoke(app, config_file, tmp_path):
    created = run(app, "keys", "create", "--name", "triage-bot", "--sub", "alice",
                  "--roles", "analyst,responder", "--scope", "mcp:tools", "--expires", "30d",
                  "--config", config_file)
    assert created.exit_code == 0, created.output
    (key,) = _KEY.findall(created.output)
    assert "cannot show it again" in created.output
    store = ApiKeyStore.in_state_dir(tmp_path / "state")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    (record,) = store.list()
    assert record.roles == ("analyst", "responder") and record.expires_at is not None

    listed = run(app, "keys", "list", "--config", config_file)
    assert listed.exit_code == 0, listed.output
    assert record.id in listed.output and "triage-bot" in listed.output
    assert "active" in listed.output and key[-43:] not in listed.output

    revoked = run(app, "keys", "revoke", record.id, "--config", config_file)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in run(app, "keys", "list", "--config", config_file).output


async def test_a_created_key_authenticates_at_a_gateway_on_the_same_state(app, config_file,
                                                                          tmp_path):
    created = run(app, "keys", "create", "--name", "bot", "--sub", "alice",
                  "--config", config_file)
    (key,) = _KEY.findall(created.output)
    verifier = ApiKeyVerifier(ApiKeyStore.in_state_dir(tmp_path / "state"))
    await verifier.reload()
    assert verifier.verify(key).subject == "alice"


def test_keys_refuse_bad_input_with_one_red_line(app, config_file, tmp_path):
    result = run(app, "keys", "revoke", "ffffffffffff", "--config", config_file)
    assert result.exit_code == 1 and "no API key has the id" in result.output
    assert "Traceback" not in result.output
    result = run(app, "keys", "create", "--name", "bad name", "--sub", "alice",
                 "--config", config_file)
    assert result.exit_code == 1 and "name 'bad name' is not valid" in result.output
    result = run(app, "keys", "create", "--name", "bot", "--sub", "alice", "--expires", "soon",
                 "--config", config_file)
    assert result.exit_code == 2 and "not a duration" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: {port: many}\n")
    result = run(app, "keys", "list", "--config", broken)
    assert result.exit_code == 2 and "broken.yaml" in result.output
    assert run(app, "keys", "list", "--config", tmp_path / "absent.yaml").exit_code == 2
    empty = run(app, "keys", "list", "--config", config_file)
    assert empty.exit_code == 0 and "No API keys" in empty.output


async def test_dev_token_is_accepted_by_a_dev_gateway_on_the_same_state(app, config_file,
                                                                        tmp_path):
    result = runner.invoke(app, ["dev-token", "--sub", "alice", "--roles", "analyst",
                                 "--groups", "soc,ir", "--scope", "mcp:tools edr:write",
                                 "--client", "claude", "--ttl", "10m", "--config",
                                 str(config_file)], env=WIDE)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert "auth.mode is 'none'" in result.stderr
    assert stat.S_IMODE((tmp_path / "state" / "dev-issuer.jwk").stat().st_mode) == 0o600
    authenticator = build_authenticator(AuthConfig(mode="dev"),
                                        resource_url="http://127.0.0.1:9100/mcp",
                                        state_dir=tmp_path / "state")
    principal = await authenticator.authenticate({"authorization": f"Bearer {token}"}, b"")
    assert principal.subject == "alice" and principal.groups == {"soc", "ir"}
    assert principal.scopes == {"mcp:tools", "edr:write"} and principal.client_id == "claude"
    assert principal.expires_at is not None
    await authenticator.aclose()


def test_dev_token_resource_override_and_bad_input(app, config_file):
    result = runner.invoke(app, ["dev-token", "--sub", "alice", "--resource",
                                 "HTTPS://GW.example.com/mcp/", "--config", str(config_file)])
    assert result.exit_code == 0 and "audience https://gw.example.com/mcp" in result.stderr
    for args, message in [(["--ttl", "0"], "not a duration"),
                          (["--ttl", "30d"], "between 1 second and 7 days"),
                          (["--resource", "ftp://x"], "absolute http(s) URL")]:
        result = runner.invoke(app, ["dev-token", "--sub", "alice", *args,
                                     "--config", str(config_file)])
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert runner.invoke(app, ["dev-token", "--config", str(config_file)]).exit_code == 2
