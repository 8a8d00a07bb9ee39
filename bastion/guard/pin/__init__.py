"""Pinning of tool, prompt and resource-template definitions: the rug-pull defence.

Every definition an upstream offers is digested in canonical form (`canonical`), compared
with the definition approved for the same item of the same server (`checker`, over the
SQLite `store`), and quarantined when it is new (unless trusted on first use), changed,
renamed or revoked, until someone approves it again (`bastion pin approve`); `diff` shows a
reviewer what changed, hidden characters included.
"""

from bastion.guard.pin.canonical import (
    INSTRUCTIONS_NAME,
    LIST_KINDS,
    CanonicalError,
    PinDigest,
    canonical_json,
    digest,
    instructions_definition,
    item_name,
)
from bastion.guard.pin.checker import PinChecker, PinStatus, PinVerdict
from bastion.guard.pin.diff import Change, diff_definitions, visible
from bastion.guard.pin.store import PinRecord, PinStore, PinStoreError, server_identity

__all__ = [
    "INSTRUCTIONS_NAME",
    "LIST_KINDS",
    "CanonicalError",
    "Change",
    "PinChecker",
    "PinDigest",
    "PinRecord",
    "PinStatus",
    "PinStore",
    "PinStoreError",
    "PinVerdict",
    "canonical_json",
    "diff_definitions",
    "digest",
    "instructions_definition",
    "item_name",
    "server_identity",
    "visible",
]
