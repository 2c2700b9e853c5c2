"""Empty the log and delete its anchor: `audit verify` used to say "ok: 0 record(s)" and a
new recorder started a fresh chain over it. The checkpoints signed beside the log remember
how far it went, so both now refuse. Verification also reads the log read-only (it used to
create an anchor file where one was deleted) and whatever characters the directory's
name holds (`#`, `?`, `%` used to send the read-only reader to another file)."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentos.audit import AuditAnchorLost, FlightRecorder, verify_dir

from auditlog import KEY, anchor_db, clean_failure, cli, db, make_log


def _wipe(d: Path) -> None:
    with db(d) as con:
        con.execute("DELETE FROM audit")
    (d / "audit-anchor.db").unlink()


def test_an_emptied_log_without_its_anchor_fails_verification(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _wipe(tmp_path)
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and clean_failure(r), r
    assert "covers 10" in r.err and "cut" in r.err


def test_a_recorder_refuses_to_start_over_an_emptied_log(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _wipe(tmp_path)
    with pytest.raises(AuditAnchorLost, match="checkpoint signed beside it covers 10"):
        FlightRecorder.open(tmp_path, key=KEY)


def test_reanchoring_an_emptied_log_is_on_the_record(tmp_path: Path) -> None:
    make_log(tmp_path, 10)
    _wipe(tmp_path)
    assert cli("reanchor", "--accept-loss", "--dir", str(tmp_path)).code == 0
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 0 and "anchor lost after record 0" in r.out, r
    FlightRecorder.open(tmp_path, key=KEY).close()


def test_verify_writes_nothing_not_even_a_missing_anchor_file(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    (tmp_path / "audit-anchor.db").unlink()
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and "no anchor" in r.err
    assert not (tmp_path / "audit-anchor.db").exists()


def test_a_dropped_anchor_table_is_a_missing_anchor(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    with anchor_db(tmp_path) as con:
        con.execute("DROP TABLE anchor")
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and clean_failure(r) and "no anchor" in r.err, r


@pytest.mark.parametrize("name", ["log#1", "what?mode=rw", "100%25", "sp ace"])
def test_uri_characters_in_the_directory_name_read_the_right_file(tmp_path: Path, name: str) -> None:
    d = tmp_path / name
    make_log(d, 6)
    assert verify_dir(d, KEY).ok
    r = cli("checkpoint", "--out", str(tmp_path / "cp.json"), "--dir", str(d))
    assert r.code == 0, r
    pub = cli("public-key", "--dir", str(d))
    (tmp_path / "pub.pem").write_text(pub.out)
    r = cli("verify", "--dir", str(d), "--public-key", str(tmp_path / "pub.pem"),
            "--checkpoint", str(tmp_path / "cp.json"), secret=False)
    assert r.code == 0 and "ok: 6" in r.out, r
    r = cli("prove", "3", "--dir", str(d))
    assert r.code == 0 and '"seq": 3' in r.out, r
