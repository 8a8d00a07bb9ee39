"""From a verified token's claims to a `Principal`: configured claim paths, bounded values.

Identity providers put roles and groups in different places (`roles`, `groups`, Keycloak's
`realm_access.roles`, Entra's `scp`), so the claim paths come from the configuration and may be
dotted. Every value is bounded: a list claim holds at most 64 strings of at most 128
characters; a token exceeding that is refused rather than trimmed, because dropping a group
could also drop a deny rule that names it. RFC 8693 `act` claims become the delegation chain,
outermost (the current actor) first, at most 8 deep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bastion.config.auth import ClaimsConfig
from bastion.guard.identity.errors import InvalidToken
from bastion.protocol.principal import AuthMethod, Principal

MAX_VALUES = 64
MAX_VALUE_LENGTH = 128
MAX_IDENTIFIER_LENGTH = 512
MAX_DELEGATION_DEPTH = 8
#: Extra scalar claims handed to the policy as `Principal.attributes`.
MAX_ATTRIBUTES = 32
#: Claims that are already part of the principal, or mean nothing to a policy.
_STANDARD_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "act", "azp",
                              "client_id", "scope", "scp", "roles", "groups", "cnf"})


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def first_claim(claims: Mapping[str, Any], paths: tuple[str, ...]) -> Any:
    """The value at the first of `paths` that is present."""
    for path in paths:
        value = claim_at(claims, path)
        if value is not None:
            return value
    return None


def string_set(value: Any, what: str, *, split: bool = False) -> frozenset[str]:
    """A bounded set of strings from a string (split on spaces when `split`) or a list."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: list[Any] = value.split() if split else [value]
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidToken(f"the token's {what} claim must be a string or a list of strings")
    if len(items) > MAX_VALUES:
        raise InvalidToken(f"the token carries more than {MAX_VALUES} {what}")
    for item in items:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_VALUE_LENGTH:
            raise InvalidToken(f"the token's {what} must be strings of 1 to "
                               f"{MAX_VALUE_LENGTH} characters")
    return frozenset(items)


def identifier(value: Any, what: str, *, required: bool = False) -> str | None:
    """A bounded, non-empty string claim (`sub`, `jti`, a client id), or None."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IDENTIFIER_LENGTH:
        raise InvalidToken(f"the token's {what} must be a string of 1 to "
                           f"{MAX_IDENTIFIER_LENGTH} characters")
    return value


def delegation_chain(act: Any) -> tuple[str, ...]:
    """The actors of nested RFC 8693 `act` claims, outermost first."""
    chain: list[str] = []
    while act is not None:
        if len(chain) == MAX_DELEGATION_DEPTH:
            raise InvalidToken(f"the token's delegation chain (act) is deeper than "
                               f"{MAX_DELEGATION_DEPTH}")
        if not isinstance(act, Mapping):
            raise InvalidToken("the token's act claim must be an object with a sub")
        actor = identifier(act.get("sub"), "act.sub", required=True)
        assert actor is not None
        chain.append(actor)
        act = act.get("act")
    return tuple(chain)


def _attributes(claims: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, value in claims.items():
        if len(attributes) == MAX_ATTRIBUTES:
            break
        if name in _STANDARD_CLAIMS or len(name) > MAX_VALUE_LENGTH:
            continue
        if isinstance(value, bool | int | float) or (
                isinstance(value, str) and len(value) <= MAX_IDENTIFIER_LENGTH):
            attributes[name] = value
    return attributes


def principal_from_claims(claims: Mapping[str, Any], paths: ClaimsConfig, *, issuer: str,
                          method: AuthMethod) -> Principal:
    """The principal a verified token speaks for (`InvalidToken` if its claims are unusable)."""
    subject = identifier(claims.get("sub"), "sub (subject)", required=True)
    assert subject is not None
    client_id = identifier(first_claim(claims, paths.paths("client_id")), "client id")
    metadata_url = None
    if client_id is not None and client_id.startswith("https://") and urlsplit(client_id).hostname:
        metadata_url = client_id
    scope_value = first_claim(claims, paths.paths("scope"))
    exp = claims.get("exp")
    return Principal(
        subject=subject, issuer=issuer, method=method, client_id=client_id,
        client_metadata_url=metadata_url,
        roles=string_set(first_claim(claims, paths.paths("roles")), "roles"),
        groups=string_set(first_claim(claims, paths.paths("groups")), "groups"),
        scopes=string_set(scope_value, "scopes", split=isinstance(scope_value, str)),
        delegation=delegation_chain(claims.get("act")),
        credential_id=identifier(claims.get("jti"), "jti"),
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        attributes=_attributes(claims))
