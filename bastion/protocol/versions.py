"""Protocol versions, the two eras, and legacy version negotiation."""

from __future__ import annotations

from enum import StrEnum


class Era(StrEnum):
    """Legacy means the `initialize` handshake; modern means per-request `_meta`."""

    LEGACY = "legacy"
    MODERN = "modern"


LEGACY_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
ALL_VERSIONS: tuple[str, ...] = LEGACY_VERSIONS + MODERN_VERSIONS
LATEST_LEGACY = LEGACY_VERSIONS[-1]
LATEST_MODERN = MODERN_VERSIONS[-1]

#: The version an HTTP server assumes when a legacy request has no MCP-Protocol-Version.
DEFAULT_LEGACY_HTTP_VERSION = "2025-03-26"


def era_of(version: str) -> Era:
    """The era of a known version. Raises ValueError for an unknown one."""
    if version in MODERN_VERSIONS:
        return Era.MODERN
    if version in LEGACY_VERSIONS:
        return Era.LEGACY
    raise ValueError(f"unknown MCP protocol version {version!r}")


def negotiate_legacy(requested: object, supported: tuple[str, ...] = LEGACY_VERSIONS) -> str:
    """The version a legacy server answers to `initialize`.

    It echoes the requested version when it supports it, otherwise it offers its latest.
    """
    if isinstance(requested, str) and requested in supported:
        return requested
    return supported[-1]


def allows_batches(version: str) -> bool:
    """JSON-RPC batches were allowed only in 2025-03-26."""
    return version == "2025-03-26"


def at_least(version: str, minimum: str) -> bool:
    """Compare two dated versions (they sort lexically)."""
    return version >= minimum
