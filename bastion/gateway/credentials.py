"""The gateway's own credentials toward its upstreams: static secrets, read when connecting.

An HTTP upstream's `auth` puts a secret (from the environment, through `${VAR}` in the
configuration, or from a file) in a header of every request to it; a stdio upstream's
`env_files` puts file contents in its environment. Files are read at each connection, so a
rotated secret takes effect at the next reconnection, and each read is bounded. The client's
own token is never among these: nothing of the inbound request's headers reaches an upstream
(SPEC-TP-02). Errors name the file and the reason, never the content.
"""

from __future__ import annotations

from pathlib import Path

from bastion.config import UpstreamConfig

#: A secret file larger than this is not a secret file.
MAX_SECRET_FILE_BYTES = 64 * 1024


class CredentialError(Exception):
    """An upstream's secret could not be read (the file and the cause are in the message)."""

    def __init__(self, upstream: str, file: Path, reason: str) -> None:
        self.upstream = upstream
        self.file = file
        super().__init__(f"upstream {upstream!r}: cannot read its secret file {file}: {reason}")


def read_secret_file(upstream: str, file: Path) -> str:
    """The secret in `file`, without its trailing newline."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise CredentialError(upstream, file, exc.strerror or type(exc).__name__) from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise CredentialError(upstream, file, f"it is over {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise CredentialError(upstream, file, "it is not UTF-8 text") from None
    if not text or any(ch in text for ch in "\r\n\x00"):
        raise CredentialError(upstream, file, "it must hold one non-empty line")
    return text


def upstream_headers(config: UpstreamConfig) -> dict[str, str]:
    """The headers of every request to an HTTP upstream: its configured headers and its
    static credential (none for per-user OAuth, whose tokens the user's connection adds)."""
    headers = dict(config.headers)
    auth = config.auth
    if auth is None or auth.oauth is not None:  # per-user OAuth: each user's own token
        return headers
    if auth.bearer is not None:
        secret = auth.bearer.get_secret_value().strip()
    else:
        assert auth.bearer_file is not None
        secret = read_secret_file(config.name, auth.bearer_file)
    headers[auth.header] = f"{auth.scheme} {secret}" if auth.scheme else secret
    return headers


def upstream_env(config: UpstreamConfig) -> dict[str, str]:
    """The environment additions of a stdio upstream: `env`, then `env_files`."""
    env = dict(config.env)
    for name, file in config.env_files.items():
        env[name] = read_secret_file(config.name, file)
    return env
