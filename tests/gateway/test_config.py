"""The configuration loader: YAML and mcp.json files, `${ENV}`, errors, defaults, session key."""

from __future__ import annotations

import base64
import importlib.util
import multiprocessing
import os
import stat
import sys
from pathlib import Path

import pytest

from bastion.client import connect_stdio
from bastion.config import (
    MAX_CONFIG_BYTES,
    BastionConfig,
    ConfigError,
    decode_session_key,
    default_config,
    load_config,
    load_session_key,
    resolve_state_dir,
)

FULL = """\
server:
  host: 0.0.0.0
  port: 9000
  path: /gateway
  allowed_hosts: [bastion.example.com]
  max_body_size: 1024
mcpServers:
  time:
    command: uvx
    args: [mcp-server-time, --local-timezone, UTC]
    env: {TZ: UTC, PORT: 8080}
    cwd: /srv
    timeout: 5
    protocol: legacy
  web:
    url: https://mcp.example.com/mcp
    headers: {Authorization: Bearer abc}
    prefix: ""
    connect_timeout: 3
  old:
    command: old-server
    enabled: false
state_dir: state
guard:
  stages: [header_body]
"""


def write(tmp_path: Path, text: str | bytes, name: str = "bastion.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def failure(tmp_path: Path, text: str | bytes, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ)
    return caught.value


# --- valid files ---------------------------------------------------------------------------


def test_a_full_yaml_file(tmp_path):
    config = load_config(write(tmp_path, FULL), environ={})
    assert (config.server.host, config.server.port, config.server.path) == \
        ("0.0.0.0", 9000, "/gateway")
    assert config.server.allowed_hosts == ["bastion.example.com"]
    assert config.server.max_body_size == 1024
    assert [u.name for u in config.upstreams] == ["time", "web"]  # `old` is disabled
    time, web = config.upstreams
    assert (time.transport, time.command, time.args) == \
        ("stdio", "uvx", ["mcp-server-time", "--local-timezone", "UTC"])
    assert time.env == {"TZ": "UTC", "PORT": "8080"}  # a YAML number becomes the string
    assert (time.cwd, time.timeout, time.protocol, time.effective_prefix) == \
        ("/srv", 5, "legacy", "time__")
    assert (web.transport, web.url, web.effective_prefix) == \
        ("http", "https://mcp.example.com/mcp", "")
    assert web.headers == {"Authorization": "Bearer abc"}
    assert web.connect_timeout == 3 and web.timeout == 60
    assert config.mcp_servers["old"].enabled is False
    assert config.guard.stages == ["header_body"]
    assert config.source == tmp_path / "bastion.yaml"
    assert config.base_dir == tmp_path


def test_secrets_stay_out_of_repr(tmp_path):
    path = write(tmp_path, FULL + f"session_key: {'ab' * 32}\n")
    config = load_config(path, environ={})
    text = repr(config)
    assert "Bearer abc" not in text and "ab" * 32 not in text
    assert "8080" not in text  # env values


def test_an_mcp_json_file_as_is(tmp_path):
    path = write(tmp_path, """{
      "mcpServers": {
        "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"A": "1"}},
        "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp",
                   "headers": {"X-Api-Key": "k"}},
        "stream": {"type": "streamable-http", "url": "https://h.example/mcp"},
        "local": {"type": "stdio", "command": "server"}
      }
    }""", name="mcp.json")
    config = load_config(path, environ={})
    assert [(u.name, u.transport) for u in config.upstreams] == [
        ("time", "stdio"), ("remote", "http"), ("stream", "http"), ("local", "stdio")]
    assert config.server.port == 8848  # nothing else is needed


def test_the_vs_code_servers_key(tmp_path):
    config = load_config(write(tmp_path, '{"servers": {"t": {"type": "stdio", "command": "x"}}}'),
                         environ={})
    assert [u.name for u in config.upstreams] == ["t"]
    error = failure(tmp_path, '{"servers": {"a": {"command": "x"}}, '
                              '"mcpServers": {"b": {"command": "y"}}}')
    assert error.field == "servers" and "not both" in error.problem


def test_merge_keys_and_anchors_work(tmp_path):
    config = load_config(write(tmp_path, """\
mcpServers:
  a: &base {command: x, timeout: 5}
  b:
    <<: *base
    timeout: 7
"""), environ={})
    assert [(u.name, u.command, u.timeout) for u in config.upstreams] == \
        [("a", "x", 5), ("b", "x", 7)]


# --- interpolation -------------------------------------------------------------------------


def test_interpolation_of_values(tmp_path):
    path = write(tmp_path, """\
server: {port: "${PORT}"}
mcpServers:
  a:
    command: "${CMD}"
    args: ["${UNSET:-fallback}", "${EMPTY:-was empty}", "${EMPTY}", "$${LITERAL}",
           "pre-${CMD}-post", "${SPACE:-a b}"]
    env: {"${KEY_IS_NOT_INTERPOLATED}": "${INJECT}"}
""")
    config = load_config(path, environ={"PORT": "9100", "CMD": "srv", "EMPTY": "",
                                        "INJECT": "x\nmcpServers: {evil: {command: sh}}"})
    upstream = config.mcp_servers["a"]
    assert config.server.port == 9100
    assert upstream.command == "srv"
    assert upstream.args == ["fallback", "was empty", "", "${LITERAL}", "pre-srv-post", "a b"]
    # A value can never add structure: it stays one string, and keys are left alone.
    assert upstream.env == {"${KEY_IS_NOT_INTERPOLATED}": "x\nmcpServers: {evil: {command: sh}}"}
    assert list(config.mcp_servers) == ["a"]


def test_a_value_from_the_environment_is_not_interpolated_again(tmp_path):
    config = load_config(write(tmp_path, 'mcpServers: {a: {command: "${A}"}}\n'),
                         environ={"A": "${B}", "B": "nope"})
    assert config.mcp_servers["a"].command == "${B}"


def test_the_real_environment_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_TEST_COMMAND", "from-env")
    config = load_config(write(tmp_path, 'mcpServers: {a: {command: "${BASTION_TEST_COMMAND}"}}'))
    assert config.mcp_servers["a"].command == "from-env"


def test_unset_variables_are_named_with_their_fields(tmp_path):
    error = failure(tmp_path, """\
mcpServers:
  a:
    command: x
    headers:
      Authorization: "Bearer ${API_TOKEN}"
    args: [ok, "${ALSO_MISSING}"]
""")
    assert [(p.field, p.line) for p in error.problems] == [
        ("mcpServers.a.headers.Authorization", 5), ("mcpServers.a.args[1]", 6)]
    assert "API_TOKEN is not set" in error.problems[0].problem
    assert "${API_TOKEN:-default}" in error.problems[0].problem
    assert "ALSO_MISSING" in error.problems[1].problem


@pytest.mark.parametrize("value", ["${", "${1X}", "${NAME", "${NAME:default}", "${A-b}"])
def test_malformed_references_are_errors(tmp_path, value):
    error = failure(tmp_path, f'mcpServers: {{a: {{command: "{value}"}}}}\n', NAME="n", A="a")
    assert error.field == "mcpServers.a.command"
    assert "malformed" in error.problem and "$${" in error.problem


# --- errors: the file ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.path == tmp_path / "nope.yaml" and caught.value.field is None
    assert "no such file" in str(caught.value)


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_unreadable_file(tmp_path):
    write(tmp_path, "not a directory")
    with pytest.raises(ConfigError, match="cannot read the file: Not a directory"):
        load_config(tmp_path / "bastion.yaml" / "inside.yaml")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n"])
def test_an_empty_file(tmp_path, text):
    assert "empty" in failure(tmp_path, text).problem


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "string"),
                                            ("42\n", "int"), ("[]", "list")])
