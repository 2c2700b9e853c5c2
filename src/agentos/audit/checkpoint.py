"""Signed checkpoints: evidence anyone can check, without the key that writes the log.

An HMAC chain convinces only holders of its key, and they can forge it. So, as Certificate
Transparency does, the recorder periodically signs a checkpoint with an Ed25519 key:

    agentos-audit-checkpoint/1 \\n <log id> \\n <size> \\n <root> \\n <last mac> \\n <timestamp ms> \\n

where root is the RFC 9162 Merkle tree hash of the first `size` records (merkle.py) and
the log id names the signing key (SHA-256 of its raw public key, 32 hex digits). A
checkpoint exported and kept elsewhere pins that prefix of the log for good: editing,
dropping, inserting or reordering any record in it, or cutting the log back below it
(records, anchor and stored checkpoints together), no longer matches. `verify_log`
checks a log against a checkpoint with only the public key; `prove` and `verify_proof`
show one record is in a checkpointed log without the rest of it.

Keys: the private key is `<dir>/audit-signing.key` (PKCS#8 PEM, mode 0600, created once)
or $AGENTOS_AUDIT_SIGNING_KEY (64 hex digits: the raw Ed25519 seed); its public half is
written beside it as `audit-signing.pub` (PEM) for export. `cryptography` is imported only
here, on first use.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .chain import AuditRecord, VerifyReport, _safe_iter, is_hex64, leaf_data, lost_after, record_problem
from .keys import AuditKeyError
from .merkle import Frontier, inclusion_path, leaf_hash, verify_inclusion

FORMAT = "agentos-audit-checkpoint/1"
PROOF_FORMAT = "agentos-audit-proof/1"
ENV_SIGNING_KEY = "AGENTOS_AUDIT_SIGNING_KEY"
SIGNING_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"


class CheckpointError(ValueError):
    """A checkpoint, proof or key that is malformed or does not verify."""


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as e:  # pragma: no cover - the audit extra brings it
        raise AuditKeyError(f"signed checkpoints need the 'cryptography' package (agentos[audit]): {e}") from None
    return ed25519, serialization


# -- keys -----------------------------------------------------------------------------------
def _raw_public(public_key: Any) -> bytes:
    _ed, ser = _crypto()
    return bytes(public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw))


def log_id(public_key: Any) -> str:
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:32]


def public_pem(public_key: Any) -> str:
    _ed, ser = _crypto()
    return bytes(public_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)).decode()


def load_public_key(data: str | bytes) -> Any:
    """A public key from PEM text or 64 hex digits (the raw key)."""
    ed, ser = _crypto()
    raw = data.encode() if isinstance(data, str) else bytes(data)
    text = raw.strip()
    try:
        if len(text) == 64 and all(c in b"0123456789abcdefABCDEF" for c in text):
            return ed.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
        key = ser.load_pem_public_key(text)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"not an Ed25519 public key (PEM or 64 hex digits): {e}") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise CheckpointError(f"the public key is {type(key).__name__}, not Ed25519")
    return key


def load_signing_key(directory: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None,
                     create: bool = True) -> Any:
    """The recorder's Ed25519 private key: from the environment, or the key file (created
    once, 0600, with its public half beside it). A key file others can read is refused."""
    ed, ser = _crypto()
    env = os.environ if env is None else env
    if env.get(ENV_SIGNING_KEY):
        try:
            return ed.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(env[ENV_SIGNING_KEY].strip()))
        except ValueError as e:
            raise AuditKeyError(f"${ENV_SIGNING_KEY} is not 64 hex digits (an Ed25519 seed): {e}") from None
    if directory is None:
        raise AuditKeyError(f"no signing key: set ${ENV_SIGNING_KEY} or give a directory for {SIGNING_KEY_FILE}")
    path = Path(directory) / SIGNING_KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise AuditKeyError(f"{path} has mode {oct(mode)}: a signing key must be readable by its owner "
                                f"only (chmod 600)")
        try:
            pem = path.read_bytes()
        except OSError as e:
            raise AuditKeyError(f"{path} cannot be read: {type(e).__name__}: {e.strerror or e}") from None
        try:
            key = ser.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as e:
            raise AuditKeyError(f"{path} is not a PEM private key: {e}") from None
        if not isinstance(key, ed.Ed25519PrivateKey):
            raise AuditKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return key
    if not create:
        raise AuditKeyError(f"no signing key: ${ENV_SIGNING_KEY} is unset and {path} does not exist")
    key = ed.Ed25519PrivateKey.generate()
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    (Path(directory) / PUBLIC_KEY_FILE).write_text(public_pem(key.public_key()))
    return key


# -- checkpoints ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    log: str          # log id: which key signs this log
    size: int         # records covered: 1..size
    root: str         # RFC 9162 Merkle tree hash of those records (hex)
    last_mac: str     # MAC of record `size` (ties the checkpoint to the keyed chain)
    timestamp: int    # ms since the epoch, when it was signed
    signature: str    # base64 Ed25519 signature over `signed_text()`

    def signed_text(self) -> bytes:
        return f"{FORMAT}\n{self.log}\n{self.size}\n{self.root}\n{self.last_mac}\n{self.timestamp}\n".encode()

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "log": self.log, "size": self.size, "root": self.root,
                "last_mac": self.last_mac, "timestamp": self.timestamp, "signature": self.signature}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, obj: Any) -> "Checkpoint":
        """Parse and type-check (not verify) a checkpoint."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CheckpointError(f"not an {FORMAT} checkpoint")
        size, ts = obj.get("size"), obj.get("timestamp")
        log, root, last, sig = obj.get("log"), obj.get("root"), obj.get("last_mac"), obj.get("signature")
        if type(size) is not int or size < 0 or type(ts) is not int:
            raise CheckpointError("a checkpoint's size and timestamp are non-negative integers")
        if not (isinstance(log, str) and len(log) == 32 and is_hex64(log + "0" * 32)):
            raise CheckpointError("a checkpoint's log id is 32 hex digits")
        if not is_hex64(root) or not is_hex64(last):
            raise CheckpointError("a checkpoint's root and last_mac are 64 hex digits")
        if not isinstance(sig, str):
            raise CheckpointError("a checkpoint's signature is base64 text")
        return cls(log, size, str(root), str(last), ts, sig)

    @classmethod
    def loads(cls, text: str | bytes) -> "Checkpoint":
        try:
            return cls.from_json(json.loads(text))
        except (ValueError, RecursionError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"a checkpoint is JSON: {e}") from None

    def verify_signature(self, public_key: Any) -> None:
        """Raise CheckpointError unless `public_key` signed exactly this checkpoint."""
        from cryptography.exceptions import InvalidSignature

        if self.log != log_id(public_key):
            raise CheckpointError(f"the checkpoint names log {self.log}, but this public key is log "
                                  f"{log_id(public_key)}")
        try:
            sig = base64.b64decode(self.signature, validate=True)
            public_key.verify(sig, self.signed_text())
        except (InvalidSignature, ValueError) as e:
            raise CheckpointError(f"the checkpoint's signature does not verify under this public key "
                                  f"({type(e).__name__})") from None


