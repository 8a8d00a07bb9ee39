"""The one configuration file of `bastion serve`: models, loader, state directory, session key.

`load_config(path)` reads a YAML (or mcp.json) file, interpolates `${ENV}` references and
validates it into a `BastionConfig`; every problem is a `ConfigError` naming the file, the
field and the line. `default_config()` is what runs without a file.
"""

from bastion.config.errors import ConfigError, ConfigProblem
from bastion.config.keys import (
    SESSION_KEY_BYTES,
    SESSION_KEY_FILE,
    decode_session_key,
    load_session_key,
    resolve_state_dir,
)
from bastion.config.loader import MAX_CONFIG_BYTES, load_config
from bastion.config.models import (
    BastionConfig,
    GuardConfig,
    ServerConfig,
    UpstreamConfig,
    default_config,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "SESSION_KEY_BYTES",
    "SESSION_KEY_FILE",
    "BastionConfig",
    "ConfigError",
    "ConfigProblem",
    "GuardConfig",
    "ServerConfig",
    "UpstreamConfig",
    "decode_session_key",
    "default_config",
    "load_config",
    "load_session_key",
    "resolve_state_dir",
]
