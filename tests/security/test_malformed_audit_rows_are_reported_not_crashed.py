"""Whoever can write the audit database can put anything in a row. `agentctl audit verify`
used to die with a TypeError traceback on a NULL time, a NULL mac, a BLOB in data or a
non-ASCII prev. Now any malformed row is the first bad record, named by number, with a
non-zero exit and one line on stderr; so is a database that is not a database."""
from __future__ import annotations

from pathlib import Path

import pytest

from auditlog import anchor_db, clean_failure, cli, cli_process, db, make_log

CORRUPTIONS = {
    "null_time": ("UPDATE audit SET time = NULL WHERE seq = 4", "its time is NULL"),
    "null_mac": ("UPDATE audit SET mac = NULL WHERE seq = 4", "its mac is NULL"),
    "blob_data": ("UPDATE audit SET data = X'00FF10' WHERE seq = 4", "its data is a 3-byte BLOB"),
    "non_ascii_prev": ("UPDATE audit SET prev = 'é' || substr(prev, 2) WHERE seq = 4", "its prev is"),
    "text_wall": ("UPDATE audit SET wall = 'yesterday' WHERE seq = 4", "its wall is 'yesterday'"),
    "float_pid": ("UPDATE audit SET pid = 1.5 WHERE seq = 4", "its pid is 1.5"),
    "blob_kind": ("UPDATE audit SET kind = X'FF' WHERE seq = 4", "its kind is a 1-byte BLOB"),
    "short_mac": ("UPDATE audit SET mac = 'abc' WHERE seq = 4", "its mac is 'abc'"),
    "upper_hex_mac": ("UPDATE audit SET mac = upper(mac) WHERE seq = 4", "not a 64-digit hex MAC"),
    "null_everything": ("UPDATE audit SET time = NULL, wall = NULL, pid = NULL, kind = NULL, data = NULL, "
                        "prev = NULL, mac = NULL WHERE seq = 4", "malformed record"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_malformed_row_is_the_first_bad_record(tmp_path: Path, case: str) -> None:
    make_log(tmp_path, 8)
    sql, why = CORRUPTIONS[case]
    with db(tmp_path) as con:
        con.execute(sql)
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and "BAD at record 4: malformed record" in r.err and why in r.err, r
    assert clean_failure(r), r


@pytest.mark.parametrize("case", ["null_time", "blob_data", "null_mac"])
def test_malformed_row_fails_public_verification_the_same_way(tmp_path: Path, case: str) -> None:
    make_log(tmp_path, 8)
    assert cli("checkpoint", "--out", str(tmp_path / "cp.json"), "--dir", str(tmp_path)).code == 0
    assert cli("public-key", "--out", str(tmp_path / "pub.pem"), "--dir", str(tmp_path)).code == 0
    with db(tmp_path) as con:
        con.execute(CORRUPTIONS[case][0])
    r = cli("verify", "--dir", str(tmp_path), "--public-key", str(tmp_path / "pub.pem"),
            "--checkpoint", str(tmp_path / "cp.json"))
    assert r.code == 1 and "BAD at record 4: malformed record" in r.err and clean_failure(r), r


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    (tmp_path / "audit.db").write_bytes(b"this is not sqlite" * 100)
    for p in tmp_path.glob("audit.db-*"):
        p.unlink()
    r = cli_process("verify", "--dir", str(tmp_path))
    assert r.code == 1 and "cannot be opened" in r.err and clean_failure(r), r


def test_a_table_of_another_shape(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    with db(tmp_path) as con:
        con.execute("DROP TABLE audit")
        con.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, x TEXT)")
        con.execute("INSERT INTO audit VALUES (1, 'x')")
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and clean_failure(r), r


def test_an_unreadable_anchor_row(tmp_path: Path) -> None:
    make_log(tmp_path, 3)
    with anchor_db(tmp_path) as con:
        con.execute("UPDATE anchor SET count = X'01', mac = NULL")
    r = cli("verify", "--dir", str(tmp_path))
    assert r.code == 1 and "anchor is unreadable" in r.err and clean_failure(r), r


def test_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    make_log(tmp_path, 5)
    with db(tmp_path) as con:
        con.execute(CORRUPTIONS["blob_data"][0].replace("seq = 4", "seq = 2"))
    r = cli_process("verify", "--dir", str(tmp_path))
    assert r.code == 1 and r.err.startswith("BAD at record 2: malformed record: its data is a 3-byte BLOB"), r
    assert clean_failure(r), r