def sign(private_key: Any, size: int, root: bytes, last_mac: str, timestamp_ms: int) -> Checkpoint:
    unsigned = Checkpoint(log_id(private_key.public_key()), size, root.hex(), last_mac, timestamp_ms, "")
    sig = private_key.sign(unsigned.signed_text())
    return Checkpoint(unsigned.log, size, unsigned.root, last_mac, timestamp_ms, base64.b64encode(sig).decode())


# -- checking a log, or one record, against a checkpoint ---------------------------------------
def verify_log(records: Iterable[AuditRecord], checkpoint: Checkpoint, public_key: Any) -> VerifyReport:
    """Check the log against a checkpoint with only the public key: the signature, the
    records' sequence and links, and the Merkle root of the first `size` records."""
    try:
        checkpoint.verify_signature(public_key)
    except CheckpointError as e:
        return VerifyReport(False, 0, None, str(e))
    frontier = Frontier()
    prev = "0" * 64
    losses: list[int] = []
    n = 0
    for rec in _safe_iter(records):
        n += 1
        if isinstance(rec, BaseException):
            return VerifyReport(False, n - 1, n, f"the log cannot be read past record {n - 1} "
                                f"({type(rec).__name__})", losses=tuple(losses))
        problem = record_problem(rec)
        if problem is not None:
            return VerifyReport(False, n, n, f"malformed record: {problem}", losses=tuple(losses))
        if rec.seq != n:
            return VerifyReport(False, n, n, f"sequence {rec.seq} where {n} was expected (a record was "
                                f"deleted, inserted or reordered)", losses=tuple(losses))
        if rec.prev != prev:
            return VerifyReport(False, n, n, "its link to the previous record is broken (a record before "
                                "it was deleted, edited or reordered)", losses=tuple(losses))
        prev = rec.mac
        lost = lost_after(rec)
        if lost is not None:
            losses.append(lost)
        if n <= checkpoint.size:
            frontier.append(leaf_hash(leaf_data(rec)))
            if n == checkpoint.size:
                if frontier.root().hex() != checkpoint.root:
                    return VerifyReport(False, n, None, f"the first {n} records do not hash to the "
                                        f"checkpoint's root: a record among them was edited, deleted, "
                                        f"inserted or reordered", losses=tuple(losses))
                if rec.mac != checkpoint.last_mac:
                    return VerifyReport(False, n, n, "record "
                                        f"{n} is not the one the checkpoint signed", losses=tuple(losses))
    if n < checkpoint.size:
        return VerifyReport(False, n, n + 1, f"the log ends at record {n} but the checkpoint signed "
                            f"{checkpoint.size}: records were cut off (with the anchor and checkpoints "
                            f"kept beside them)", losses=tuple(losses))
    if checkpoint.size == 0 and checkpoint.root != frontier.root().hex():
        return VerifyReport(False, n, None, "an empty checkpoint with a root that is not the empty tree's")
    return VerifyReport(True, n, None, "", checkpoint.size, n - checkpoint.size, tuple(losses),
                        what=f"the first {checkpoint.size} against checkpoint of log {checkpoint.log}")