def test_the_top_level_must_be_a_mapping(tmp_path, text, kind):
    error = failure(tmp_path, text)
    assert "must be a mapping" in error.problem and kind in error.problem


def test_yaml_syntax_errors_name_line_and_column(tmp_path):
    error = failure(tmp_path, "mcpServers:\n  a:\n    command: x: y\n")
    assert error.field is None and error.line == 3
    assert str(error) == (f"{tmp_path / 'bastion.yaml'}: invalid YAML: mapping values are not "
                          "allowed here, at line 3, column 15")


def test_an_unclosed_json_brace(tmp_path):
    error = failure(tmp_path, '{"mcpServers": {"a": {"command": "x"}}\n')
    assert "invalid YAML" in error.problem and error.line is not None


def test_too_large(tmp_path):
    error = failure(tmp_path, "# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert "larger than" in error.problem


def test_not_utf8(tmp_path):
    assert "not UTF-8" in failure(tmp_path, b"mcpServers: {a: {command: \xff}}\n").problem


def test_duplicate_keys_are_refused(tmp_path):
    error = failure(tmp_path, "mcpServers:\n  a: {command: x}\n  a: {command: y}\n")
    assert error.line == 3 and "duplicate key 'a' (first at line 2)" in error.problem
    error = failure(tmp_path, "mcpServers: {a: {command: x, command: y}}\n")
    assert "duplicate key 'command'" in error.problem


def test_alias_bombs_and_deep_nesting_are_bounded(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for name, previous in zip("bcdef", "abcde", strict=True):
        bomb += f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    assert "once its aliases are expanded" in failure(tmp_path, bomb).problem
    assert "nested" in failure(tmp_path, "[" * 100 + "]" * 100).problem
    assert "nested" in failure(tmp_path, "[" * 20_000 + "]" * 20_000).problem


# --- errors: the fields --------------------------------------------------------------------


def test_a_bad_value_reads_file_field_problem_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "mcpServers:\n  time:\n    command: x\n    timeout: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config("bastion.yaml", environ={})
    error = caught.value
    assert (error.path, error.field, error.line) == (Path("bastion.yaml"),
                                                     "mcpServers.time.timeout", 4)
    assert error.problem == "Input should be greater than 0 (got -1)"
    assert str(error) == ("bastion.yaml: mcpServers.time.timeout: Input should be greater "
                          "than 0 (got -1), at line 4")


def test_every_problem_is_listed_one_per_line(tmp_path):
    error = failure(tmp_path, """\
server:
  port: 70000
  path: mcp
mcpServers:
  a:
    command: x
    protocol: future
    connect_timeout: 0
""")
    assert sorted((p.field, p.line) for p in error.problems) == [
        ("mcpServers.a.connect_timeout", 8), ("mcpServers.a.protocol", 7),
        ("server.path", 3), ("server.port", 2)]
    lines = str(error).splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{error.path}: ") for line in lines)
    assert "path must start with / (got 'mcp')" in str(error)


@pytest.mark.parametrize(("text", "field", "expected"), [
    ("servre: {}\n", "servre", "did you mean 'server'?"),
    ("mcpServers: {}\nextra: 1\n", "extra", "allowed here: server, mcpServers"),
    ("server: {prot: 1}\n", "server.prot", "did you mean 'port'?"),
    ("mcpServers: {a: {command: x, timout: 3}}\n", "mcpServers.a.timout", "'timeout'"),
    ("guard: {stage: []}\n", "guard.stage", "'stages'"),
])
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path, text, field, expected):
    error = failure(tmp_path, text)
    assert error.field == field and "unknown key" in error.problem and expected in error.problem


def test_prefix_default_empty_and_invalid(tmp_path):
    config = load_config(write(tmp_path, 'mcpServers: {a: {command: x}, b: {command: x, '
                                         'prefix: ""}, c: {command: x, prefix: "c_"}}'),
                         environ={})
    assert [u.effective_prefix for u in config.upstreams] == ["a__", "", "c_"]
    error = failure(tmp_path, 'mcpServers: {a: {command: x, prefix: "has space"}}')
    assert error.field == "mcpServers.a.prefix" and "letters, digits" in error.problem


@pytest.mark.parametrize(("entry", "expected"), [
    ('{command: x, url: "http://h/mcp"}', "not both"),
    ("{args: [a]}", "give `command` (a stdio server) or `url`"),
    ('{url: "ftp://h/mcp?token=SECRET"}', "got scheme 'ftp'"),
    ('{url: "https:///no-host"}', "with a host name"),
    ('{url: "http://h/mcp", type: stdio}', "type 'stdio' does not match the entry's url"),
    ("{command: x, type: http}", "type 'http' does not match the entry's command"),
    ('{command: ""}', "at least 1 character"),
])
def test_bad_upstream_entries(tmp_path, entry, expected):
    error = failure(tmp_path, f"mcpServers:\n  up:\n    {entry}\n")
    assert error.field.startswith("mcpServers.up") and error.line in (2, 3)
    assert expected in error.problem
    assert "SECRET" not in str(error)


def test_bad_upstream_name(tmp_path):
    error = failure(tmp_path, 'mcpServers:\n  "bad name": {command: x}\n')
    assert (error.field, error.line) == ("mcpServers.bad name", 2)
    assert "not a valid upstream name" in error.problem


def test_wrong_types_and_a_yaml_boolean_where_a_string_belongs(tmp_path):
    error = failure(tmp_path, "mcpServers: {a: {command: x, args: oops, env: {DEBUG: true}}}\n")
    problems = {p.field: p.problem for p in error.problems}
    assert "valid list" in problems["mcpServers.a.args"]
    assert "quote it" in problems["mcpServers.a.env.DEBUG"]


def test_secret_values_never_appear_in_errors(tmp_path):
    error = failure(tmp_path, "session_key: not-a-key-SECRET1\n"
                              "mcpServers: {a: {command: x, headers: {X: true}, "
                              "env: {K: [SECRET2]}}}\n")
    fields = {p.field for p in error.problems}
    assert fields == {"session_key", "mcpServers.a.headers.X", "mcpServers.a.env.K"}
    assert "SECRET" not in str(error)


# --- defaults and the state directory ------------------------------------------------------


def test_default_config():
    config = default_config()
    assert (config.server.host, config.server.port, config.server.path) == \
        ("127.0.0.1", 8848, "/mcp")
    demo = config.mcp_servers["demo"]
    assert [demo.command, *demo.args] == [sys.executable, "-m", "bastion.testing.everything"]
    has_time = importlib.util.find_spec("mcp_server_time") is not None
    assert ("time" in config.mcp_servers) == has_time
    if has_time:
        time = config.mcp_servers["time"]
        assert [time.command, *time.args] == [sys.executable, "-m", "mcp_server_time"]


async def test_the_default_demo_upstream_really_starts():
    demo = default_config().mcp_servers["demo"]
    async with connect_stdio([demo.command, *demo.args]) as client:
        names = {tool["name"] for tool in await client.list_tools()}
    assert "test_simple_text" in names


def test_state_dir_from_the_file_is_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    config = load_config(write(tmp_path, "state_dir: var/state\n"), environ={})
    assert resolve_state_dir(config, {"BASTION_STATE_DIR": "/ignored"}) == tmp_path / "var/state"
    config = load_config(write(tmp_path, f"state_dir: {tmp_path / 'abs'}\n"), environ={})
    assert resolve_state_dir(config) == tmp_path / "abs"


def test_state_dir_fallbacks(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = BastionConfig()
    assert resolve_state_dir(config, {"BASTION_STATE_DIR": "/srv/b", "XDG_STATE_HOME": "/x"}) \
        == Path("/srv/b")
    assert resolve_state_dir(config, {"XDG_STATE_HOME": "/x"}) == Path("/x/bastion")
    assert resolve_state_dir(config, {"XDG_STATE_HOME": "relative"}) == \
        tmp_path / "home/.local/state/bastion"
    assert resolve_state_dir(config, {}) == tmp_path / "home/.local/state/bastion"
    assert resolve_state_dir(BastionConfig(state_dir="~/s"), {}) == tmp_path / "home/s"


# --- the session key -----------------------------------------------------------------------


def test_a_key_is_generated_once_with_private_modes(tmp_path):
    config = BastionConfig(state_dir=tmp_path / "state")
    key = load_session_key(config)
    assert len(key) == 32
    file = tmp_path / "state" / "session.key"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert file.read_text() == key.hex() + "\n"
    assert load_session_key(config) == key
    assert [p.name for p in file.parent.iterdir()] == ["session.key"]  # no temporary left


def _generate(state_dir: str) -> bytes:
    return load_session_key(BastionConfig(state_dir=state_dir))


def test_processes_starting_together_share_one_key(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_generate, [str(tmp_path / "s")] * 8)
    assert len(set(keys)) == 1


def test_configured_keys():
    raw = os.urandom(32)
    for text in (raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
                 base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert load_session_key(BastionConfig(session_key=text)) == raw
        assert decode_session_key(f" {text}\n") == raw


@pytest.mark.parametrize("text", ["", "abcd", "00" * 31, "00" * 33, "zz" * 32,
                                  base64.b64encode(b"x" * 31).decode(), "!" * 44])
def test_bad_key_material(tmp_path, text):
    with pytest.raises(ValueError, match="32 bytes"):
        decode_session_key(text)
    error = failure(tmp_path, f'session_key: "{text}"\n')
    assert error.field == "session_key" and "32 bytes" in error.problem
    config = BastionConfig()
    config.session_key = text  # not validated on assignment: load_session_key checks again
    with pytest.raises(ConfigError) as caught:
        load_session_key(config)
    assert caught.value.field == "session_key"


def test_a_readable_key_file_is_refused(tmp_path):
    file = tmp_path / "session.key"
    file.write_text("ab" * 32 + "\n")
    file.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_session_key(BastionConfig(state_dir=tmp_path))
    assert caught.value.path == file and "chmod 600" in caught.value.problem
    file.chmod(0o600)
    assert load_session_key(BastionConfig(state_dir=tmp_path)) == bytes.fromhex("ab" * 32)


@pytest.mark.parametrize("content", ["ab" * 31, "ab" * 33, "not hex at all", ""])
def test_a_key_file_of_the_wrong_length_is_refused(tmp_path, content):
    file = tmp_path / "session.key"
    file.write_text(content)
    file.chmod(0o600)
    with pytest.raises(ConfigError, match=r"64 hex digits.*delete it"):
        load_session_key(BastionConfig(state_dir=tmp_path))


def test_a_state_dir_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="chmod 700"):
        load_session_key(BastionConfig(state_dir=shared))
    assert not (shared / "session.key").exists()


def test_a_state_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot create the state directory"):
        load_session_key(BastionConfig(state_dir=tmp_path / "file" / "sub"))


def test_an_error_survives_pickling(tmp_path):
    import pickle

    error = failure(tmp_path, "server: {port: -1, path: x}\n")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.path, copy.field, copy.line) == \
        (str(error), error.path, error.field, error.line)
    assert len(copy.problems) == 2
