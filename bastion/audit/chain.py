"""The hash chain of the audit trail: canonical JSON and the SHA-256 links between records.

A record is any JSON object. Its stored body is the canonical JSON (orjson, sorted keys) of
the record with its `instance` and `seq`, so the hash covers every stored field:
`hash = SHA-256(prev || body)`; the first record of an instance chains from a genesis value
derived from the instance id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

HASH_BYTES = 32
_GENESIS_PREFIX = b"bastion-audit-genesis\n"


class AuditRecordError(ValueError):
    """A record cannot be stored: it is not a JSON object or cannot be serialised."""


def canonical(value: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of a JSON object: sorted keys, no whitespace, UTF-8."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise AuditRecordError(f"an audit record must hold JSON values only: {exc}") from None


def genesis(instance: str) -> bytes:
    """The `prev` of an instance's first record."""
    return hashlib.sha256(_GENESIS_PREFIX + instance.encode()).digest()


def link(prev: bytes, body: bytes) -> bytes:
    """The hash of a record whose canonical body is `body` and whose predecessor is `prev`."""
    return hashlib.sha256(prev + body).digest()
