"""Inbound identity: who is calling the gateway (the first guard stage).

The gateway is an OAuth 2.1 resource server. `build_authenticator` turns the `auth:`
configuration into the `Authenticator` the HTTP endpoint calls on every request: JWT access
tokens from trusted identity providers (`tokens`, keys from `jwks`), Bastion API keys
(`api_keys`), or tokens of the local development issuer (`dev_issuer`). Each accepted
credential becomes a `Principal`; each refused one an `AuthChallenge` with the
`WWW-Authenticate` header the client needs.
"""

from bastion.guard.identity.api_keys import ApiKeyError, ApiKeyRecord, ApiKeyStore, ApiKeyVerifier
from bastion.guard.identity.authenticator import Authenticator, build_authenticator
from bastion.guard.identity.dev_issuer import DEV_ISSUER, load_or_create_dev_key, mint_dev_token
from bastion.guard.identity.errors import (
    IdentityError,
    InvalidToken,
    KeysUnavailable,
    MalformedCredential,
)
from bastion.guard.identity.jwks import JwksCache, StaticKeys
from bastion.guard.identity.tokens import TokenVerifier, TrustedIssuer

__all__ = [
    "DEV_ISSUER",
    "ApiKeyError",
    "ApiKeyRecord",
    "ApiKeyStore",
    "ApiKeyVerifier",
    "Authenticator",
    "IdentityError",
    "InvalidToken",
    "JwksCache",
    "KeysUnavailable",
    "MalformedCredential",
    "StaticKeys",
    "TokenVerifier",
    "TrustedIssuer",
    "build_authenticator",
    "load_or_create_dev_key",
    "mint_dev_token",
]
