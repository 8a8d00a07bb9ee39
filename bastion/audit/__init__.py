"""Bastion's tamper-evident audit trail: hash-chained records, Ed25519-signed checkpoints,
a batching SQLite writer off the hot path, and verification (`bastion audit verify`)."""

from bastion.audit.chain import AuditRecordError, canonical, genesis, link
from bastion.audit.signing import (
    SIGNING_KEY_FILE,
    AuditKeyError,
    Checkpoint,
    load_or_create_signing_key,
    parse_public_key,
    public_key_pem,
    public_key_raw_b64,
)
from bastion.audit.store import AuditStoreError
from bastion.audit.verify import AuditProblem, VerifyReport, verify_database
from bastion.audit.writer import MAX_RECORD_BYTES, AuditClosedError, AuditLog, FullPolicy

__all__ = [
    "MAX_RECORD_BYTES", "SIGNING_KEY_FILE", "AuditClosedError", "AuditKeyError", "AuditLog",
    "AuditProblem", "AuditRecordError", "AuditStoreError", "Checkpoint", "FullPolicy",
    "VerifyReport", "canonical", "genesis", "link", "load_or_create_signing_key",
    "parse_public_key", "public_key_pem", "public_key_raw_b64", "verify_database",
]
