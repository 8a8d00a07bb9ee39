"""Bastion's development issuer (`auth.mode: dev`): local tokens without an identity provider.

An Ed25519 signing key is generated at first use in `<state_dir>/dev-issuer.jwk` (a private
JWK, mode 0600, created atomically so two processes starting together share one key).
`bastion dev-token` mints access tokens with it, and a gateway in dev mode verifies them
against the same key, locally, with no network.

The tokens look like an identity provider's (RFC 9068): `iss` is the fixed URI
`bastion:dev` (also the principal's issuer, so audit records say plainly that a development
token was used; it is no URL an OAuth client could discover, because dev tokens come from the
command line, not from an OAuth flow), `aud` is the gateway's resource URL, and `sub`,
`roles`, `groups`, `scope`, `azp`, `jti`, `iat` and `exp` are set. The algorithm is `Ed25519`
(RFC 9864's fully-specified name for EdDSA over Ed25519).
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from bastion.config.keys import create_secret_file
from bastion.guard.identity.errors import IdentityError

DEV_ISSUER = "bastion:dev"
DEV_KEY_FILE = "dev-issuer.jwk"
DEV_ALGORITHM = "Ed25519"
#: A private Ed25519 JWK is about 200 bytes.
_MAX_KEY_FILE = 4096
MAX_TTL = 7 * 86400


class DevIssuerError(IdentityError):
    """The development issuer's key cannot be read or created; the message says what to do."""


def load_or_create_dev_key(state_dir: Path) -> OKPKey:
    """The development issuer's private key, generated on first use."""
    file = state_dir / DEV_KEY_FILE
    key = _read_key(file)
    return key if key is not None else _create_key(file)


def _read_key(file: Path) -> OKPKey | None:
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise DevIssuerError(f"cannot read {file}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise DevIssuerError(f"{file} is not a regular file of this user; remove it and "
                                 "a new development key is generated")
        if info.st_mode & 0o077:
            raise DevIssuerError(f"{file} has mode {stat.S_IMODE(info.st_mode):04o}, so other "
                                 f"users may read the signing key; run `chmod 600 {file}`")
        raw = handle.read(_MAX_KEY_FILE + 1)
    try:
        key = OKPKey.import_key(orjson.loads(raw))
    except (orjson.JSONDecodeError, JoseError, ValueError, TypeError):
        key = None
    if key is None or not key.is_private or key.get("crv") != "Ed25519" or key.kid is None:
        raise DevIssuerError(f"{file} is not a private Ed25519 JWK with a kid; delete it and a "
                             "new development key is generated (tokens minted before end)")
    return key


def _create_key(file: Path) -> OKPKey:
    key = OKPKey.generate_key("Ed25519", parameters={"use": "sig", "alg": DEV_ALGORITHM},
                              auto_kid=True)
    try:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        create_secret_file(file, orjson.dumps(key.as_dict(private=True)))
    except FileExistsError:
        existing = _read_key(file)
        if existing is None:
            raise DevIssuerError(f"{file} appeared and vanished while it was created; try "
                                 "again") from None
        return existing
    except OSError as exc:
        raise DevIssuerError(f"cannot write {file}: {exc.strerror or exc}; make the state "
                             "directory writable") from None
    return key


def public_key(key: OKPKey) -> OKPKey:
    """The verification half of the development key."""
    return OKPKey.import_key(key.as_dict(private=False))


def mint_dev_token(key: OKPKey, *, audience: str, subject: str, roles: Iterable[str] = (),
                   groups: Iterable[str] = (), scopes: Iterable[str] = (),
                   client_id: str | None = None, ttl: float = 3600,
                   now: float | None = None) -> str:
    """A signed development access token (see the module doc)."""
    if not subject:
        raise ValueError("a token needs a subject (--sub)")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"the lifetime must be between 1 second and {MAX_TTL // 86400} days")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": DEV_ISSUER, "aud": audience, "sub": subject, "iat": issued,
        "exp": issued + int(ttl), "jti": secrets.token_urlsafe(16),
    }
    if roles := list(dict.fromkeys(roles)):
        claims["roles"] = roles
    if groups := list(dict.fromkeys(groups)):
        claims["groups"] = groups
    if scopes := list(dict.fromkeys(scopes)):
        claims["scope"] = " ".join(scopes)
    if client_id:
        claims["azp"] = client_id
    header = {"alg": DEV_ALGORITHM, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[DEV_ALGORITHM])
