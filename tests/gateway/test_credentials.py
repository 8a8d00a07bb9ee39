"""The gateway's own credentials toward upstreams (static secrets from the environment or a
file), against a real HTTP upstream that records the Authorization header it receives."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pydantic import ValidationError

from bastion.client import connect_http
from bastion.config import BastionConfig, load_config
from bastion.gateway.credentials import CredentialError, read_secret_file, upstream_env
from bastion.protocol.principal import ANONYMOUS
from tests.gateway.conftest import make_config

pytestmark = pytest.mark.timeout(30)


class RecordingAuthenticator:
    """The upstream's authenticator: lets everyone in and remembers the credentials."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def authenticate(self, headers, query_string):
        self.seen.append(headers.get("authorization"))
        return ANONYMOUS

    def check_access(self, principal, method, params):
        return None


async def call_through(gateway_http, config: BastionConfig) -> dict:
    live = await gateway_http(config)
    async with connect_http(live.url) as client:
        return await client.call_tool("up__test_simple_text", {})


async def test_bearer_from_configuration_reaches_the_upstream(serve, gateway_http):
    recorder = RecordingAuthenticator()
    upstream = await serve(authenticator=recorder)
    config = make_config({"up": {"url": upstream.url, "auth": {"bearer": "s3cret-token"}}})
    result = await call_through(gateway_http, config)
    assert result["content"][0]["text"]
    assert recorder.seen and set(recorder.seen) == {"Bearer s3cret-token"}


async def test_bearer_file_and_custom_header(serve, gateway_http, tmp_path):
    recorder = RecordingAuthenticator()
    upstream = await serve(authenticator=recorder)
    (tmp_path / "token").write_text("from-a-file\n")
    (tmp_path / "bastion.yaml").write_text(
        f"mcpServers:\n  up:\n    url: {upstream.url}\n"
        "    auth: {bearer_file: token, header: X-Api-Key, scheme: ''}\n")
    config = load_config(tmp_path / "bastion.yaml")
    assert config.mcp_servers["up"].auth.bearer_file == tmp_path / "token"
    seen: list[str | None] = []
    original = recorder.authenticate

    async def authenticate(headers, query_string):
        seen.append(headers.get("x-api-key"))
        return await original(headers, query_string)

    recorder.authenticate = authenticate  # type: ignore[method-assign]
    await call_through(gateway_http, config)
    assert set(seen) == {"from-a-file"} and set(recorder.seen) == {None}


async def test_unreadable_secret_file_names_the_file_not_a_secret(gateway_http, tmp_path):
    config = make_config({"up": {"url": "http://127.0.0.1:9/mcp",
                                 "auth": {"bearer_file": str(tmp_path / "missing")}}})
    live = await gateway_http(config)
    upstream = live.gateway.pool.get("up")
    for _ in range(100):
        if upstream.last_error:
            break
        await asyncio.sleep(0.02)
    assert "cannot read its secret file" in upstream.last_error
    assert str(tmp_path / "missing") in upstream.last_error


def test_secret_file_rules(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    two = tmp_path / "two"
    two.write_text("a\nb\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    for file, reason in ((big, "over"), (two, "one non-empty line"),
                         (empty, "one non-empty line"), (binary, "UTF-8")):
        with pytest.raises(CredentialError, match=reason) as caught:
            read_secret_file("up", file)
        assert "b\n" not in str(caught.value)
    ok = tmp_path / "ok"
    ok.write_text("value\r\n")
    assert read_secret_file("up", ok) == "value"


def test_env_files_for_stdio_upstreams(tmp_path):
    (tmp_path / "key").write_text("k-123\n")
    config = make_config({"s": {"command": sys.executable, "env": {"A": "1"},
                                "env_files": {"API_KEY": str(tmp_path / "key")}}})
    assert upstream_env(config.mcp_servers["s"]) == {"A": "1", "API_KEY": "k-123"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"url": "http://x/mcp", "auth": {}}, "exactly one"),
    ({"url": "http://x/mcp", "auth": {"bearer": "a", "bearer_file": "f"}}, "exactly one"),
    ({"url": "http://x/mcp", "auth": {"bearer": "  "}}, "is empty"),
    ({"url": "http://x/mcp", "auth": {"bearer": "a", "header": "Bad Header"}}, "header name"),
    ({"command": "x", "auth": {"bearer": "a"}}, "for HTTP upstreams"),
    ({"url": "http://x/mcp", "env_files": {"A": "f"}}, "for stdio upstreams"),
])
def test_bad_credential_configuration(entry, message):
    with pytest.raises(ValidationError, match=message):
        make_config({"up": entry})


def test_secrets_stay_out_of_reprs():
    config = make_config({"up": {"url": "http://x/mcp", "auth": {"bearer": "s3cret-token"}}})
    assert "s3cret-token" not in repr(config) and "s3cret-token" not in str(config)
    assert "s3cret-token" not in config.model_dump_json()
