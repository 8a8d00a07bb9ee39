"""Bastion's tamper-evident audit trail: hash-chained records, Ed25519-signed checkpoints,
a batching writer off the hot path into SQLite or PostgreSQL, verification (`bastion audit
verify`), queries and SIEM exports (JSON Lines, CEF)."""

from bastion.audit.chain import AuditRecordError, canonical, genesis, link
from bastion.audit.factory import open_audit_log, open_reader, open_store
from bastion.audit.postgres import PostgresReader, PostgresStore, mask_dsn
from bastion.audit.query import AuditQueryError, RecordQuery, StoredRecord, parse_time
from bastion.audit.signing import (
    SIGNING_KEY_FILE,
    AuditKeyError,
    Checkpoint,
    load_or_create_signing_key,
    parse_public_key,
    public_key_pem,
    public_key_raw_b64,
)
from bastion.audit.store import (
    AuditReader,
    AuditStore,
    AuditStoreError,
    SQLiteReader,
    SQLiteStore,
)
from bastion.audit.verify import AuditProblem, VerifyReport, verify_database, verify_store
from bastion.audit.writer import MAX_RECORD_BYTES, AuditClosedError, AuditLog, FullPolicy

__all__ = [
    "MAX_RECORD_BYTES", "SIGNING_KEY_FILE", "AuditClosedError", "AuditKeyError", "AuditLog",
    "AuditProblem", "AuditQueryError", "AuditReader", "AuditRecordError", "AuditStore",
    "AuditStoreError", "Checkpoint", "FullPolicy", "PostgresReader", "PostgresStore",
    "RecordQuery", "SQLiteReader", "SQLiteStore", "StoredRecord", "VerifyReport", "canonical",
    "genesis", "link", "load_or_create_signing_key", "mask_dsn", "open_audit_log",
    "open_reader", "open_store", "parse_public_key", "parse_time", "public_key_pem",
    "public_key_raw_b64", "verify_database", "verify_store",
]
