"""The recorder's signed checkpoints: when they are made, what they cover, how a recorder
resumes its Merkle tree, and how writes stay in chain order under group commit."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from agentos.audit import (
    AuditLogError, Checkpoint, CheckpointError, FlightRecorder, MemoryAuditBackend, load_public_key,
    load_signing_key, prove, verify_log, verify_proof,
)
from agentos.audit.chain import leaf_data
from agentos.audit.checkpoint import log_id, public_pem
from agentos.audit.merkle import leaf_hash, root_of

KEY = b"C" * 32


@pytest.fixture
def signer(tmp_path: Path) -> Any:
    return load_signing_key(tmp_path / "keys")


def _fill(rec: FlightRecorder, n: int) -> None:
    for i in range(n):
        rec.append(1, "decision", {"i": i})
        rec.commit()


def test_checkpoints_every_n_records_and_at_close(signer: Any) -> None:
    seen: list[Checkpoint] = []
    rec = FlightRecorder.in_memory(KEY, signing_key=signer, checkpoint_every=5, on_checkpoint=seen.append)
    _fill(rec, 12)
    assert [c.size for c in seen] == [5, 10]
    rec.close()
    assert [c.size for c in seen] == [5, 10, 12]
    records = list(rec.records())
    assert seen[-1].root == root_of([leaf_hash(leaf_data(r)) for r in records]).hex()
    assert seen[-1].last_mac == records[-1].mac
    for c in seen:
        assert verify_log(records, c, signer.public_key()).ok


def test_explicit_checkpoint_covers_what_is_durable(signer: Any) -> None:
    rec = FlightRecorder.in_memory(KEY, signing_key=signer)
    rec.append(1, "x", 1)
    cp = rec.checkpoint()
    assert cp.size == 1 and rec.checkpoint() is cp     # nothing new: the same one
    with pytest.raises(AuditLogError, match="no signing key"):
        FlightRecorder.in_memory(KEY).checkpoint()


def test_a_shipping_hook_that_fails_does_not_lose_the_checkpoint(signer: Any) -> None:
    def boom(cp: Any) -> None:
        raise OSError("network down")

    rec = FlightRecorder.in_memory(KEY, signing_key=signer, checkpoint_every=2, on_checkpoint=boom)
    _fill(rec, 4)
    assert rec.checkpoint_errors == 2 and len(rec.backend.saved_checkpoints) == 2  # type: ignore[attr-defined]


def test_resume_continues_the_tree_from_the_newest_valid_checkpoint(tmp_path: Path, signer: Any) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, signing_key=signer, checkpoint_every=4)
    _fill(rec, 10)
    rec.close()
    again = FlightRecorder.open(tmp_path, key=KEY, signing_key=signer, checkpoint_every=4)
    assert again.latest is not None and again.latest.size == 10
    _fill(again, 3)
    again.close()
    from agentos.audit.logdir import latest_checkpoint, read_records

    cp = latest_checkpoint(tmp_path)
    assert cp is not None and cp.size == 13
    assert verify_log(read_records(tmp_path), cp, signer.public_key()).ok


def test_a_tampered_stored_frontier_is_not_trusted_on_resume(tmp_path: Path, signer: Any) -> None:
    import sqlite3

    rec = FlightRecorder.open(tmp_path, key=KEY, signing_key=signer, checkpoint_every=4)
    _fill(rec, 8)
    rec.close()
    con = sqlite3.connect(str(tmp_path / "audit.db"), isolation_level=None)
    con.execute("UPDATE checkpoints SET frontier = ?", (json.dumps([[3, "00" * 32]]),))
    con.close()
    again = FlightRecorder.open(tmp_path, key=KEY, signing_key=signer)
    again.append(1, "x", 1)
    again.close()
    from agentos.audit.logdir import latest_checkpoint, read_records

    cp = latest_checkpoint(tmp_path)
    assert cp is not None and verify_log(read_records(tmp_path), cp, signer.public_key()).ok


def test_proofs_round_trip_and_refuse_other_logs(signer: Any, tmp_path: Path) -> None:
    rec = FlightRecorder.in_memory(KEY, signing_key=signer)
    _fill(rec, 9)
    cp = rec.checkpoint()
    records = list(rec.records())
    for seq in range(1, 10):
        assert f"record {seq} " in verify_proof(prove(records, seq, cp), cp, signer.public_key())
    other = load_signing_key(tmp_path / "other")
    with pytest.raises(CheckpointError, match="this public key is log"):
        verify_proof(prove(records, 3, cp), cp, other.public_key())


def test_checkpoint_json_and_keys_round_trip(signer: Any, tmp_path: Path) -> None:
    rec = FlightRecorder.in_memory(KEY, signing_key=signer)
    _fill(rec, 2)
    cp = rec.checkpoint()
    again = Checkpoint.loads(cp.dumps())
    assert again == cp
    again.verify_signature(load_public_key(public_pem(signer.public_key())))
    raw = signer.public_key().public_bytes_raw().hex()
    assert log_id(load_public_key(raw)) == cp.log
    for bad in ("", "{}", "[1]", json.dumps({**cp.to_json(), "size": -1}), json.dumps({**cp.to_json(), "root": "zz"})):
        with pytest.raises(CheckpointError):
            Checkpoint.loads(bad)
    with pytest.raises(CheckpointError):
        load_public_key("not a key")


def test_signing_key_file_is_private(tmp_path: Path) -> None:
    import os

    from agentos.audit import AuditKeyError

    load_signing_key(tmp_path)
    assert os.stat(tmp_path / "audit-signing.key").st_mode & 0o077 == 0
    assert (tmp_path / "audit-signing.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    os.chmod(tmp_path / "audit-signing.key", 0o644)
    with pytest.raises(AuditKeyError, match="readable by its owner only"):
        load_signing_key(tmp_path)


class SlowBackend(MemoryAuditBackend):
    """Writes slowly from the writer thread, to widen the window for reordering."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def append_audit(self, records: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.gate.wait(2)
        super().append_audit(records)


