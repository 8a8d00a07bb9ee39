"""Reading a server's `WWW-Authenticate` challenge (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1).

A header may hold several challenges (`DPoP ..., Bearer ...`), each an auth scheme followed by
`name=value` parameters whose values are tokens or quoted strings. `parse_challenges` splits
them with a small scanner (no regular expression over attacker-sized input); `bearer_challenge`
picks the Bearer one and returns what the OAuth client acts on: `error`, `scope`,
`resource_metadata`. Everything is bounded: a header past `MAX_HEADER` is not read, and a
scope list past `MAX_SCOPES` entries is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEADER = 8192
MAX_SCOPES = 64
MAX_SCOPE_LENGTH = 256
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SPACE = " \t"


@dataclass(frozen=True, slots=True)
class BearerChallenge:
    """The parameters of a `Bearer` challenge that steer the client."""

    error: str | None = None
    error_description: str | None = None
    scopes: tuple[str, ...] = ()
    resource_metadata: str | None = None

    @property
    def insufficient_scope(self) -> bool:
        return self.error == "insufficient_scope"


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """`[(scheme lowercased, {param lowercased: value})]`; the first of a repeated param wins."""
    if len(header) > MAX_HEADER:
        return []
    challenges: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(header)
    while i < n:
        while i < n and (header[i] in _SPACE or header[i] == ","):
            i += 1
        start = i
        while i < n and header[i] in _TOKEN_CHARS:
            i += 1
        if i == start:  # not a token: skip the character, never loop on it
            i += 1
            continue
        name = header[start:i]
        j = i
        while j < n and header[j] in _SPACE:
            j += 1
        if j < n and header[j] == "=" and challenges and not _token68_tail(header, j):
            value, i = _value(header, j + 1)
            challenges[-1][1].setdefault(name.lower(), value)
            continue
        # A new scheme (a token68 credential after a scheme reads as one too: harmless, since
        # only the Bearer challenge is used).
        challenges.append((name.lower(), {}))
        i = j
    return challenges


def _token68_tail(header: str, j: int) -> bool:
    """`=` that pads a token68 (`abc==`) rather than starting a parameter value."""
    k = j
    while k < len(header) and header[k] == "=":
        k += 1
    return k - j > 1 or k >= len(header) or header[k] == ","


def _value(header: str, i: int) -> tuple[str, int]:
    n = len(header)
    while i < n and header[i] in _SPACE:
        i += 1
    if i < n and header[i] == '"':
        out: list[str] = []
        i += 1
        while i < n and header[i] != '"':
            if header[i] == "\\" and i + 1 < n:
                i += 1
            out.append(header[i])
            i += 1
        return "".join(out), i + 1
    start = i
    while i < n and header[i] not in _SPACE and header[i] != ",":
        i += 1
    return header[start:i], i


def bearer_challenge(header: str | None) -> BearerChallenge | None:
    """The Bearer challenge in a `WWW-Authenticate` value, or None when there is none."""
    if not header:
        return None
    for scheme, params in parse_challenges(header):
        if scheme == "bearer":
            scopes = tuple(scope for scope in params.get("scope", "").split()
                           if len(scope) <= MAX_SCOPE_LENGTH)[:MAX_SCOPES]
            return BearerChallenge(
                error=params.get("error"),
                error_description=params.get("error_description"),
                scopes=scopes,
                resource_metadata=params.get("resource_metadata"),
            )
    return None


__all__ = ["BearerChallenge", "bearer_challenge", "parse_challenges"]
