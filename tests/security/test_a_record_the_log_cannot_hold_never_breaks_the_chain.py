"""A record with a pid past 64 bits was chained, then failed to insert: every later commit
failed with it (the same jam one lone surrogate used to cause) and the log could not be
closed. A non-ASCII or empty kind was stored and made every later `verify` fail. The
recorder now checks a record is one the log can hold and the verifier accepts before
chaining it, so such a record refuses only its own action."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentos.audit import AuditUnavailable, FlightRecorder, verify_dir

KEY = b"k" * 32


@pytest.mark.parametrize("pid, kind", [(1 << 63, "decision"), (-(1 << 70), "decision"), (2, "décision"),
                                       (2, ""), (2, "kind\udc80")])
def test_an_unstorable_record_refuses_only_itself(tmp_path: Path, pid: int, kind: str) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    rec.append(1, "decision", {"n": 1})
    rec.commit()
    with pytest.raises(AuditUnavailable):
        rec.append(pid, kind, {"n": 2})
    rec.append(1, "decision", {"n": 3})
    assert rec.commit() == 1
    rec.close()
    report = verify_dir(tmp_path, KEY)
    assert report.ok and report.count == 2, report.summary()


def test_non_finite_clocks_are_refused_too(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False, now=lambda: float("nan"))
    with pytest.raises(AuditUnavailable):
        rec.append(1, "decision", {})
    rec.close()
    assert verify_dir(tmp_path, KEY).ok
