"""JWT access-token verification (RFC 9068 profile, OAuth 2.1 §5.2, SPEC-TP-01/03).

Why joserfc rather than PyJWT: joserfc keys are typed (`RSAKey`, `ECKey`, `OKPKey`, `OctKey`)
and every algorithm checks the type of the key it is given, so an RSA public key can never be
used as an HMAC secret (the HS/RS confusion attack that PyJWT had to patch twice); and its
registries take an explicit algorithm allow-list. We still check the header ourselves before
any key is touched: the algorithm must be an asymmetric one in the issuer's allow-list (never
`none`, never `HS*`), `crit` and `b64` are refused, and `typ`, if present, must say JWT. Keys
are never taken from the token (`jku`, `x5u`, `jwk` are ignored): only from the issuer's JWKS.

Then the claims: `iss` is exactly one of the configured issuers, `aud` (a string or an array)
contains this gateway's resource URL or a configured extra audience, `exp` is required, `exp`,
`nbf` and `iat` are checked with the configured leeway, and `sub` is required.

Verified tokens are cached by their SHA-256 (a bounded LRU, 10 000 entries) until they expire,
so the hot path does not verify a signature on every request. The cost: a key the identity
provider withdraws keeps the tokens it signed valid until they expire (they are short-lived).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jws import (
    CompactSignature,
    JWSAlgModel,
    JWSRegistry,
    extract_compact,
    validate_compact,
)

from bastion.config.auth import ASYMMETRIC_ALGORITHMS, ClaimsConfig
from bastion.guard.identity.claims import principal_from_claims
from bastion.guard.identity.errors import InvalidToken
from bastion.guard.identity.jwks import KeySource
from bastion.protocol.principal import AuthMethod, Principal

#: Larger tokens are refused before any parsing (real access tokens are 1-2 KiB).
MAX_TOKEN_BYTES = 8192
CACHE_SIZE = 10_000
_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_MAX_KID = 256


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer whose tokens are accepted: its keys, algorithms and accepted audiences."""

    issuer: str
    keys: KeySource
    algorithms: frozenset[str]
    audiences: frozenset[str]
    method: AuthMethod = "jwt"


class _AllowList(JWSRegistry):
    """A registry that knows only the algorithms it was given (and never warns about them:
    the choice was made in the configuration)."""

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"algorithm {name!r} is not allowed")
        return self.algorithms[name]


#: One registry per algorithm; `strict_check_header=False` since identity providers add
#: their own header fields (Entra's `nonce`), which change nothing here.
_REGISTRIES = {name: _AllowList(algorithms=[name], strict_check_header=False)
               for name in ASYMMETRIC_ALGORITHMS}


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"the token's {name} claim must be a number (seconds since 1970)")
    return float(value)


class TokenVerifier:
    """Verifies JWTs from trusted issuers and turns them into principals (see module doc)."""

    def __init__(self, issuers: Iterable[TrustedIssuer], *, claims: ClaimsConfig,
                 leeway: float, cache_size: int = CACHE_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self._issuers = {entry.issuer: entry for entry in issuers}
        self._claims = claims
        self._leeway = leeway
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        #: Signatures verified so far (cache misses that got as far as a key).
        self.verifications = 0

    async def verify(self, token: str) -> Principal:
        """The principal behind `token`, or `InvalidToken` saying why it is not accepted."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            if now < cached[1]:
                self._cache.move_to_end(digest)
                return cached[0]
            del self._cache[digest]
        principal, valid_until = await self._verify(token, now)
        self._cache[digest] = (principal, valid_until)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str, now: float) -> tuple[Principal, float]:
        signed = _parse(token)
        header = signed.headers()
        alg = header["alg"]
        claims = _claims(signed)
        issuer = claims.get("iss")
        trusted = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if trusted is None:
            raise InvalidToken("the token's issuer (iss) is not trusted by this gateway")
        if alg not in trusted.algorithms:
            raise InvalidToken(f"the token's signature algorithm {alg} is not accepted from "
                               "its issuer")
        key = await trusted.keys.key_for(header.get("kid"), alg)
        self.verifications += 1
        try:
            valid = validate_compact(signed, key, registry=_REGISTRIES[alg])
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the token's signature cannot be checked ({type(exc).__name__})"
                               ) from None
        if not valid:
            raise InvalidToken("the token's signature is invalid")
        expires = self._check_times(claims, now)
        self._check_audience(claims, trusted)
        principal = principal_from_claims(claims, self._claims, issuer=trusted.issuer,
                                          method=trusted.method)
        return principal, expires + self._leeway

    def _check_times(self, claims: Mapping[str, Any], now: float) -> float:
        expires = _number(claims, "exp")
        if expires is None:
            raise InvalidToken("the token has no expiry (exp); Bastion accepts only "
                               "short-lived tokens")
        if now > expires + self._leeway:
            raise InvalidToken("the token has expired; get a new one")
        not_before = _number(claims, "nbf")
        if not_before is not None and now + self._leeway < not_before:
            raise InvalidToken("the token is not valid yet (nbf); check the clocks")
        issued = _number(claims, "iat")
        if issued is not None and now + self._leeway < issued:
            raise InvalidToken("the token was issued in the future (iat); check the clocks")
        return expires

    @staticmethod
    def _check_audience(claims: Mapping[str, Any], trusted: TrustedIssuer) -> None:
        audience = claims.get("aud")
        values = [audience] if isinstance(audience, str) else audience
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidToken("the token names no audience (aud); it must be issued for this "
                               "gateway's resource URL (RFC 8707)")
        if trusted.audiences.isdisjoint(values):
            raise InvalidToken("the token was issued for another resource (aud); request it "
                               "with this gateway's resource URL (RFC 8707)")


def _parse(token: str) -> CompactSignature:
    """The token's JWS parts, after the header checks that need no key."""
    if token.count(".") != 2:
        raise InvalidToken("the token is not a signed JWT (encrypted tokens are not accepted)")
    try:
        signed = extract_compact(token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise InvalidToken("the token is not a well-formed JWT") from None
    header = signed.headers()
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
        raise InvalidToken("the token's signature algorithm is not accepted (only asymmetric "
                           "algorithms are; never none or HMAC)")
    if "crit" in header or "b64" in header:
        raise InvalidToken("tokens with critical header extensions (crit, b64) are not accepted")
    kind = header.get("typ")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in _TYPES):
        raise InvalidToken("the token's type (typ) is not an access token JWT")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID):
        raise InvalidToken("the token's key id (kid) is malformed")
    return signed


def _claims(signed: CompactSignature) -> dict[str, Any]:
    try:
        claims = orjson.loads(signed.payload or b"")
    except orjson.JSONDecodeError:
        claims = None
    if not isinstance(claims, dict):
        raise InvalidToken("the token's payload is not a JSON object of claims")
    return claims
