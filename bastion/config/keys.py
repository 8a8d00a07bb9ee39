"""The state directory and the 32-byte session key that seals Bastion's tokens.

The key comes from the configuration (`session_key`: 64 hex digits or base64) or from
`<state_dir>/session.key`, which is generated at first start: 64 hex digits, mode 0600, in a
directory of mode 0700, written atomically so two processes starting together share one key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.config.errors import ConfigError

if TYPE_CHECKING:
    from bastion.config.models import BastionConfig

SESSION_KEY_BYTES = 32
SESSION_KEY_FILE = "session.key"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
#: A key file is 65 bytes; anything much larger is not one.
_MAX_KEY_FILE = 256


def decode_session_key(text: str) -> bytes:
    """32 key bytes from 64 hex digits or (urlsafe or standard) base64; ValueError otherwise.

    The message never repeats the text: it is a secret, even when malformed.
    """
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    standard = text.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != SESSION_KEY_BYTES:
        raise ValueError("a session key must be 32 bytes, written as 64 hex digits or as base64; "
                         "generate one with: python -c "
                         "'import secrets; print(secrets.token_hex(32))'")
    return key


def resolve_state_dir(config: BastionConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: `state_dir` (relative to the file), `$BASTION_STATE_DIR`,
    `$XDG_STATE_HOME/bastion`, or `~/.local/state/bastion`; always an absolute path."""
    environ = os.environ if environ is None else environ
    if config.state_dir is not None:
        base = config.base_dir or Path.cwd()
        return base / config.state_dir.expanduser()
    if environ.get("BASTION_STATE_DIR"):
        return Path(environ["BASTION_STATE_DIR"]).expanduser().absolute()
    xdg = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "bastion"
    return Path.home() / ".local" / "state" / "bastion"


def load_session_key(config: BastionConfig, environ: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte session key: configured, kept in the state directory, or generated there."""
    if config.session_key is not None:
        try:
            return decode_session_key(config.session_key)
        except ValueError as exc:
            raise ConfigError(config.source, "session_key", str(exc)) from None
    file = resolve_state_dir(config, environ) / SESSION_KEY_FILE
    key = _read_key_file(file)
    return key if key is not None else _create_key_file(file)


def _read_key_file(file: Path) -> bytes | None:
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None  # the directory is created (or fails with its own message) next
    except OSError as exc:
        raise ConfigError(file, None, f"cannot read the session key: {exc.strerror}; fix the "
                          "file's permissions, or set session_key in the configuration") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(file, None, "the session key is not a regular file; remove it and "
                              "Bastion generates a new key")
        if info.st_uid != os.geteuid():
            raise ConfigError(file, None, f"the session key belongs to uid {info.st_uid}, not to "
                              f"the user running Bastion (uid {os.geteuid()}); chown it")
        if info.st_mode & 0o077:
            raise ConfigError(file, None, f"the session key has mode "
                              f"{stat.S_IMODE(info.st_mode):04o}, so other users may read it; "
                              f"run `chmod 600 {file}`, and delete the file to get a new key if "
                              "someone else may have read it")
        raw = handle.read(_MAX_KEY_FILE)
    text = raw.strip()
    if not _HEX_KEY.fullmatch(text.decode("ascii", errors="replace")):
        raise ConfigError(file, None, f"the session key file must hold 64 hex digits (32 bytes), "
                          f"it holds {len(raw)} bytes; delete it and Bastion generates a new key "
                          "(sessions issued with the old key end)")
    return bytes.fromhex(text.decode("ascii"))


def ensure_private_file(file: Path) -> None:
    """Create `file` empty, readable by its owner only (0600, in a 0700 directory), before a
    library such as SQLite creates it with the umask; take group and other permissions off
    an existing one. `OSError` when that cannot be done."""
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(file, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def create_secret_file(file: Path, content: bytes) -> None:
    """Write a new file readable by its owner only (0600), whole or not at all.

    `FileExistsError` if `file` exists: link() refuses to replace a file, so a process
    that lost a race to create it reads the winner's secret instead of overwriting it.
    Other failures are `OSError`."""
    fd, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, file)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _create_key_file(file: Path) -> bytes:
    directory = file.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as exc:
        raise ConfigError(directory, None, f"cannot create the state directory: {exc.strerror}; "
                          "set state_dir in the configuration or $BASTION_STATE_DIR to a "
                          "directory Bastion may write") from None
    if info.st_mode & 0o022:
        raise ConfigError(directory, None, "the state directory is writable by other users, who "
                          f"could replace the session key; run `chmod 700 {directory}` or choose "
                          "another state_dir")
    key = os.urandom(SESSION_KEY_BYTES)
    try:
        create_secret_file(file, (key.hex() + "\n").encode())
    except FileExistsError:
        existing = _read_key_file(file)
        if existing is None:
            raise ConfigError(file, None, "the session key appeared and vanished while Bastion "
                              "was creating it; start again") from None
        return existing
    except OSError as exc:
        raise ConfigError(file, None, f"cannot write the session key: {exc.strerror}; make the "
                          "state directory writable, or set session_key in the configuration"
                          ) from None
    _sync_directory(directory)
    return key


def _sync_directory(directory: Path) -> None:
    # The new name must survive a crash as well as the file's content.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
