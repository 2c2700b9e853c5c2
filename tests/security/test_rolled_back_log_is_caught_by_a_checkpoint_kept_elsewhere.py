"""An HMAC chain convinces only holders of its key, and they can forge it; an anchor kept
beside the log can be rolled back with it. A signed checkpoint exported to somewhere the
host cannot rewrite catches both: whoever has the public key alone can check the log
against it, and one record against it (an inclusion proof) without the log."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from auditlog import clean_failure, cli, db, make_log, rewrite_with_key


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A log of 12 records, with a checkpoint and the public key exported off the host."""
    log = tmp_path / "host" / "audit"
    off = tmp_path / "elsewhere"
    off.mkdir()
    make_log(log, 12, checkpoint_every=4)
    assert cli("checkpoint", "--out", str(off / "cp.json"), "--dir", str(log)).code == 0
    assert cli("public-key", "--out", str(off / "pub.pem"), "--dir", str(log)).code == 0
    return log, off / "cp.json", off / "pub.pem", tmp_path


def _public(log: Path, cp: Path, pub: Path):  # type: ignore[no-untyped-def]
    return cli("verify", "--dir", str(log), "--public-key", str(pub), "--checkpoint", str(cp), secret=False)


def test_intact_log_verifies_with_only_the_public_key(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, _ = exported
    for secret in log.glob("*.key"):   # no secret at all on the verifier's side
        secret.unlink()
    r = _public(log, cp, pub)
    assert r.code == 0 and "ok: 12 record(s), the first 12 against checkpoint" in r.out, r


def test_log_anchor_and_stored_checkpoints_rolled_back_together(exported) -> None:  # type: ignore[no-untyped-def]
    """The attacker restores an older copy of the whole directory: consistent in itself."""
    log, cp, pub, tmp = exported
    older = tmp / "older"
    make_log(older, 7, checkpoint_every=4)
    shutil.rmtree(log)
    shutil.copytree(older, log)
    assert cli("verify", "--dir", str(log)).code == 0          # the keyed chain and anchor agree...
    r = _public(log, cp, pub)                                   # ...the exported checkpoint does not
    assert r.code == 1 and "ends at record 7 but the checkpoint signed 12" in r.err and clean_failure(r), r


def test_a_record_rewritten_by_a_key_holder(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, _ = exported

    def edit(rows):  # type: ignore[no-untyped-def]
        rows[4] = (*rows[4][:5], json.dumps({"action": "tools.pay", "args": {"amount": 0}, "allowed": False}))
        return rows
    rewrite_with_key(log, edit)
    assert cli("verify", "--dir", str(log)).code == 0          # the HMAC chain is forged cleanly
    r = _public(log, cp, pub)
    assert r.code == 1 and "do not hash to the checkpoint's root" in r.err, r


def test_a_record_dropped_and_the_chain_reforged(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, _ = exported
    rewrite_with_key(log, lambda rows: [(i + 1, *r[1:]) for i, r in enumerate(rows[:3] + rows[4:])])
    # the checkpoints stored beside the log still remember 12 records
    r = cli("verify", "--dir", str(log))
    assert r.code == 1 and "covers 12" in r.err, r
    with db(log) as con:  # so the key holder deletes them too: only the exported one is left
        con.execute("DELETE FROM checkpoints")
    assert cli("verify", "--dir", str(log)).code == 0
    r = _public(log, cp, pub)
    assert r.code == 1 and "checkpoint signed 12" in r.err, r


def test_an_edited_checkpoint_file_fails_its_signature(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, _ = exported
    doc = json.loads(cp.read_text())
    doc["size"] = 7
    cp.write_text(json.dumps(doc))
    r = _public(log, cp, pub)
    assert r.code == 1 and "signature does not verify" in r.err, r


def test_a_checkpoint_under_another_key_is_refused(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, _pub, tmp = exported
    other = tmp / "other"
    make_log(other, 2)
    assert cli("public-key", "--out", str(tmp / "other.pem"), "--dir", str(other)).code == 0
    r = _public(log, cp, tmp / "other.pem")
    assert r.code == 1 and "this public key is log" in r.err, r


@pytest.mark.parametrize("content", ["{", "[]", '{"format": "agentos-audit-checkpoint/1"}', "[" * 100_000,
                                     "x" * (2 << 20)])
def test_malformed_checkpoint_files_are_one_line_exit_2(exported, content: str) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, _ = exported
    cp.write_text(content)
    r = _public(log, cp, pub)
    assert r.code == 2 and clean_failure(r), r


def test_inclusion_proof_verifies_without_the_log_and_catches_edits(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, pub, tmp = exported
    r = cli("prove", "5", "--checkpoint", str(cp), "--out", str(tmp / "p.json"), "--dir", str(log))
    assert r.code == 0, r
    shutil.rmtree(log)   # a third party has only the checkpoint, the key and the proof
    ok = cli("verify", "--public-key", str(pub), "--checkpoint", str(cp), "--proof", str(tmp / "p.json"))
    assert ok.code == 0 and "record 5 (decision) is in log" in ok.out, ok
    proof = json.loads((tmp / "p.json").read_text())
    for tamper in (lambda p: p["record"].update(data='{"allowed":false}'),
                   lambda p: p["record"].update(seq=6),
                   lambda p: p.update(leaf_index=5),
                   lambda p: p["path"].reverse(),
                   lambda p: p["path"].pop()):
        bad = json.loads(json.dumps(proof))
        tamper(bad)
        (tmp / "bad.json").write_text(json.dumps(bad))
        r = cli("verify", "--public-key", str(pub), "--checkpoint", str(cp), "--proof", str(tmp / "bad.json"))
        assert r.code in (1, 2) and r.code != 0 and clean_failure(r), r


def test_prove_refuses_records_the_checkpoint_does_not_cover(exported) -> None:  # type: ignore[no-untyped-def]
    log, cp, _pub, _ = exported
    for seq in ("0", "13"):
        r = cli("prove", seq, "--checkpoint", str(cp), "--dir", str(log))
        assert r.code == 2 and "not covered" in r.err and clean_failure(r), (seq, r)


def test_checkpoints_are_signed_periodically_and_at_close(tmp_path: Path) -> None:
    make_log(tmp_path, 10, checkpoint_every=4)
    sizes = [row[0] for row in db(tmp_path).execute("SELECT size FROM checkpoints ORDER BY id")]
    assert sizes[-1] == 10 and 4 <= sizes[0] < 10, sizes
