"""Flight recorder: an HMAC-SHA256 chain of audit records with a separately kept anchor."""
from __future__ import annotations

from .backend import AuditBackend, MemoryAuditBackend, SqliteAuditBackend
from .chain import GENESIS, Anchor, AuditRecord, VerifyReport, make_anchor, make_record, verify
from .keys import ENV_KEY, AuditKeyError, load_key
from .recorder import AuditUnavailable, FlightRecorder, verify_dir

__all__ = ["Anchor", "AuditUnavailable", "AuditBackend", "AuditKeyError", "AuditRecord", "ENV_KEY", "FlightRecorder",
           "GENESIS", "MemoryAuditBackend", "SqliteAuditBackend", "VerifyReport", "load_key",
           "make_anchor", "make_record", "verify", "verify_dir"]
