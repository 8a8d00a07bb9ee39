"""Per-user OAuth tokens and client registrations toward upstreams, encrypted at rest.

The gateway holds upstream tokens for many users (SPEC-AUTH-12): `EncryptedTokenStore` keeps
them in one SQLite file, `<state_dir>/upstream_tokens.sqlite3` (mode 0600), and
`for_user(binding)` gives the `TokenStore` view the OAuth client uses for one user. Each
row's secret part (the whole token set or client registration) is sealed with AES-256-GCM
under a key derived by HKDF-SHA256 from the gateway's session key with its own `info` label,
so the file alone opens nothing. The associated data binds the row to its (kind, user
binding, issuer, resource): a row copied under another user, issuer or resource fails to
open and counts as absent (fail closed: the user is asked to authorize again). Users are
stored as a keyed hash of their binding, not the binding itself.

Decrypted rows are cached in memory (bounded), so a call does not decrypt on every request.
Nothing here puts a token, a secret or a binding in a log line or a `repr`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.client.oauth.store import ClientCredentials, TokenSet
from bastion.config.keys import ensure_private_file

logger = logging.getLogger("bastion.gateway.user_tokens")

FILE_NAME = "upstream_tokens.sqlite3"
#: The HKDF label of this store's key: no other use of the session key derives the same.
KEY_INFO = b"bastion/gateway/upstream-token-store/v1"
_NONCE = 12
#: A sealed row larger than this is not one of ours.
MAX_ROW_BYTES = 64 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    user TEXT NOT NULL, issuer TEXT NOT NULL, resource TEXT NOT NULL, sealed BLOB NOT NULL,
    PRIMARY KEY (user, issuer, resource));
CREATE TABLE IF NOT EXISTS clients (
    user TEXT NOT NULL, issuer TEXT NOT NULL, sealed BLOB NOT NULL,
    PRIMARY KEY (user, issuer));
"""


class TokenStoreError(Exception):
    """The token store cannot be opened (the path and the cause are in the message)."""


