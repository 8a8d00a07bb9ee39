"""How the legacy endpoint names its sessions: random ids, or sealed tokens any replica opens.

`RandomSessionIds` (the default) issues `secrets.token_urlsafe(32)`: the session lives in
this process's memory only. `SealedSessionIds` issues an AES-256-GCM token (the
`StateSealer` of `bastion.protocol.sealed`) that carries everything needed to continue the
session: the negotiated protocol version, the client's capabilities and clientInfo, the
principal binding (a SHA-256 of the principal, or none for an anonymous client), issue time
and expiry, and `session.extra` (what an application needs again on another replica, e.g.
the upstream session ids a gateway holds for it). So any replica holding the key resumes a
session it has never seen, with no shared store (gateway-lessons §3.1).

Token: `<key id>.<base64url sealed bytes>`, visible ASCII, at most `MAX_SESSION_ID_LENGTH`
characters. Keys are raw 32-byte keys, never derived per request; the key id picks the key,
so keys rotate by listing the old one next to the new `current`. The associated data binds
the key id and a purpose string, so no other sealed token (an MRTR `requestState`, say) is
ever a valid session id.

Every request naming a session must come from the principal the session is bound to
(`binding_matches`, a constant-time compare of the binding hashes); the endpoint answers a
mismatch as it answers an unknown session (404), so nobody learns that the session exists.

Revocation: DELETE ends a sealed session on the replica that receives it, which then refuses
its id until it expires. Without a shared revocation list another replica can still resume
it from its id until then, so keep `ttl` as short as clients tolerate. A session that merely
idled out of a replica's memory is resumable (its state is in the id) until the id expires.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from bastion.protocol.errors import InvalidParams
from bastion.protocol.sealed import StateSealer

if TYPE_CHECKING:
    from bastion.transport.http.legacy_sessions import LegacySession

logger = logging.getLogger("bastion.transport.http")

#: Longest id issued: clients, proxies and load balancers cap header sizes (8 KiB is common
#: for all headers together), and the id travels on every request.
MAX_SESSION_ID_LENGTH = 4096
DEFAULT_TTL = 24 * 3600.0

_PURPOSE = b"bastion/mcp-session-id/1"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TOKEN = re.compile(r"([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16,})")


class SessionIdError(ValueError):
    """A session id could not be issued for this session (what is wrong is in the message)."""


class SessionIdTooLong(SessionIdError):
    """The sealed session would make an id longer than the limit."""

    def __init__(self, length: int, limit: int, extra_size: int) -> None:
        self.length = length
        self.limit = limit
        self.extra_size = extra_size
        super().__init__(
            f"the sealed session id would be {length} characters, over the {limit}-character "
            f"limit (it travels in a header on every request); session.extra takes "
            f"{extra_size} bytes of it: keep only short ids there")


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """What a sealed session id carries: enough to continue the session on any replica."""

    protocol_version: str
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    #: SHA-256 (hex) of the principal the session is bound to; None: anonymous.
    binding: str | None
    issued_at: float
    expires_at: float
    extra: dict[str, Any]
    key_id: str


class SessionIds(Protocol):
    """A session-id strategy of the legacy endpoint."""

    def issue(self, session: LegacySession) -> str:
        """The id of `session`, whose initialize just succeeded; sets `session.expires_at`
        when the id expires. Raises `SessionIdError` if no id can be made for it."""
        ...

    def restore(self, session_id: str, principal: str | None) -> SessionSnapshot | None:
        """The session an id this process does not hold carries, if it is one of ours, in
        force and bound to `principal`; None otherwise (the endpoint answers 404)."""
        ...

    def binding_matches(self, session: LegacySession, principal: str | None) -> bool:
        """Whether a request by `principal` may use `session` (checked on every request)."""
        ...


def principal_binding(principal: str | None) -> str | None:
    """The hash a session is bound to (None for an anonymous client)."""
    if principal is None:
        return None
    return hashlib.sha256(b"bastion-principal\x00" + principal.encode()).hexdigest()


def _same_binding(bound: str | None, principal: str | None) -> bool:
    presented = principal_binding(principal)
    if bound is None or presented is None:
        return bound is presented
    return hmac.compare_digest(bound, presented)


def binding_matches(session: LegacySession, principal: str | None) -> bool:
    """A request by `principal` may use `session` (constant-time compare of the bindings)."""
    return _same_binding(principal_binding(session.principal), principal)


def log_refused(session_id: str) -> None:
    """A session named by another principal: logged without the id in full."""
    logger.warning("refused session %s…: the request's principal is not the one the session "
                   "is bound to", session_id[:8])


class RandomSessionIds:
    """Random ids for sessions kept in this process only (a single replica)."""

    binding_matches = staticmethod(binding_matches)

    def issue(self, session: LegacySession) -> str:
        return secrets.token_urlsafe(32)

    def restore(self, session_id: str, principal: str | None) -> SessionSnapshot | None:
        return None  # a random id carries nothing: only the process that issued it knows it


class SealedSessionIds:
    """AES-256-GCM session tokens any replica holding the keys can resume (module doc).

    `keys` maps key ids (1-32 of `A-Z a-z 0-9 _ -`) to raw 32-byte keys; ids are issued
    under `current` and opened under any listed key. `ttl`: seconds an id stays valid.
    """

    binding_matches = staticmethod(binding_matches)

    def __init__(self, keys: Mapping[str, bytes], current: str, *,
                 ttl: float = DEFAULT_TTL) -> None:
        if not keys:
            raise ValueError("SealedSessionIds needs at least one key")
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {str(key_id)[:40]!r} must be 1-32 characters of "
                                 "A-Z a-z 0-9 _ -")
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 raw bytes (AES-256), not "
                                 f"{len(key) if isinstance(key, bytes) else type(key).__name__}")
        if current not in keys:
            raise ValueError(f"the current key id {current!r} is not among the keys "
                             f"({', '.join(sorted(keys))})")
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        self.current = current
        self.ttl = float(ttl)
        self._sealers = {key_id: StateSealer(key, default_ttl=self.ttl)
                         for key_id, key in keys.items()}

    def issue(self, session: LegacySession) -> str:
        lifecycle = session.lifecycle
        if lifecycle.protocol_version is None:
            raise SessionIdError("a session id is issued once initialize succeeded; this "
                                 "session has no negotiated protocol version")
        if not isinstance(session.extra, dict):
            raise SessionIdError(f"session.extra must be a dict, not "
                                 f"{type(session.extra).__name__}")
        now = time.time()
        expires = now + self.ttl
        state = {
            "v": lifecycle.protocol_version, "caps": lifecycle.client_capabilities,
            "info": lifecycle.client_info, "sub": principal_binding(session.principal),
            "iat": now, "exp": expires, "extra": session.extra,
        }
        try:
            sealed = self._sealers[self.current].seal(state, _associated(self.current))
        except TypeError as exc:  # orjson: a value (or a non-string key) it cannot encode
            raise SessionIdError(f"session.extra must be JSON (string keys): {exc}") from None
        token = f"{self.current}.{sealed}"
        if len(token) > MAX_SESSION_ID_LENGTH:
            raise SessionIdTooLong(len(token), MAX_SESSION_ID_LENGTH,
                                   len(orjson.dumps(session.extra)))
        session.expires_at = expires
        return token

    def restore(self, session_id: str, principal: str | None) -> SessionSnapshot | None:
        match = _TOKEN.fullmatch(session_id) if len(session_id) <= MAX_SESSION_ID_LENGTH else None
        sealer = self._sealers.get(match.group(1)) if match else None
        if match is None or sealer is None:
            logger.debug("session id %s… is not one of ours (format or key id)", session_id[:8])
            return None
        key_id = match.group(1)
        try:
            snapshot = _snapshot(sealer.open(match.group(2), _associated(key_id)), key_id)
        except InvalidParams:  # altered, foreign or expired (the sealer checks the expiry)
            snapshot = None
        if snapshot is None:
            logger.debug("session id %s… failed verification or expired", session_id[:8])
            return None
        if not _same_binding(snapshot.binding, principal):
            log_refused(session_id)
            return None
        return snapshot


def _associated(key_id: str) -> bytes:
    """Associated data: the purpose (so no other sealed token passes) and the key id."""
    return _PURPOSE + b"\x00" + key_id.encode("ascii")


def _snapshot(state: Any, key_id: str) -> SessionSnapshot | None:
    """The snapshot in an opened token, or None if it is not a session state."""
    try:
        version, caps, info, binding = state["v"], state["caps"], state["info"], state["sub"]
        issued, expires, extra = float(state["iat"]), float(state["exp"]), state["extra"]
    except (KeyError, TypeError, ValueError):
        return None
    if not (isinstance(version, str) and isinstance(caps, dict) and isinstance(extra, dict)
            and (info is None or isinstance(info, dict))
            and (binding is None or isinstance(binding, str))):
        return None
    return SessionSnapshot(version, caps, info, binding, issued, expires, extra, key_id)
