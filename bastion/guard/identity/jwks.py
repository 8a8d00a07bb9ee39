"""An identity provider's signing keys: fetched (JWKS, RFC 7517), cached, refreshed, bounded.

`JwksCache` holds one issuer's public keys. It fetches them with Bastion's own HTTP client
(https only, or http on loopback when the configuration allows it; no redirects followed; the
document capped at 256 KiB; every wait bounded) from the configured `jwks_uri` or from the
one the issuer's metadata names (RFC 8414 path-inserted, then OpenID Connect discovery
path-inserted and path-appended; the metadata's `issuer` must be exactly the configured one,
SPEC-AUTH-07).

Refreshing: keys are kept for the response's `Cache-Control: max-age` (clamped to 1 min..1 day,
1 h without one); one request refreshes expired keys while the others go on with the current
ones. A token naming a key that is not in the set (an unknown `kid`) triggers one
refetch, so a real key rotation is picked up at once, but fetches of any kind happen at most
once per 30 s per issuer: a flood of tokens with random kids cannot make Bastion hammer the
identity provider, they are refused from the cache. When a refresh fails the old keys stay in
use for up to a day (an identity provider outage does not lock everyone out), then nothing is
accepted (fail closed).

`StaticKeys` is the same interface over keys known in advance (the development issuer).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from bastion.config.auth import check_fetch_url
from bastion.guard.identity.errors import InvalidToken, KeysUnavailable
from bastion.transport.http.h1client import HTTPClient, HTTPClientError

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 256 * 1024
#: More keys than any identity provider publishes; the rest are ignored.
MAX_KEYS = 64
#: The least time between two fetches of one issuer's keys (or metadata), in seconds.
REFETCH_INTERVAL = 30.0
DEFAULT_MAX_AGE = 3600.0
MIN_MAX_AGE, MAX_MAX_AGE = 60.0, 86400.0
#: How long keys stay in use while refreshes fail.
MAX_STALE = 86400.0
FETCH_READ_TIMEOUT = 5.0
FETCH_TOTAL_TIMEOUT = 10.0
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d{1,9})", re.IGNORECASE)

#: The key type (and curve) each algorithm signs with.
_KEY_FITS: dict[str, tuple[type[Key], str | None]] = {
    **{f"{family}{bits}": (RSAKey, None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": (ECKey, "P-256"), "ES384": (ECKey, "P-384"), "ES512": (ECKey, "P-521"),
    "Ed25519": (OKPKey, "Ed25519"), "Ed448": (OKPKey, "Ed448"), "EdDSA": (OKPKey, None),
}


class KeySource(Protocol):
    """Where a verifier gets the public key for a token's `kid` and `alg`."""

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key, or `InvalidToken` (unknown kid) / `KeysUnavailable`."""
        ...


def _fits(key: Key, alg: str) -> bool:
    kind, curve = _KEY_FITS.get(alg, (None, None))
    if kind is None or not isinstance(key, kind):
        return False
    if curve is not None and key.get("crv") != curve:
        return False
    if isinstance(key, OKPKey) and key.get("crv") not in ("Ed25519", "Ed448"):
        return False  # X25519/X448 are key-agreement keys
    declared = key.get("alg")
    return declared is None or declared == alg


def select_key(keys: Sequence[Key], kid: str | None, alg: str) -> Key | None:
    """The key for `kid` that can verify `alg`; without a kid, the only such key."""
    fitting = [key for key in keys if _fits(key, alg)]
    if kid is not None:
        return next((key for key in fitting if key.kid == kid), None)
    if len(fitting) > 1:
        raise InvalidToken("the token names no signing key (kid) and the issuer publishes "
                           "several; the identity provider must set kid")
    return fitting[0] if fitting else None


def parse_jwks(document: Any, source: str) -> list[Key]:
    """The usable signature-verification keys of a JWKS document; ValueError if it is none.

    Keys that cannot verify signatures (`use` other than `sig`, symmetric `oct` keys, unknown
    types) are skipped rather than failing the set: one odd key must not disable the rest.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{source} is not a JWK Set (no `keys` array)")
    keys: list[Key] = []
    for entry in document["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # `oct` would be a shared secret: never a verification key here
        try:
            with warnings.catch_warnings():  # a weak key is refused below, not warned about
                warnings.simplefilter("ignore", SecurityWarning)
                key = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError):
            log.warning("ignoring a malformed %s key in %s", entry.get("kty"), source)
            continue
        if isinstance(key, RSAKey) and key.raw_value.key_size < 2048:
            log.warning("ignoring an RSA key shorter than 2048 bits in %s", source)
            continue
        keys.append(key)
    return keys


class StaticKeys:
    """A fixed set of keys (the development issuer's), same interface as `JwksCache`."""

    def __init__(self, keys: Sequence[Key]) -> None:
        self._keys = list(keys)

    async def key_for(self, kid: str | None, alg: str) -> Key:
        key = select_key(self._keys, kid, alg)
        if key is None:
            raise InvalidToken("the token was not signed by this gateway's development issuer "
                               "key; mint a new one with `bastion dev-token`")
        return key


