"""Cut the tail, delete the anchor, start a recorder again: it used to write a fresh anchor
over the shortened log and `audit verify` said ok. Now a recorder that finds records
without an anchor that vouches for them refuses to start and says why; only an operator's
`agentctl audit reanchor --accept-loss` starts a new epoch, by writing an "anchor lost
after record N" record that verify reports for ever after."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentos.audit import AuditAnchorLost, AuditLogError, FlightRecorder, reanchor_dir, verify_dir

from auditlog import KEY, anchor_db, clean_failure, cli, db, make_log


def _cut(d: Path, keep: int) -> None:
    with db(d) as con:
        con.execute("DELETE FROM audit WHERE seq > ?", (keep,))


def _delete_anchor(d: Path) -> None:
    with anchor_db(d) as con:
        con.execute("DELETE FROM anchor")


def test_cut_tail_and_deleted_anchor_make_the_recorder_refuse_to_start(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _cut(tmp_path, 6)
    _delete_anchor(tmp_path)
    with pytest.raises(AuditAnchorLost, match="no anchor.*reanchor --accept-loss"):
        FlightRecorder.open(tmp_path, key=KEY)
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and "no anchor: the anchor was deleted" in r.err, r
    with db(tmp_path) as con:  # the refused start wrote nothing
        assert con.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 6


def test_deleted_anchor_alone_is_refused_too(tmp_path: Path) -> None:
    make_log(tmp_path, 4)
    (tmp_path / "audit-anchor.db").unlink()
    with pytest.raises(AuditAnchorLost):
        FlightRecorder.open(tmp_path, key=KEY)


def test_cut_tail_with_the_anchor_in_place_is_refused(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _cut(tmp_path, 7)
    with pytest.raises(AuditAnchorLost, match="ends at record 7 but the anchor vouches for 10"):
        FlightRecorder.open(tmp_path, key=KEY)


def test_forged_anchor_is_refused(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    with anchor_db(tmp_path) as con:
        con.execute("UPDATE anchor SET count = 3")
    with pytest.raises(AuditAnchorLost, match="anchor's MAC does not match"):
        FlightRecorder.open(tmp_path, key=KEY)


def test_rewritten_anchored_record_is_refused(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    with db(tmp_path) as con:
        con.execute("UPDATE audit SET mac = ? WHERE seq = 5", ("f" * 64,))
    with pytest.raises(AuditAnchorLost, match="record 5 is not the one the anchor vouches for"):
        FlightRecorder.open(tmp_path, key=KEY)


def test_policy_run_on_a_log_without_anchor_is_one_line_exit_2(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from agentos.cli.main import app

    make_log(tmp_path / "audit", 3)
    _delete_anchor(tmp_path / "audit")
    pol = tmp_path / "security.md"
    pol.write_text("```yaml\nkernel: {version: 1, mode: strict}\npolicies: []\n```\n")
    prog = tmp_path / "prog.py"
    prog.write_text("async def init(sys, args):\n    return 1\n")
    monkeypatch.setenv("AGENTOS_AUDIT_KEY", KEY.hex())
    r = CliRunner().invoke(app, ["policy", "run", str(pol), str(prog), "--audit-dir", str(tmp_path / "audit")])
    assert r.exit_code == 2 and "reanchor --accept-loss" in r.stderr, r.output
    assert "Traceback" not in r.output


def test_reanchor_needs_accept_loss_then_is_reported_for_ever(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _cut(tmp_path, 6)
    _delete_anchor(tmp_path)
    r = cli("reanchor", "--dir", str(tmp_path))
    assert r.code == 2 and "--accept-loss" in r.err and clean_failure(r), r
    r = cli("reanchor", "--accept-loss", "--reason", "disk restored from backup", "--dir", str(tmp_path))
    assert r.code == 0 and "anchor was lost after record 6" in r.out, r
    # the new epoch is usable, and on the record
    rec = FlightRecorder.open(tmp_path, key=KEY)
    assert rec.seq == 7
    rec.append(1, "decision", {"after": "reanchor"})
    rec.close()
    report = verify_dir(tmp_path, KEY)
    assert report.ok and report.count == 8 and report.losses == (6,)
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 0 and "WARNING: anchor lost after record 6" in r.out, r
    lost = [json.loads(row[0]) for row in db(tmp_path).execute("SELECT data FROM audit WHERE kind = 'anchor_lost'")]
    assert lost == [{"after": 6, "anchor": "missing", "reason": "disk restored from backup"}]


def test_reanchor_after_a_cut_tail_records_how_many_the_anchor_vouched_for(tmp_path: Path) -> None:
    make_log(tmp_path, 9)
    _cut(tmp_path, 4)
    rec = reanchor_dir(tmp_path, accept_loss=True, key=KEY)
    assert json.loads(rec.data) == {"after": 4, "anchor": "it vouched for 9 records; the log has 4", "reason": ""}


def test_reanchor_refuses_when_the_chain_itself_is_broken(tmp_path: Path) -> None:
    make_log(tmp_path, 6)
    _delete_anchor(tmp_path)
    with db(tmp_path) as con:
        con.execute("UPDATE audit SET data = '{\"forged\":true}' WHERE seq = 3")
    r = cli("reanchor", "--accept-loss", "--dir", str(tmp_path))
    assert r.code == 2 and "record 3 does not verify" in r.err and clean_failure(r), r
    with db(tmp_path) as con:
        assert con.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 6   # evidence left as it was


def test_reanchor_refuses_when_nothing_was_lost(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    with pytest.raises(AuditLogError, match="nothing to re-anchor"):
        reanchor_dir(tmp_path, accept_loss=True, key=KEY)


def test_a_garbage_database_is_a_clean_refusal(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(AuditLogError, match="cannot (open|read) the audit log"):
        FlightRecorder.open(tmp_path, key=KEY)
