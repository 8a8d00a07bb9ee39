"""JWT access tokens through the authenticator, against a real identity provider on loopback.

Every refusal is a 401 `invalid_token` (400 `invalid_request` for a malformed header) whose
challenge points at the metadata and never repeats the token (SPEC-TP-01/03/04, SPEC-AUTH-02).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from bastion.config.auth import AuthConfig
from bastion.guard.identity import Authenticator, build_authenticator
from bastion.transport.http.auth import AuthChallenge
from tests.identity.conftest import RESOURCE, Idp, key
from tests.identity.helpers import forge, refused

pytestmark = pytest.mark.timeout(20)
METADATA = "https://gw.example.com/.well-known/oauth-protected-resource/mcp"


def jwt_config(idp: Idp, **overrides: Any) -> AuthConfig:
    issuer = {"issuer": idp.issuer, "jwks_uri": idp.jwks_uri,
              "audiences": ["urn:extra-audience"], **overrides.pop("issuer", {})}
    return AuthConfig.model_validate({
        "mode": "jwt", "resource": RESOURCE, "issuers": [issuer], "leeway": 30,
        "allow_insecure_loopback": True, "required_scopes": ["mcp:tools"],
        "scopes_supported": ["mcp:tools", "edr:write"], **overrides})


@pytest.fixture
async def auth(idp: Idp, tmp_path) -> AsyncIterator[Authenticator]:
    authenticator = build_authenticator(jwt_config(idp), resource_url=RESOURCE,
                                        state_dir=tmp_path)
    assert authenticator is not None
    await authenticator.start()
    yield authenticator
    await authenticator.aclose()


async def accept(auth: Authenticator, token: str) -> Any:
    return await auth.authenticate({"authorization": f"Bearer {token}"}, b"")


async def test_valid_token_gives_the_principal_it_speaks_for(auth, idp):
    token = idp.mint(jti="jti-42", act={"sub": "agent-runner", "act": {"sub": "orchestrator"}},
                     tenant="blue")
    principal = await accept(auth, token)
    assert (principal.subject, principal.issuer, principal.method) == ("alice", idp.issuer, "jwt")
    assert principal.client_id == "agent-1" and principal.client_metadata_url is None
    assert principal.roles == {"analyst"} and principal.scopes == {"mcp:tools"}
    assert principal.delegation == ("agent-runner", "orchestrator")
    assert principal.credential_id == "jti-42"
    assert principal.expires_at == idp.claims()["exp"]
    assert principal.attributes == {"tenant": "blue"}
    assert idp.requests["jwks"] == 1  # fetched once at start, not per request


async def test_SPEC_AUTH_02_missing_token_is_401_with_metadata_and_scope(auth):
    _, params = await refused(auth, error=None)
    assert params == {"resource_metadata": METADATA, "scope": "mcp:tools"}
    _, params = await refused(auth, authorization="", error=None)
    assert "error" not in params


async def test_SPEC_TP_03_expired_token_is_401(auth, idp):
    now = int(time.time())
    _, params = await refused(auth, idp.mint(exp=now - 31, iat=now - 400))
    assert "expired" in params["error_description"]
    assert params["resource_metadata"] == METADATA


async def test_SPEC_TP_03_expiry_within_the_leeway_is_accepted(auth, idp):
    now = int(time.time())
    assert (await accept(auth, idp.mint(exp=now - 10, iat=now - 400))).subject == "alice"


async def test_SPEC_TP_03_not_yet_valid_and_future_iat_are_401(auth, idp):
    now = int(time.time())
    _, params = await refused(auth, idp.mint(nbf=now + 120))
    assert "nbf" in params["error_description"]
    _, params = await refused(auth, idp.mint(iat=now + 120))
    assert "iat" in params["error_description"]


async def test_SPEC_TP_03_missing_exp_or_sub_is_401(auth, idp):
    _, params = await refused(auth, idp.mint(exp=None))
    assert "exp" in params["error_description"]
    _, params = await refused(auth, idp.mint(sub=None))
    assert "sub" in params["error_description"]
    await refused(auth, idp.mint(exp="tomorrow"))
    await refused(auth, idp.mint(exp=True))


async def test_SPEC_TP_01_wrong_audience_is_401(auth, idp):
    _, params = await refused(auth, idp.mint(aud="https://other.example"))
    assert "another resource" in params["error_description"]
    await refused(auth, idp.mint(aud=None))
    await refused(auth, idp.mint(aud=["https://other.example", "https://third.example"]))


async def test_SPEC_TP_01_token_minted_for_another_resource_of_the_same_host_is_401(auth, idp):
    await refused(auth, idp.mint(aud="https://gw.example.com/other-mcp"))
    await refused(auth, idp.mint(aud="https://gw.example.com"))


async def test_SPEC_TP_01_audience_array_and_configured_extra_audience_are_accepted(auth, idp):
    assert await accept(auth, idp.mint(aud=["https://other.example", RESOURCE]))
    assert await accept(auth, idp.mint(aud="urn:extra-audience"))


async def test_SPEC_TP_03_wrong_issuer_is_401(auth, idp):
    # Signed by the trusted key, but claiming another issuer.
    _, params = await refused(auth, idp.mint(iss="https://evil.example"))
    assert "issuer" in params["error_description"]
    await refused(auth, idp.mint(iss=idp.issuer + "/"))  # exact match only


async def test_SPEC_TP_03_alg_none_is_401(auth, idp):
    token = forge({"alg": "none", "typ": "JWT"}, idp.claims())
    _, params = await refused(auth, token)
    assert "algorithm" in params["error_description"]
    await refused(auth, token.rstrip("."))  # without the empty signature: not a JWS at all


async def test_SPEC_TP_03_hs256_signed_with_the_rsa_public_key_is_401(auth, idp):
    signer = key("rsa1")
    assert isinstance(signer, RSAKey)
    pem = signer.as_pem(private=False)
    token = forge({"alg": "HS256", "kid": "rsa1", "typ": "JWT"}, idp.claims(), secret=pem)
    _, params = await refused(auth, token)
    assert "algorithm" in params["error_description"]


async def test_SPEC_TP_03_algorithm_outside_the_issuers_allow_list_is_401(idp, tmp_path):
    idp.keys = [key("rsa1"), key("ec1")]
    authenticator = build_authenticator(jwt_config(idp, issuer={"algorithms": ["RS256"]}),
                                        resource_url=RESOURCE, state_dir=tmp_path)
    await authenticator.start()
    try:
        assert await accept(authenticator, idp.mint(key("rsa1")))
        _, params = await refused(authenticator, idp.mint(key("ec1")))
        assert "ES256" in params["error_description"]
    finally:
        await authenticator.aclose()


async def test_SPEC_TP_03_tampered_payload_is_401(auth, idp):
    header, _, signature = idp.mint().split(".")
    other = idp.mint(sub="mallory").split(".")[1]
    _, params = await refused(auth, f"{header}.{other}.{signature}")
    assert "signature" in params["error_description"]


async def test_SPEC_TP_03_token_from_a_key_the_issuer_does_not_publish_is_401(auth, idp):
    # Same kid as the published key, different key material.
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa1"})
    await refused(auth, idp.mint(impostor))


async def test_SPEC_TP_03_crit_b64_and_foreign_typ_headers_are_401(auth, idp):
    _, params = await refused(auth, idp.mint(header={"crit": ["kid"]}))
    assert "crit" in params["error_description"]
    await refused(auth, idp.mint(header={"typ": "secevent+jwt"}))
    assert await accept(auth, idp.mint(header={"typ": "JWT"}))
    assert await accept(auth, idp.mint(header={"typ": None}))


async def test_SPEC_TP_03_garbage_and_encrypted_tokens_are_401(auth):
    for token in ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "a.b.c.d.e",
                  "eyJ.eyJ.sig"]:
        await refused(auth, token)


async def test_SPEC_TP_03_malformed_authorization_header_is_400(auth, idp):
    token = idp.mint()
    for value in [f"Basic {token}", "Bearer", "Bearer ", f"Bearer {token} extra",
                  f"Bearer {token}, Bearer {token}", f"Token {token}", f'Bearer "{token}"',
                  "Bearer a\\b"]:
        await refused(auth, authorization=value, status=400, error="invalid_request")
    assert await auth.authenticate({"authorization": f"bearer   {token}"}, b"")


async def test_SPEC_TP_04_token_in_the_query_string_is_401(auth, idp):
    token = idp.mint()
    for query in [f"access_token={token}".encode(), f"a=1&access_token={token}".encode(),
                  b"access_token=", f"access%5Ftoken={token}".encode()]:
        challenge, params = await refused(auth, query=query, error="invalid_request")
        assert "Authorization header" in params["error_description"]
        assert token not in challenge.www_authenticate
    # Even alongside a valid header.
    with pytest.raises(Exception, match="URL"):
        await auth.authenticate({"authorization": f"Bearer {token}"},
                                f"access_token={token}".encode())
    assert await auth.authenticate({"authorization": f"Bearer {token}"}, b"x=access_token")


async def test_SPEC_TP_03_oversized_token_is_refused_unparsed(auth, idp):
    token = idp.mint(padding="x" * 9000)
    challenge, _ = await refused(auth, token, status=400, error="invalid_request")
    assert "longer than" in challenge.message


async def test_SPEC_AUTH_02_required_scope_missing_is_403(auth, idp):
    _, params = await refused(auth, idp.mint(scope="other"), status=403,
                                      error="insufficient_scope")
    assert params["scope"] == "mcp:tools" and params["resource_metadata"] == METADATA


async def test_verified_tokens_are_cached_until_they_expire(auth, idp):
    token = idp.mint()
    first = await accept(auth, token)
    assert auth.tokens is not None
    before = auth.tokens.verifications
    for _ in range(50):
        assert await accept(auth, token) is first
    assert auth.tokens.verifications == before


async def test_claims_are_bounded(auth, idp):
    _, params = await refused(auth, idp.mint(roles=[f"r{i}" for i in range(65)]))
    assert "more than 64" in params["error_description"]
    await refused(auth, idp.mint(roles=["x" * 129]))
    await refused(auth, idp.mint(roles={"admin": True}))
    await refused(auth, idp.mint(sub="s" * 513))
    deep: dict[str, Any] = {"sub": "a9"}
    for depth in range(8, -1, -1):
        deep = {"sub": f"a{depth}", "act": deep}
    await refused(auth, idp.mint(act=deep))
    await refused(auth, idp.mint(act={"client": "x"}))


async def test_SPEC_AUTH_12_tokens_never_reach_the_logs(auth, idp, caplog):
    now = int(time.time())
    tokens = [idp.mint(), idp.mint(exp=now - 100), idp.mint(aud="https://other.example"),
              idp.mint(key("rsa9")), forge({"alg": "none"}, idp.claims())]
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            with contextlib.suppress(AuthChallenge):
                await accept(auth, token)
    for token in tokens:
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text or not token.split(".")[2]