def test_an_inline_commit_never_overtakes_a_group_commit_in_flight(signer: Any) -> None:
    """A record committed inline (a signal's, at shutdown) while a group commit is still
    writing: the batches reach the backend in chain order, so the anchor never moves back
    and the Merkle tree stays whole."""
    import asyncio

    backend = SlowBackend()
    rec = FlightRecorder(backend, KEY, signing_key=signer, group_commit=True)
    rec._kernel = object()  # type: ignore[assignment]  # live, with nothing parked

    async def scenario() -> None:
        rec.note(1, "sandbox_refusal", {"n": 1})    # goes to the writer thread, which waits at the gate
        rec.note(1, "sandbox_refusal", {"n": 2})    # queued behind it
        rec.append(1, "signal", {"n": 3})
        threading.Timer(0.1, backend.gate.set).start()
        rec.commit()                                # inline: must wait its turn
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    rec.close()
    assert [r.seq for r in backend.records] == [1, 2, 3]
    assert backend.anchor is not None and backend.anchor.count == 3
    assert rec.verify().ok
    assert verify_log(backend.records, rec.checkpoint(), signer.public_key()).ok


def test_a_failed_write_is_retried_in_order_and_leaves_no_gap() -> None:
    class Flaky(MemoryAuditBackend):
        fail = True

        def append_audit(self, records: Any) -> None:
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            super().append_audit(records)

    b = Flaky()
    rec = FlightRecorder(b, KEY)
    rec.append(1, "a", 1)
    with pytest.raises(OSError):
        rec.commit()
    rec.append(1, "b", 2)
    assert rec.commit() == 2
    assert [r.seq for r in b.records] == [1, 2] and rec.verify().ok
