"""The JWKS cache against a real identity provider: discovery, rotation, rate limits, caps.

The cache's clock is a plain counter the test moves, so "30 seconds later" takes no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from joserfc.jwk import OctKey, RSAKey

from bastion.config.auth import ClaimsConfig, check_fetch_url
from bastion.guard.identity import (
    InvalidToken,
    JwksCache,
    KeysUnavailable,
    TokenVerifier,
    TrustedIssuer,
)
from bastion.guard.identity.jwks import MAX_STALE, REFETCH_INTERVAL, metadata_urls, parse_jwks
from bastion.transport.http.h1client import HTTPClient
from tests.identity.conftest import RESOURCE, Idp, key

pytestmark = pytest.mark.timeout(20)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[HTTPClient]:
    client = HTTPClient(connect_timeout=5)
    yield client
    await client.aclose()


def verifier_for(idp: Idp, cache: JwksCache) -> TokenVerifier:
    issuer = TrustedIssuer(idp.issuer, cache, frozenset({"RS256", "ES256", "EdDSA"}),
                           frozenset({RESOURCE}))
    return TokenVerifier([issuer], claims=ClaimsConfig(), leeway=30)


def cache_for(idp: Idp, http: HTTPClient, clock: Clock, *, discover: bool = False) -> JwksCache:
    return JwksCache(idp.issuer, http, jwks_uri=None if discover else idp.jwks_uri,
                     allow_insecure_loopback=True, clock=clock)


async def test_SPEC_TP_03_unknown_kid_refetches_once_then_refuses(idp, http):
    clock = Clock()
    cache = cache_for(idp, http, clock)
    verifier = verifier_for(idp, cache)
    assert (await verifier.verify(idp.mint())).subject == "alice"
    assert idp.requests["jwks"] == 1
    stranger = key("rsa9")
    clock.now += REFETCH_INTERVAL + 1
    with pytest.raises(InvalidToken, match="unknown kid"):
        await verifier.verify(idp.mint(stranger))
    assert idp.requests["jwks"] == 2  # one refetch for the unknown kid
    # A flood of unknown kids within 30 s: refused from the cache, no more fetches.
    tokens = [idp.mint(stranger, header={"kid": f"random-{i}"}) for i in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens),
                                   return_exceptions=True)
    assert all(isinstance(result, InvalidToken) for result in results)
    assert idp.requests["jwks"] == 2
    clock.now += REFETCH_INTERVAL + 1
    with pytest.raises(InvalidToken):
        await verifier.verify(idp.mint(stranger))
    assert idp.requests["jwks"] == 3


async def test_SPEC_TP_03_a_real_key_rotation_is_picked_up(idp, http):
    clock = Clock()
    cache = cache_for(idp, http, clock)
    verifier = verifier_for(idp, cache)
    assert await verifier.verify(idp.mint(key("rsa1")))
    idp.keys = [key("rsa2"), key("ec1")]  # rotated: rsa1 withdrawn
    clock.now += REFETCH_INTERVAL + 1
    assert (await verifier.verify(idp.mint(key("rsa2")))).subject == "alice"
    assert (await verifier.verify(idp.mint(key("ec1"), sub="bob"))).subject == "bob"
    assert idp.requests["jwks"] == 2
    with pytest.raises(InvalidToken):
        await verifier.verify(idp.mint(key("rsa1"), sub="carol"))


async def test_keys_are_refreshed_after_their_max_age(idp, http):
    idp.cache_control = "public, max-age=120"
    clock = Clock()
    cache = cache_for(idp, http, clock)
    await cache.key_for("rsa1", "RS256")
    clock.now += 100
    await cache.key_for("rsa1", "RS256")
    assert idp.requests["jwks"] == 1
    clock.now += 30
    await cache.key_for("rsa1", "RS256")
    assert idp.requests["jwks"] == 2


async def test_stale_keys_serve_through_an_outage_then_fail_closed(idp, http):
    clock = Clock()
    cache = cache_for(idp, http, clock)
    await cache.key_for("rsa1", "RS256")
    idp.jwks_status = 503
    clock.now += 7200
    assert await cache.key_for("rsa1", "RS256")  # refresh failed, old keys still in use
    assert idp.requests["jwks"] == 2
    clock.now += MAX_STALE
    with pytest.raises(KeysUnavailable, match="cannot be fetched"):
        await cache.key_for("rsa1", "RS256")


async def test_unreachable_issuer_fails_closed(http):
    clock = Clock()
    cache = JwksCache("http://127.0.0.1:9", http, jwks_uri="http://127.0.0.1:9/jwks",
                      allow_insecure_loopback=True, clock=clock)
    with pytest.raises(KeysUnavailable):
        await cache.key_for("rsa1", "RS256")


async def test_SPEC_AUTH_07_jwks_uri_is_discovered_from_the_issuer_metadata(idp, http):
    cache = cache_for(idp, http, Clock(), discover=True)
    assert await cache.key_for("rsa1", "RS256")
    assert idp.requests["/.well-known/oauth-authorization-server"] == 1
    assert cache.jwks_uri == idp.jwks_uri


@pytest.mark.parametrize(("metadata", "reason"), [
    ({"issuer": "https://honest.example"}, "another issuer"),  # SPEC-AUTH-07
    ({"jwks_uri": "http://keys.example/jwks"}, "must be an https URL"),  # SPEC-SSRF-01
    ({"jwks_uri": None}, "names no jwks_uri"),
])
async def test_SPEC_AUTH_07_unusable_issuer_metadata_is_refused(idp, http, metadata, reason):
    idp.metadata = metadata
    cache = cache_for(idp, http, Clock(), discover=True)
    with pytest.raises(KeysUnavailable):
        await cache.key_for("rsa1", "RS256")
    assert reason in (cache.last_error or "")
    assert idp.requests["jwks"] == 0


def test_SPEC_SSRF_01_fetch_urls_are_https_or_opted_in_loopback():
    assert check_fetch_url("https://idp.example/jwks", allow_insecure_loopback=False)
    assert check_fetch_url("http://127.0.0.1:1/jwks", allow_insecure_loopback=True)
    assert check_fetch_url("http://[::1]:1/jwks", allow_insecure_loopback=True)
    for url, allow in [("http://127.0.0.1/jwks", False), ("http://idp.example/jwks", True),
                       ("http://169.254.169.254/", True), ("https://u:p@idp.example/", False),
                       ("https://idp.example/#x", False), ("file:///etc/passwd", True),
                       ("https:///nohost", False)]:
        with pytest.raises(ValueError):
            check_fetch_url(url, allow_insecure_loopback=allow)


def test_metadata_urls_follow_the_discovery_order():
    assert metadata_urls("https://idp.example/tenant") == [
        "https://idp.example/.well-known/oauth-authorization-server/tenant",
        "https://idp.example/.well-known/openid-configuration/tenant",
        "https://idp.example/tenant/.well-known/openid-configuration"]
    assert metadata_urls("https://idp.example") == [
        "https://idp.example/.well-known/oauth-authorization-server",
        "https://idp.example/.well-known/openid-configuration"]


async def test_oversized_or_malformed_jwks_is_refused(idp, http):
    idp.jwks_body = b'{"keys": [' + b" " * (300 * 1024) + b"]}"
    cache = cache_for(idp, http, Clock())
    with pytest.raises(KeysUnavailable, match="limit"):
        await cache.refresh()
    for body in [b"not json", b'{"nokeys": []}', b'{"keys": []}', b"[1]"]:
        idp.jwks_body = body
        with pytest.raises(KeysUnavailable):
            await cache.refresh()


@pytest.mark.filterwarnings("ignore:Key size")
def test_jwks_parsing_skips_keys_that_cannot_verify_signatures():
    weak = RSAKey.generate_key(1024, parameters={"kid": "weak"})
    secret = OctKey.generate_key(256, parameters={"kid": "oct"})
    document = {"keys": [
        secret.as_dict(), weak.as_dict(private=False),
        {**key("rsa1").as_dict(private=False), "use": "enc"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}, "junk",
        key("ec1").as_dict(private=False)]}
    assert [k.kid for k in parse_jwks(document, "test")] == ["ec1"]
    with pytest.raises(ValueError):
        parse_jwks({"keys": "no"}, "test")


async def test_token_without_kid_needs_a_single_fitting_key(idp, http):
    clock = Clock()
    verifier = verifier_for(idp, cache_for(idp, http, clock))
    assert await verifier.verify(idp.mint(header={"kid": None}))
    idp.keys = [key("rsa1"), key("rsa2")]
    clock.now += 4000
    with pytest.raises(InvalidToken, match="several"):
        await verifier.verify(idp.mint(header={"kid": None}, sub="bob"))


async def test_verified_token_cache_ends_at_expiry_and_is_bounded(idp, http):
    clock = Clock()
    cache = cache_for(idp, http, clock)
    issuer = TrustedIssuer(idp.issuer, cache, frozenset({"RS256"}), frozenset({RESOURCE}))
    wall = Clock()
    wall.now = float(idp.claims()["iat"])
    verifier = TokenVerifier([issuer], claims=ClaimsConfig(), leeway=0, cache_size=2,
                             clock=wall)
    token = idp.mint()
    await verifier.verify(token)
    await verifier.verify(token)
    assert verifier.verifications == 1
    for name in ("bob", "carol"):  # push the first token out of the two-entry cache
        await verifier.verify(idp.mint(sub=name))
    await verifier.verify(token)
    assert verifier.verifications == 4
    wall.now += 301
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)

