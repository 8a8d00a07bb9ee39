"""The Ed25519 key that signs audit checkpoints, and the checkpoints' signed form.

The private key lives in `<state_dir>/audit-signing.key` (PKCS#8 PEM, mode 0600), generated
at first start. Its public key is exported as PEM or as raw base64 (32 bytes) so a trail can
be verified on another machine with `bastion audit verify --public-key FILE`.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from bastion.audit.chain import canonical
from bastion.config.keys import create_secret_file

SIGNING_KEY_FILE = "audit-signing.key"
_CHECKPOINT_CONTEXT = b"bastion-audit-checkpoint\n"
_MAX_KEY_FILE = 4096


class AuditKeyError(Exception):
    """The signing or public key cannot be read, written or parsed."""

    def __init__(self, path: Path | None, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: `instance` had `count` records, the last `seq` with hash `head`."""

    instance: str
    seq: int
    head: bytes
    count: int
    time: float

    def payload(self) -> bytes:
        """The exact bytes that are signed."""
        return _CHECKPOINT_CONTEXT + canonical({
            "instance": self.instance, "seq": self.seq, "head": self.head.hex(),
            "count": self.count, "time": self.time})

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return key.sign(self.payload())

    def verify(self, key: Ed25519PublicKey, signature: bytes) -> bool:
        try:
            key.verify(signature, self.payload())
        except InvalidSignature:
            return False
        return True


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """The signing key of `state_dir`, generated (0600, in a 0700 directory) if absent."""
    file = state_dir / SIGNING_KEY_FILE
    if not file.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            create_secret_file(file, pem)
            return key
        except FileExistsError:
            pass  # another process won the race: read its key
        except OSError as exc:
            raise AuditKeyError(file, f"cannot write the audit signing key: {exc.strerror}; "
                                "make the state directory writable") from None
    return read_signing_key(file)


def read_signing_key(file: Path) -> Ed25519PrivateKey:
    """The signing key in `file` (owner-only, PEM); AuditKeyError if absent or unsafe."""
    try:
        # One descriptor for the checks and the read: the file cannot change in between.
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise AuditKeyError(file, "no audit signing key yet: a gateway with this state "
                            "directory creates it at first start") from None
    except OSError as exc:
        raise AuditKeyError(file, f"cannot read the audit signing key: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AuditKeyError(file, "the audit signing key is not a regular file")
        if info.st_uid != os.geteuid():
            raise AuditKeyError(file, f"the audit signing key belongs to uid {info.st_uid}, "
                                "not to the user running Bastion; chown it")
        if info.st_mode & 0o077:
            raise AuditKeyError(file, f"the audit signing key has mode "
                                f"{stat.S_IMODE(info.st_mode):04o}; run `chmod 600 {file}`")
        raw = handle.read(_MAX_KEY_FILE)
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(file, "the file is not an Ed25519 private key in PEM; restore it "
                            "from a backup (a new key cannot vouch for old checkpoints)")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_raw_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or raw base64 (32 bytes); AuditKeyError otherwise."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, TypeError):
            key = None
        if isinstance(key, Ed25519PublicKey):
            return key
        raise AuditKeyError(None, "the PEM is not an Ed25519 public key")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise AuditKeyError(None, "a public key must be PEM or 32 bytes in base64; export it "
                            "with `bastion audit export-key`")
    return Ed25519PublicKey.from_public_bytes(raw)
