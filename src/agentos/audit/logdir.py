"""A flight-recorder directory, as `agentctl audit` sees it from outside the kernel.

Layout: `audit.db` (records and signed checkpoints), `audit-anchor.db` (the anchor, kept
apart), `audit.key` (HMAC key, 0600), `audit-signing.key` (Ed25519, 0600) and
`audit-signing.pub` (its public half, to be kept elsewhere too).

Everything here treats the files as hostile: a database that cannot be opened or read, a
row of the wrong shape, a checkpoint that is not JSON are reported, never raised through.
Public verification (`verify_dir_public`, `prove_dir`) opens the records read-only and
needs no secret: a copy of `audit.db` and the public key are enough.
"""
from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from .backend import SqliteAuditBackend
from .chain import Anchor, AuditRecord, VerifyReport, verify
from .checkpoint import Checkpoint, CheckpointError, prove, verify_log
from .keys import load_key
from .recorder import reanchor

RECORDS = "audit.db"
ANCHOR = "audit-anchor.db"


def _require(directory: str | os.PathLike[str]) -> Path:
    d = Path(directory)
    if not (d / RECORDS).is_file():
        raise FileNotFoundError(f"no audit log at {d / RECORDS}")
    return d


def _read_only(path: Path) -> sqlite3.Connection:
    """`path` opened read-only, whatever characters its name holds (`#`, `?`, `%` are URI
    syntax) and even in a directory the reader cannot write (a copy kept for audit)."""
    uri = "file:" + urllib.parse.quote(str(path.absolute()), safe="/")
    try:
        db = sqlite3.connect(uri + "?mode=ro", uri=True)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError:  # WAL needs a -shm file it cannot create here
        return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True)


def read_records(directory: str | os.PathLike[str]) -> Iterator[AuditRecord]:
    """The records of `directory`, read-only, in stored order (errors surface as exceptions
    from the iterator, which the verifiers turn into a report)."""
    path = _require(directory) / RECORDS
    db = _read_only(path)
    try:
        cur = db.execute("SELECT seq, time, wall, pid, kind, data, prev, mac FROM audit ORDER BY rowid")
        for row in cur:
            yield AuditRecord(*row)
    finally:
        db.close()


def read_anchor(directory: str | os.PathLike[str]) -> Anchor | None:
    """The anchor of `directory`, read-only: None when its file, table or row is gone."""
    path = Path(directory) / ANCHOR
    if not path.exists():
        return None
    db = _read_only(path)
    try:
        try:
            row = db.execute("SELECT count, last_mac, mac FROM anchor WHERE id = 1").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            raise
    finally:
        db.close()
    if row is None:
        return None
    count, last, mac = row
    if type(count) is not int or not isinstance(last, str) or not isinstance(mac, str):
        return Anchor(-1, "", "unreadable")
    return Anchor(count, last, mac)


def verify_dir(directory: str | os.PathLike[str], key: bytes | None = None) -> VerifyReport:
    """Verify the keyed chain and the anchor in `directory` (`agentctl audit verify`),
    reading both read-only, then hold the log to the checkpoints signed beside it: a log
    shorter than one of them was cut, even with its anchor gone too."""
    d = _require(directory)
    k = key if key is not None else load_key(d, create=False)
    try:
        _read_only(d / RECORDS).close()
    except sqlite3.Error as e:
        return VerifyReport(False, 0, None, f"the audit log cannot be opened ({type(e).__name__}: {e})")
    try:
        anchor = read_anchor(d)
    except (sqlite3.Error, ValueError) as e:
        return VerifyReport(False, 0, None, f"the anchor cannot be read ({type(e).__name__}: {e})")
    report = verify(read_records(d), anchor, k)
    if report.ok and not report.losses:  # a re-anchoring accepted the loss, on the record
        signed = max((cp.size for cp in stored_checkpoints(d)), default=0)
        if signed > report.count:
            return replace(report, ok=False, first_bad=report.count + 1,
                           reason=f"the log ends at record {report.count} but a checkpoint signed beside it "
                                  f"covers {signed}: the log was cut")
    return report


def verify_dir_public(directory: str | os.PathLike[str], checkpoint: Checkpoint, public_key: Any) -> VerifyReport:
    """Check the log in `directory` against a checkpoint kept elsewhere, with only the public key."""
    return verify_log(read_records(directory), checkpoint, public_key)


def stored_checkpoints(directory: str | os.PathLike[str]) -> list[Checkpoint]:
    """The checkpoints the recorder stored beside the log, newest first (malformed ones skipped)."""
    path = _require(directory) / RECORDS
    out = []
    try:
        db = _read_only(path)
        try:
            rows = db.execute("SELECT body FROM checkpoints ORDER BY id DESC").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    for (body,) in rows:
        try:
            out.append(Checkpoint.loads(body))
        except (CheckpointError, TypeError):
            continue
    return out


def latest_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint | None:
    found = stored_checkpoints(directory)
    return found[0] if found else None


def prove_dir(directory: str | os.PathLike[str], seq: int, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """An inclusion proof of record `seq` against `checkpoint` (default: the newest stored)."""
    cp = checkpoint if checkpoint is not None else latest_checkpoint(directory)
    if cp is None:
        raise CheckpointError(f"no signed checkpoint in {directory} yet (a recorder signs one every "
                              f"so many records and when it closes)")
    try:
        return prove(read_records(directory), seq, cp)
    except sqlite3.Error as e:
        raise CheckpointError(f"the audit log cannot be read ({type(e).__name__}: {e})") from None


def reanchor_dir(directory: str | os.PathLike[str], *, accept_loss: bool, reason: str = "",
                 key: bytes | None = None) -> AuditRecord:
    """`reanchor` on the log in `directory` (`agentctl audit reanchor --accept-loss`)."""
    d = _require(directory)
    k = key if key is not None else load_key(d, create=False)
    backend = SqliteAuditBackend(d, "fsync")
    try:
        return reanchor(backend, k, accept_loss=accept_loss, reason=reason)
    finally:
        backend.close()


__all__ = ["latest_checkpoint", "prove_dir", "read_anchor", "read_records", "reanchor_dir", "stored_checkpoints",
           "verify_dir", "verify_dir_public"]