def derive_key(session_key: bytes) -> bytes:
    """The store's AES-256 key, from the gateway's session key."""
    if not isinstance(session_key, bytes) or len(session_key) < 16:
        raise ValueError("the session key must be at least 16 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=KEY_INFO).derive(session_key)


def _aad(kind: str, binding: str, issuer: str, resource: str) -> bytes:
    # A JSON array: unambiguous however the parts are spelt.
    return orjson.dumps([kind, binding, issuer, resource])


class EncryptedTokenStore:
    """Every user's upstream tokens and client registrations (see the module doc)."""

    def __init__(self, path: Path, session_key: bytes, *, cache_size: int = 1024) -> None:
        self.path = Path(path)
        key = derive_key(session_key)
        self._aead = AESGCM(key)
        # Users are stored as HMAC(binding): the file does not say who the users are.
        self._user_key = hmac.new(key, b"user-ids", hashlib.sha256).digest()
        self._cache: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._db = self._open()

    @classmethod
    def in_state_dir(cls, state_dir: Path, session_key: bytes) -> EncryptedTokenStore:
        return cls(Path(state_dir) / FILE_NAME, session_key)

    def __repr__(self) -> str:
        return f"EncryptedTokenStore({str(self.path)!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            # Created 0600 before SQLite opens it, so it is never readable by others.
            ensure_private_file(self.path)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise TokenStoreError(f"cannot open the upstream token store {self.path}: {exc}; "
                                  "check the state directory's permissions") from None
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def for_user(self, binding: str) -> UserTokenStore:
        """The `TokenStore` of the user behind `binding` (`Principal.binding`)."""
        if not isinstance(binding, str) or not binding:
            raise ValueError("a user token store needs the user's binding (a non-empty string)")
        return UserTokenStore(self, binding)

    # -- sealed rows -------------------------------------------------------------------------

    def _user(self, binding: str) -> str:
        return hmac.new(self._user_key, binding.encode(), hashlib.sha256).hexdigest()

    def _seal(self, doc: dict[str, Any], aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, orjson.dumps(doc), aad)

    def _unseal(self, sealed: bytes, aad: bytes) -> dict[str, Any] | None:
        if not isinstance(sealed, bytes) or not _NONCE < len(sealed) <= MAX_ROW_BYTES:
            return None
        try:
            doc = orjson.loads(self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad))
        except (InvalidTag, orjson.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def _cached(self, key: tuple[str, ...]) -> Any:
        value = self._cache.get(key)
        if value is not None:
            self._cache.move_to_end(key)
        return value

    def _remember(self, key: tuple[str, ...], value: Any) -> None:
        self._cache[key] = value
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def get_tokens(self, binding: str, issuer: str, resource: str) -> TokenSet | None:
        key = ("tokens", binding, issuer, resource)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._lock:
            row = self._db.execute("SELECT sealed FROM tokens WHERE user=? AND issuer=? AND "
                                   "resource=?", (self._user(binding), issuer, resource)
                                   ).fetchone()
        if row is None:
            return None
        doc = self._unseal(row[0], _aad("tokens", binding, issuer, resource))
        tokens = _token_set(doc, issuer, resource) if doc is not None else None
        if tokens is None:
            logger.warning("a stored upstream token for issuer %s does not open (tampered "
                           "with, moved, or sealed under another session key); ignored",
                           issuer)
            return None
        self._remember(key, tokens)
        return tokens

    def put_tokens(self, binding: str, tokens: TokenSet) -> None:
        aad = _aad("tokens", binding, tokens.issuer, tokens.resource)
        doc = {"access_token": tokens.access_token, "client_id": tokens.client_id,
               "requested_scopes": sorted(tokens.requested_scopes),
               "scopes": sorted(tokens.scopes), "expires_at": tokens.expires_at,
               "refresh_token": tokens.refresh_token}
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
                             (self._user(binding), tokens.issuer, tokens.resource,
                              self._seal(doc, aad)))
        self._remember(("tokens", binding, tokens.issuer, tokens.resource), tokens)

    def delete_tokens(self, binding: str, issuer: str, resource: str) -> None:
        self._cache.pop(("tokens", binding, issuer, resource), None)
        with self._lock:
            self._db.execute("DELETE FROM tokens WHERE user=? AND issuer=? AND resource=?",
                             (self._user(binding), issuer, resource))

    def get_client(self, binding: str, issuer: str) -> ClientCredentials | None:
        key = ("client", binding, issuer)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._lock:
            row = self._db.execute("SELECT sealed FROM clients WHERE user=? AND issuer=?",
                                   (self._user(binding), issuer)).fetchone()
        if row is None:
            return None
        doc = self._unseal(row[0], _aad("client", binding, issuer, ""))
        client = _client(doc, issuer) if doc is not None else None
        if client is None:
            logger.warning("a stored client registration for issuer %s does not open; "
                           "ignored", issuer)
            return None
        self._remember(key, client)
        return client

    def put_client(self, binding: str, client: ClientCredentials) -> None:
        doc = {"client_id": client.client_id, "client_secret": client.client_secret,
               "auth_method": client.auth_method, "source": client.source,
               "secret_expires_at": client.secret_expires_at}
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO clients VALUES (?, ?, ?)",
                             (self._user(binding), client.issuer,
                              self._seal(doc, _aad("client", binding, client.issuer, ""))))
        self._remember(("client", binding, client.issuer), client)

    def delete_client(self, binding: str, issuer: str) -> None:
        self._cache.pop(("client", binding, issuer), None)
        with self._lock:
            self._db.execute("DELETE FROM clients WHERE user=? AND issuer=?",
                             (self._user(binding), issuer))


def _token_set(doc: dict[str, Any], issuer: str, resource: str) -> TokenSet | None:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return TokenSet(access_token=str(doc["access_token"]), issuer=issuer,
                        resource=resource, client_id=str(doc["client_id"]),
                        requested_scopes=frozenset(doc["requested_scopes"]),
                        scopes=frozenset(doc["scopes"]), expires_at=doc["expires_at"],
                        refresh_token=doc["refresh_token"])
    return None


def _client(doc: dict[str, Any], issuer: str) -> ClientCredentials | None:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return ClientCredentials(issuer=issuer, client_id=str(doc["client_id"]),
                                 client_secret=doc["client_secret"],
                                 auth_method=doc["auth_method"], source=doc["source"],
                                 secret_expires_at=doc["secret_expires_at"])
    return None


class UserTokenStore:
    """One user's view of the store: the OAuth client's `TokenStore`."""

    def __init__(self, store: EncryptedTokenStore, binding: str) -> None:
        self._store = store
        self._binding = binding

    def __repr__(self) -> str:
        return "UserTokenStore(<user>)"

    async def get_tokens(self, issuer: str, resource: str) -> TokenSet | None:
        return self._store.get_tokens(self._binding, issuer, resource)

    async def put_tokens(self, tokens: TokenSet) -> None:
        self._store.put_tokens(self._binding, tokens)

    async def delete_tokens(self, issuer: str, resource: str) -> None:
        self._store.delete_tokens(self._binding, issuer, resource)

    async def get_client(self, issuer: str) -> ClientCredentials | None:
        return self._store.get_client(self._binding, issuer)

    async def put_client(self, client: ClientCredentials) -> None:
        self._store.put_client(self._binding, client)

    async def delete_client(self, issuer: str) -> None:
        self._store.delete_client(self._binding, issuer)


__all__ = ["EncryptedTokenStore", "TokenStoreError", "UserTokenStore", "derive_key"]