def prove(records: Iterable[AuditRecord], seq: int, checkpoint: Checkpoint) -> dict[str, Any]:
    """An inclusion proof of record `seq` in the tree the checkpoint signed."""
    if not 1 <= seq <= checkpoint.size:
        raise CheckpointError(f"record {seq} is not covered by a checkpoint of size {checkpoint.size}")
    leaves: list[bytes] = []
    target: AuditRecord | None = None
    for rec in records:
        if len(leaves) == checkpoint.size:
            break
        problem = record_problem(rec)
        if problem is not None or rec.seq != len(leaves) + 1:
            raise CheckpointError(f"record {len(leaves) + 1} is malformed or out of place: "
                                  f"{problem or 'sequence ' + str(rec.seq)}")
        leaves.append(leaf_hash(leaf_data(rec)))
        if rec.seq == seq:
            target = rec
    if len(leaves) < checkpoint.size or target is None:
        raise CheckpointError(f"the log has {len(leaves)} records; the checkpoint covers {checkpoint.size}")
    from .merkle import root_of

    if root_of(leaves).hex() != checkpoint.root:
        raise CheckpointError("this log does not match the checkpoint (verify it first)")
    path = inclusion_path(seq - 1, leaves)
    return {"format": PROOF_FORMAT, "log": checkpoint.log, "tree_size": checkpoint.size, "leaf_index": seq - 1,
            "record": {"seq": target.seq, "time": target.time, "wall": target.wall, "pid": target.pid,
                       "kind": target.kind, "data": target.data, "prev": target.prev, "mac": target.mac},
            "path": [p.hex() for p in path]}


def verify_proof(proof: Any, checkpoint: Checkpoint, public_key: Any) -> str:
    """Check an inclusion proof against a signed checkpoint; returns what it proves, or
    raises CheckpointError saying why not."""
    checkpoint.verify_signature(public_key)
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        raise CheckpointError(f"not an {PROOF_FORMAT} proof")
    if proof.get("log") != checkpoint.log or proof.get("tree_size") != checkpoint.size:
        raise CheckpointError(f"the proof is for log {str(proof.get('log'))[:40]} at size "
                              f"{str(proof.get('tree_size'))[:20]}, the checkpoint is log {checkpoint.log} "
                              f"at size {checkpoint.size}")
    r, path, index = proof.get("record"), proof.get("path"), proof.get("leaf_index")
    if not isinstance(r, dict) or not isinstance(path, list) or type(index) is not int:
        raise CheckpointError("a proof holds a record, a leaf index and a path")
    try:
        rec = AuditRecord(r["seq"], r["time"], r["wall"], r["pid"], r["kind"], r["data"], r["prev"], r["mac"])
        hashes = [bytes.fromhex(p) for p in path]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"a malformed proof: {type(e).__name__}: {e}") from None
    problem = record_problem(rec)
    if problem is not None or rec.seq != index + 1 or any(len(h) != 32 for h in hashes) or len(hashes) > 64:
        raise CheckpointError(f"a malformed proof: {problem or 'its record and leaf index disagree'}")
    if not verify_inclusion(index, checkpoint.size, leaf_hash(leaf_data(rec)), hashes, bytes.fromhex(checkpoint.root)):
        raise CheckpointError(f"record {rec.seq} is NOT in the log the checkpoint signed (the path does not "
                              f"lead to its root)")
    return f"record {rec.seq} ({rec.kind}) is in log {checkpoint.log} as signed at size {checkpoint.size}"


__all__ = ["Checkpoint", "CheckpointError", "ENV_SIGNING_KEY", "FORMAT", "PROOF_FORMAT", "PUBLIC_KEY_FILE",
           "SIGNING_KEY_FILE", "load_public_key", "load_signing_key", "log_id", "prove", "public_pem",
           "sign", "verify_log", "verify_proof"]
