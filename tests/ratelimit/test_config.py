"""The `rate_limits:` section: parsing rates and windows, defaults, and every kind of bad
input refused at load time with a message naming the limit."""

from __future__ import annotations

import pytest

from bastion.config import BastionConfig
from bastion.config.errors import ConfigError
from bastion.config.loader import load_config
from bastion.config.ratelimit import RateLimitConfig, parse_rate, parse_window

YAML = """\
mcpServers:
  up: {command: python}
rate_limits:
  rules:
    - name: per-user
      per: [principal]
      rate: 60/minute
      burst: 20
      match: {upstreams: [edr], tools: ["edr__*"], roles: [analyst]}
      methods: [tools/call]
    - name: per-agent
      per: [principal, agent, tool]
      rate: 5 / s
  quotas:
    - name: daily-calls
      per: [principal, tool]
      limit: 1000
      window: 1d
"""


def test_the_documented_example_loads(tmp_path):
    path = tmp_path / "bastion.yaml"
    path.write_text(YAML)
    section = load_config(path).rate_limits
    user, agent = section.rules
    assert (user.capacity, user.refill_per_second) == (20, 1.0)
    assert user.match.tools == ["edr__*"] and user.methods == ["tools/call"]
    assert (agent.capacity, agent.refill_per_second) == (5, 5.0)  # burst defaults to N
    assert agent.methods == ["tools/call", "prompts/get", "resources/read",
                             "completion/complete"]
    (quota,) = section.quotas
    assert (quota.limit, quota.window_seconds, quota.per) == (1000, 86400, ["principal", "tool"])
    assert section.max_keys == 100_000


def test_an_absent_section_limits_nothing():
    section = BastionConfig.model_validate({}).rate_limits
    assert section.rules == [] and section.quotas == []


@pytest.mark.parametrize(("text", "expected"), [
    ("60/minute", (60, 60)), ("1/s", (1, 1)), ("10/HOUR", (10, 3600)), ("3/d", (3, 86400)),
    (" 7 / min ", (7, 60))])
def test_rates_parse(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("1d", 86400), ("12h", 43200), ("30m", 1800),
                                                ("90s", 90), (3600, 3600)])
def test_windows_parse(text, expected):
    assert parse_window(text) == expected


def load(tmp_path, section: str) -> ConfigError:
    path = tmp_path / "bastion.yaml"
    path.write_text("mcpServers: {}\nrate_limits:\n" + section)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    return refused.value


@pytest.mark.parametrize(("section", "words"), [
    ("  rules: [{name: r, rate: 0/minute}]", "rate limit 'r': rate: rate '0/minute': the number "
     "must be between 1 and 1,000,000,000"),
    ("  rules: [{name: r, rate: 99999999999999999999999/second}]", "between 1 and"),
    ("  rules: [{name: r, rate: 60/fortnight}]", "is not N/unit; write e.g. 60/minute"),
    ("  rules: [{name: r, rate: sixty}]", "is not N/unit"),
    ("  rules: [{name: r, rate: -1/s}]", "is not N/unit"),
    ("  rules: [{name: r, rate: 1/s, burst: 0}]", "burst: Input should be greater than or "
     "equal to 1"),
    ("  rules: [{name: r, rate: 1/s, burst: 10000000000}]", "burst: Input should be less than"),
    ("  rules: [{name: r, rate: 1/s, per: [user]}]", "per.0: Input should be 'principal', "
     "'agent', 'upstream' or 'tool'"),
    ("  rules: [{name: r, rate: 1/s, per: [tool, tool]}]", "tool listed more than once"),
    ("  rules: [{name: r, rate: 1/s, methods: [tools/list]}]", "methods.0: Input should be"),
    ("  rules: [{name: r, rate: 1/s, methods: []}]", "methods: List should have at least 1"),
    ("  rules: [{name: r, rate: 1/s, match: {tools: ['[x']}}]", "match.tools: glob '[x' has an "
     "unclosed '['"),
    ("  rules: [{name: r, rate: 1/s, match: {tool: [x]}}]", "match.tool: unknown key; allowed "
     "here: subjects, clients, roles"),
    ("  rules: [{name: r, rate: 1/s, brust: 3}]", "brust: unknown key; allowed here: name, per"),
    ("  rules: [{rate: 1/s}]", "a rate limit without a name: name: Field required"),
    ("  rules: [{name: 'bad name', rate: 1/s}]", "name: String should match pattern"),
    ("  quotas: [{name: q, limit: 0, window: 1d}]", "quota 'q': limit: Input should be greater "
     "than or equal to 1"),
    ("  quotas: [{name: q, limit: 5, window: 0s}]", "window '0s' must be between 1 second and "
     "366 days"),
    ("  quotas: [{name: q, limit: 5, window: 400d}]", "must be between 1 second and 366 days"),
    ("  quotas: [{name: q, limit: 5, window: soon}]", "is not N followed by a unit"),
    ("  rules: [{name: a, rate: 1/s}]\n  quotas: [{name: a, limit: 5, window: 1h}]",
     "the name 'a' is used twice in rate_limits"),
    ("  rules: [{name: a, rate: 1/s}, {name: a, rate: 2/s}]", "the name 'a' is used twice"),
    ("  max_keys: 0", "max_keys: Input should be greater than or equal to 1"),
    ("  store: redis", "store: Input should be 'memory'"),
])
def test_bad_input_is_refused_at_load(tmp_path, section, words):
    error = load(tmp_path, section)
    assert words in str(error), str(error)
    assert error.field is not None and error.field.startswith("rate_limits")


def test_the_model_refuses_bad_input_directly():
    with pytest.raises(ValueError, match="rate limit 'r'"):
        RateLimitConfig.model_validate({"rules": [{"name": "r", "rate": "0/s"}]})
