"""FlightRecorder.open / FlightRecorder(...) refuse every bad option at the boundary, naming it,
before a file is created: nothing taken at open may refuse every record (or the close) later,
MAC records with a key too short to be a secret, or put the log in the current directory."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from agentos.audit import (
    AuditKeyError, AuditLogError, FlightRecorder, MemoryAuditBackend, load_key, load_signing_key, verify_dir,
)
from agentos.audit.recorder import reanchor
from agentos.cli.main import app

KEY = b"O" * 32
SECRET = b"s3cr3t-bytes"  # 12 bytes: too short, and must never show up in a message
FAST = settings(derandomize=True, max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# values that are no bytes at all (None is left out: for `open` it means "load the key")
NOT_BYTES = st.one_of(st.integers(), st.floats(allow_nan=True), st.text(), st.booleans(),
                      st.lists(st.integers(0, 255), max_size=40), st.tuples(st.binary()),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
# values that are not callables
NOT_CALLABLE = st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=20),
                         st.booleans(), st.lists(st.integers(), max_size=3))
# values that are not True or False
NOT_BOOL = st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=10), st.binary(max_size=5),
                     st.none(), st.lists(st.booleans(), max_size=2))


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTOS_AUDIT_KEY", raising=False)
    monkeypatch.delenv("AGENTOS_AUDIT_SIGNING_KEY", raising=False)


def _refused_untouched(d: Path, exc: type[BaseException], match: str, **kw: Any) -> str:
    """`open(d, **kw)` raises `exc` naming the option, and leaves nothing behind."""
    with pytest.raises(exc, match=match) as info:
        FlightRecorder.open(d, **kw)
    assert not d.exists(), f"a refused open created {sorted(os.listdir(d))}"
    msg = str(info.value)
    assert len(msg) < 400
    return msg


def _fill_and_close(rec: FlightRecorder, n: int = 3) -> None:
    for i in range(n):
        rec.append(1, "decision", {"i": i})
        rec.commit()
    rec.close()


# -- the HMAC key ------------------------------------------------------------------------------

def test_an_empty_explicit_key_is_refused_not_used_to_mac_records(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", AuditKeyError, "at least 16", key=b"")
    with pytest.raises(AuditKeyError, match="at least 16"):
        FlightRecorder.in_memory(b"")
    with pytest.raises(AuditKeyError, match="at least 16"):
        FlightRecorder(MemoryAuditBackend(), b"")


@FAST
@given(short=st.binary(max_size=15))
def test_an_explicit_key_shorter_than_a_loaded_one_may_be_is_refused(tmp_path: Path, short: bytes) -> None:
    msg = _refused_untouched(tmp_path / "log", AuditKeyError, "at least 16", key=short)
    assert f"{len(short)} bytes" in msg
    with pytest.raises(AuditKeyError, match="at least 16"):
        FlightRecorder(MemoryAuditBackend(), short)
    with pytest.raises(AuditKeyError, match="at least 16"):
        FlightRecorder(MemoryAuditBackend(), bytearray(short))


def test_a_refused_key_is_never_shown_in_the_message(tmp_path: Path) -> None:
    msg = _refused_untouched(tmp_path / "log", AuditKeyError, "key", key=SECRET)
    assert "s3cr3t" not in msg and SECRET.hex() not in msg
    passphrase = "correct horse battery staple"   # a str: refused, and not echoed either
    msg = _refused_untouched(tmp_path / "log", AuditKeyError, "key must be bytes", key=passphrase)
    assert "horse" not in msg and "str" in msg


@FAST
@given(bad=NOT_BYTES)
def test_a_key_that_is_not_bytes_is_refused_at_open_not_by_every_record(tmp_path: Path, bad: Any) -> None:
    _refused_untouched(tmp_path / "log", AuditKeyError, "key must be bytes", key=bad)
    with pytest.raises(AuditKeyError, match="key must be bytes"):
        FlightRecorder(MemoryAuditBackend(), bad)


def test_a_nan_or_none_key_is_refused_by_the_constructor() -> None:
    for bad in (math.nan, None, 5, "k" * 32):
        with pytest.raises(AuditKeyError, match="key must be bytes"):
            FlightRecorder.in_memory(bad)  # type: ignore[arg-type]


def test_a_bytearray_key_changed_later_cannot_change_the_chain_key(tmp_path: Path) -> None:
    mutable = bytearray(KEY)
    rec = FlightRecorder.open(tmp_path, key=mutable, sign=False)
    mutable[:] = b"X" * 32        # the caller reuses its buffer
    _fill_and_close(rec)
    report = verify_dir(tmp_path, key=KEY)
    assert report.ok and report.count == 3
    rec = FlightRecorder.open(tmp_path, key=memoryview(KEY), sign=False)   # any bytes-like of 16+ works
    _fill_and_close(rec, 1)
    assert verify_dir(tmp_path, key=KEY).ok


# -- the signing key and the sign flag ---------------------------------------------------------

def test_a_signing_key_that_is_not_a_key_is_refused_at_open(tmp_path: Path) -> None:
    public = load_signing_key(tmp_path / "k").public_key()   # the public half cannot sign
    for bad in (5, "ab" * 32, bytes(32), object(), public, math.nan):
        msg = _refused_untouched(tmp_path / "log", AuditKeyError, "signing_key must be an Ed25519 private key",
                                 key=KEY, signing_key=bad)
        assert type(bad).__name__ in msg
        with pytest.raises(AuditKeyError, match="signing_key"):
            FlightRecorder.in_memory(KEY, signing_key=bad, checkpoint_every=1)


def test_a_signing_key_that_is_not_a_key_cannot_break_checkpoints_or_close(tmp_path: Path) -> None:
    # it used to be taken, then every action after `checkpoint_every` records was refused and
    # close() raised AttributeError; now a good key works and a bad one never gets that far
    rec = FlightRecorder.open(tmp_path, key=KEY, signing_key=load_signing_key(tmp_path / "k"), checkpoint_every=1)
    _fill_and_close(rec, 2)
    assert rec.latest is not None and rec.latest.size == 2
    with pytest.raises(AuditKeyError):
        FlightRecorder.open(tmp_path, key=KEY, signing_key=5, checkpoint_every=1)


@FAST
@given(bad=NOT_BOOL)
def test_a_sign_flag_that_is_not_a_bool_is_refused_not_taken_as_truthy(tmp_path: Path, bad: Any) -> None:
    _refused_untouched(tmp_path / "log", TypeError, "sign must be True or False", key=KEY, sign=bad)


def test_sign_no_creates_no_signing_key(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", TypeError, "sign must be True or False, got 'no'", key=KEY, sign="no")
    _refused_untouched(tmp_path / "log", TypeError, "sign", key=KEY, sign=0)


# -- clocks, callbacks and other options -------------------------------------------------------

@FAST
@given(bad=NOT_CALLABLE, which=st.sampled_from(["now", "wall"]))
def test_a_clock_that_is_not_a_callable_is_refused_at_open_not_by_every_record(
        tmp_path: Path, bad: Any, which: str) -> None:
    _refused_untouched(tmp_path / "log", TypeError, f"{which} must be a callable", key=KEY, **{which: bad})
    with pytest.raises(TypeError, match=f"{which} must be a callable"):
        FlightRecorder.in_memory(KEY, **{which: bad})


def test_a_wall_clock_of_none_is_refused_and_now_of_none_is_the_default(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", TypeError, "wall must be a callable, got None", key=KEY, wall=None)
    rec = FlightRecorder.in_memory(KEY, now=None, wall=lambda: 7.0)
    assert rec.append(1, "decision", {}).wall == 7.0


def test_an_on_checkpoint_or_group_commit_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", TypeError, "on_checkpoint must be a callable or None, got 5",
                       key=KEY, on_checkpoint=5)
    _refused_untouched(tmp_path / "log", TypeError, "group_commit must be True, False or None, got 'yes'",
                       key=KEY, group_commit="yes")


def test_a_misspelt_option_is_refused_before_a_file_is_created(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", TypeError, "checkpoint_evry", key=KEY, checkpoint_evry=5)
    _refused_untouched(tmp_path / "log", TypeError, "own backend", key=KEY, backend=MemoryAuditBackend())


def test_a_bad_durability_is_refused_before_the_key_file_is_created(tmp_path: Path) -> None:
    _refused_untouched(tmp_path / "log", ValueError, "durability must be one of", durability="fsnyc")
    msg = _refused_untouched(tmp_path / "log", ValueError, "durability", durability="x" * 10_000)
    assert len(msg) < 200       # the bad value is shown briefly
    _refused_untouched(tmp_path / "log", ValueError, "durability", durability=["fsync"])


def test_the_counts_already_checked_are_still_refused(tmp_path: Path) -> None:
    for name, bad in (("checkpoint_every", 0), ("anchor_every", True), ("anchor_every", 1.0),
                      ("checkpoint_every", "5"), ("anchor_every", -1)):
        _refused_untouched(tmp_path / "log", ValueError, f"{name} must be a positive int", key=KEY, **{name: bad})


def test_a_backend_that_is_not_a_backend_is_refused_by_the_constructor() -> None:
    for bad in (None, 5, "audit.db", object()):
        with pytest.raises(TypeError, match="backend must be an AuditBackend"):
            FlightRecorder(bad, KEY)  # type: ignore[arg-type]


def test_reanchor_refuses_a_short_key_before_writing_a_record() -> None:
    b = MemoryAuditBackend()
    with pytest.raises(AuditKeyError, match="at least 16"):
        reanchor(b, b"", accept_loss=True)
    assert list(b.audit_records()) == []


# -- the directory -----------------------------------------------------------------------------

def test_an_empty_directory_is_refused_not_the_current_directory(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for kw in ({}, {"key": KEY}, {"key": KEY, "sign": False}):
        with pytest.raises(ValueError, match="directory must name a directory"):
            FlightRecorder.open("", **kw)
    assert os.listdir(tmp_path) == []


def test_a_directory_that_is_not_a_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for bad in (None, 5, b"log", ["log"]):
        with pytest.raises(TypeError, match="directory must be a"):
            FlightRecorder.open(bad, key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        FlightRecorder.open("lo\x00g", key=KEY)
    assert os.listdir(tmp_path) == []


def test_a_directory_path_that_is_a_file_is_an_audit_log_error_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "not-a-dir"
    f.write_bytes(b"precious")
    for kw in ({}, {"key": KEY}, {"key": KEY, "sign": False}):
        with pytest.raises(AuditLogError, match="not-a-dir.*not a directory"):
            FlightRecorder.open(f, **kw)
        with pytest.raises(AuditLogError, match="not-a-dir"):
            FlightRecorder.open(f / "sub", **kw)   # under a file: NotADirectoryError, typed too
    assert f.read_bytes() == b"precious"
    with pytest.raises(AuditKeyError, match="not a directory"):
        load_key(f, env={})


def test_a_dangling_symlink_for_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(AuditLogError, match="not a directory"):
        FlightRecorder.open(tmp_path / "link", key=KEY)
    assert not (tmp_path / "gone").exists()


# -- the key file ------------------------------------------------------------------------------

def _bad_key_file(d: Path, data: bytes) -> None:
    rec = FlightRecorder.open(d, key=KEY, sign=False)
    _fill_and_close(rec, 1)
    p = d / "audit.key"
    p.write_bytes(data)
    p.chmod(0o600)


@FAST
@given(junk=st.binary(max_size=64))
def test_a_key_file_that_is_not_utf8_is_an_audit_key_error(tmp_path: Path, junk: bytes) -> None:
    d = tmp_path / "log"
    d.mkdir(exist_ok=True)
    p = d / "audit.key"
    p.write_bytes(junk + b"\xff")   # 0xff is never UTF-8
    p.chmod(0o600)
    with pytest.raises(AuditKeyError, match="not UTF-8"):
        load_key(d, env={})
    with pytest.raises(AuditKeyError, match="not UTF-8"):
        FlightRecorder.open(d, sign=False)
    assert not (d / "audit.db").exists()


def test_agentctl_audit_verify_reports_a_non_utf8_key_file_without_a_traceback(tmp_path: Path) -> None:
    _bad_key_file(tmp_path, b"\xff\xfe" + b"\x80" * 30)
    out = CliRunner().invoke(app, ["audit", "verify", "--dir", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert "not UTF-8" in out.output and "Traceback" not in out.output
    assert not isinstance(out.exception, UnicodeDecodeError)


def test_a_key_file_that_is_a_directory_is_an_audit_key_error(tmp_path: Path) -> None:
    (tmp_path / "audit.key").mkdir(mode=0o700)
    with pytest.raises(AuditKeyError, match="audit.key"):
        load_key(tmp_path, env={})


def test_an_env_key_that_is_not_utf8_is_an_audit_key_error(tmp_path: Path) -> None:
    # os.environ holds bytes that are not UTF-8 as lone surrogates (surrogateescape)
    with pytest.raises(AuditKeyError, match="not UTF-8"):
        load_key(tmp_path, env={"AGENTOS_AUDIT_KEY": "\udcff" * 20})
    assert not (tmp_path / "audit.key").exists()


# -- what stays allowed ------------------------------------------------------------------------

def test_good_options_still_open_a_recorder(tmp_path: Path) -> None:
    rec = FlightRecorder.open(str(tmp_path / "a"), durability="os", key=KEY, sign=False, now=lambda: 1.0,
                              wall=lambda: 2.0, group_commit=False, on_checkpoint=None, anchor_every=2)
    _fill_and_close(rec)
    assert verify_dir(tmp_path / "a", key=KEY).ok
    rec = FlightRecorder.open(tmp_path / "b")          # key and signing key made on first use
    _fill_and_close(rec)
    assert rec.latest is not None and (tmp_path / "b" / "audit.key").exists()