class JwksCache:
    """One issuer's signing keys (see the module doc)."""

    def __init__(self, issuer: str, http: HTTPClient, *, jwks_uri: str | None = None,
                 allow_insecure_loopback: bool = False,
                 refetch_interval: float = REFETCH_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self._http = http
        self._insecure_loopback = allow_insecure_loopback
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: list[Key] = []
        self._fetched_at: float | None = None
        self._fresh_until = -math.inf
        self._attempted_at = -math.inf
        self._lock = asyncio.Lock()
        #: JWKS documents fetched so far (successfully or not).
        self.fetches = 0
        #: Why the last refresh failed (for operators: clients get a generic message).
        self.last_error: str | None = None

    async def key_for(self, kid: str | None, alg: str) -> Key:
        # While one request refreshes expired keys, the others go on with the current ones.
        if self._clock() >= self._fresh_until and not (self._keys and self._lock.locked()):
            await self._refresh_if_allowed()
        if self._fetched_at is None or self._clock() - self._fetched_at > MAX_STALE:
            raise KeysUnavailable(f"the signing keys of {self.issuer} cannot be fetched right "
                                  "now; try again later")
        key = select_key(self._keys, kid, alg)
        if key is None and await self._refresh_if_allowed():
            key = select_key(self._keys, kid, alg)
        if key is None:
            raise InvalidToken("the token was signed with a key its issuer does not publish "
                               "(unknown kid)")
        return key

    async def prefetch(self) -> None:
        """Fetch the keys ahead of the first token (a failure is logged, not raised)."""
        await self._refresh_if_allowed()

    async def _refresh_if_allowed(self) -> bool:
        """Refresh unless another did while we waited or the last try is under 30 s old;
        whether the keys may have changed."""
        seen = self._attempted_at
        async with self._lock:
            if self._attempted_at != seen:
                return True  # refreshed by someone else meanwhile: look again
            if self._clock() - self._attempted_at < self._refetch_interval:
                return False
            self._attempted_at = self._clock()
            try:
                await self.refresh()
            except KeysUnavailable as exc:
                self.last_error = str(exc)
                log.warning("cannot refresh the keys of %s: %s", self.issuer, exc)
                return False
            self.last_error = None
            return True

    async def refresh(self) -> None:
        """Fetch the keys now (no rate limit); `KeysUnavailable` if that fails."""
        uri = self.jwks_uri or await self._discover()
        self.fetches += 1
        document, max_age = await self._fetch(uri)
        try:
            keys = parse_jwks(document, uri)
        except ValueError as exc:
            raise KeysUnavailable(str(exc)) from None
        if not keys:
            raise KeysUnavailable(f"{uri} holds no usable signature key")
        now = self._clock()
        self._keys, self._fetched_at = keys, now
        self._fresh_until = now + min(max(max_age, MIN_MAX_AGE), MAX_MAX_AGE)
        self.jwks_uri = uri

    async def _discover(self) -> str:
        """`jwks_uri` from the issuer's metadata (RFC 8414, then OpenID Connect)."""
        for url in metadata_urls(self.issuer):
            try:
                document, _ = await self._fetch(url)
            except KeysUnavailable as exc:
                log.debug("no authorization server metadata at %s: %s", url, exc)
                continue
            if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                raise KeysUnavailable(f"the metadata at {url} is for another issuer; refusing "
                                      f"it for {self.issuer} (SPEC-AUTH-07)")
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise KeysUnavailable(f"the metadata at {url} names no jwks_uri; set jwks_uri "
                                      "in the issuer's configuration")
            try:
                return check_fetch_url(jwks_uri, allow_insecure_loopback=self._insecure_loopback)
            except ValueError as exc:
                raise KeysUnavailable(f"the metadata at {url} names an unusable jwks_uri: "
                                      f"{exc}") from None
        raise KeysUnavailable(f"no authorization server metadata found for {self.issuer}; set "
                              "jwks_uri in the issuer's configuration")

    async def _fetch(self, url: str) -> tuple[Any, float]:
        """A JSON document and its max-age; `KeysUnavailable` on any failure."""
        try:
            check_fetch_url(url, allow_insecure_loopback=self._insecure_loopback)
            async with await self._http.request(
                    "GET", url, {"Accept": "application/json"}, read_timeout=FETCH_READ_TIMEOUT,
                    total_timeout=FETCH_TOTAL_TIMEOUT) as response:
                if response.status != 200:
                    raise KeysUnavailable(f"{url} answered HTTP {response.status}")
                body = await response.read(MAX_DOCUMENT_BYTES)
                cache_control = response.headers.get("cache-control", "")
        except (HTTPClientError, ValueError) as exc:
            raise KeysUnavailable(f"cannot fetch {url}: {exc}") from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise KeysUnavailable(f"{url} did not answer JSON") from None
        match = _MAX_AGE.search(cache_control)
        return document, float(match.group(1)) if match else DEFAULT_MAX_AGE


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order SPEC-AUTH-07 gives: RFC 8414
    path-inserted, OpenID Connect path-inserted, OpenID Connect path-appended."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(well_known_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, well_known_path, "", ""))

    candidates = [at(f"/.well-known/oauth-authorization-server{path}"),
                  at(f"/.well-known/openid-configuration{path}"),
                  at(f"{path}/.well-known/openid-configuration")]
    return list(dict.fromkeys(candidates))
