"""Flight recorder: an HMAC-SHA256 chain of audit records with a separately kept anchor,
and Ed25519-signed checkpoints over its RFC 9162 Merkle tree that anyone can verify."""
from __future__ import annotations

from .backend import AuditBackend, MemoryAuditBackend, SqliteAuditBackend
from .chain import GENESIS, Anchor, AuditRecord, VerifyReport, make_anchor, make_record, verify
from .checkpoint import (
    Checkpoint, CheckpointError, load_public_key, load_signing_key, prove, verify_log, verify_proof,
)
from .encode import encode
from .keys import ENV_KEY, AuditKeyError, load_key
from .logdir import reanchor_dir, verify_dir
from .recorder import AuditAnchorLost, AuditLogError, AuditUnavailable, FlightRecorder, reanchor

__all__ = ["Anchor", "AuditAnchorLost", "AuditBackend", "AuditKeyError", "AuditLogError", "AuditRecord",
           "AuditUnavailable", "Checkpoint", "CheckpointError", "ENV_KEY", "FlightRecorder", "GENESIS",
           "MemoryAuditBackend", "SqliteAuditBackend", "VerifyReport", "encode", "load_key", "load_public_key",
           "load_signing_key", "make_anchor", "make_record", "prove", "reanchor", "reanchor_dir", "verify",
           "verify_dir", "verify_log", "verify_proof"]
