"""Rows anyone with write access to the log can add or edit, and that used to escape as
tracebacks: an `anchor_lost` record past a checkpoint (no MAC checks there) holding
200,000-deep JSON crashed `audit verify --public-key` with a RecursionError; a NULL time
in a record below the anchor made a recorder's start fail with a raw TypeError. Now the
first is reported as what it is (records past the checkpoint, not covered by it), and the
second stops the recorder with an AuditLogError naming the record."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentos.audit import AuditLogError, FlightRecorder

from auditlog import KEY, clean_failure, cli, db, make_log


def _export(d: Path, tmp: Path) -> tuple[Path, Path]:
    cp, pub = tmp / "cp.json", tmp / "pub.pem"
    assert cli("checkpoint", "--out", str(cp), "--dir", str(d)).code == 0
    pub.write_text(cli("public-key", "--dir", str(d)).out)
    return cp, pub


def test_a_deep_anchor_lost_record_past_the_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "log"
    make_log(d, 5)
    cp, pub = _export(d, tmp_path)
    with db(d) as con:
        last = con.execute("SELECT mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0]
        con.execute("INSERT INTO audit VALUES (6, 0.0, 0.0, 0, 'anchor_lost', ?, ?, ?)",
                    ("[" * 200_000, last, "a" * 64))
    r = cli("verify", "--dir", str(d), "--public-key", str(pub), "--checkpoint", str(cp), secret=False)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.code == 0 and "1 record(s) past the checkpoint, not covered by it" in r.out, r
    assert "anchor lost" not in r.out
    r = cli("verify", "--dir", str(d))   # with the key, the forged MAC is caught
    assert r.code == 1 and clean_failure(r) and "record 6" in r.err, r


def test_a_malformed_row_below_the_anchor_stops_a_recorder_with_a_reason(tmp_path: Path) -> None:
    make_log(tmp_path, 10, sign=False)
    with db(tmp_path) as con:
        con.execute("UPDATE audit SET time = NULL WHERE seq = 3")
    with pytest.raises(AuditLogError, match="record 3 is malformed"):
        FlightRecorder.open(tmp_path, key=KEY, sign=False)


def test_a_deep_stored_frontier_is_skipped_not_raised(tmp_path: Path) -> None:
    make_log(tmp_path, 6)
    with db(tmp_path) as con:
        con.execute("UPDATE checkpoints SET frontier = ?", ("[" * 200_000,))
    rec = FlightRecorder.open(tmp_path, key=KEY)   # rebuilds the tree from the records instead
    rec.append(1, "decision", {})
    rec.close()
    assert cli("verify", "--dir", str(tmp_path)).code == 0
