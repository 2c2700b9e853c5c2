"""Without libseccomp the sandbox says so, and by default refuses to run rather than run unfiltered."""
from __future__ import annotations

from typing import Any

from agentos.sandbox import seccomp

from sbx import run_sandboxed

CODE = "async def main(sys, args):\n    return 'ran'\n"


def _missing(monkeypatch: Any) -> None:
    def unavailable() -> bytes:
        raise seccomp.SeccompUnavailable("pyseccomp is not installed")
    monkeypatch.setattr(seccomp, "filter_bpf", unavailable)


def test_no_filter_means_no_run_under_require_isolation(monkeypatch: Any) -> None:
    _missing(monkeypatch)
    out = run_sandboxed(CODE)
    assert "no seccomp filter" in out.reason and "pyseccomp is not installed" in out.reason, out.reason


def test_without_require_isolation_it_runs_and_says_what_it_lacks(monkeypatch: Any) -> None:
    _missing(monkeypatch)
    out = run_sandboxed(CODE, require_isolation=False)
    assert out.reason == "normal"
    started = [e.data[2] for e in out.kernel.events.events(kind="log") if e.data[1] == "sandbox started"]
    assert started[0]["seccomp"].startswith("unavailable (pyseccomp is not installed")


def test_the_filter_is_built_once_and_cached() -> None:
    assert seccomp.filter_bpf() is seccomp.filter_bpf()
