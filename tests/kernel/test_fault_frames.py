"""A process that faults keeps its traceback (file, line, function) in the event log."""
from __future__ import annotations

from agentos import Kernel


async def _helper(sys):  # type: ignore[no-untyped-def]
    await sys.log("info", "about to fail")
    return {}["missing"]


async def faulty(sys, args):  # type: ignore[no-untyped-def]
    return await _helper(sys)


def test_fault_event_names_the_program_frames_not_the_kernels() -> None:
    k = Kernel(deterministic=True)
    res = k.run(faulty)
    assert str(res.reason).startswith("fault(KeyError")
    [ev] = [e for e in k.events if e.kind == "fault"]
    assert ev.data["error"] == "KeyError" and ev.data["message"] == "'missing'"
    names = [f[2] for f in ev.data["frames"]]
    assert names == ["faulty", "_helper"]
    assert all(f[0] == __file__ for f in ev.data["frames"])
    assert ev.data["frames"][-1][1] == _helper.__code__.co_firstlineno + 2
    kinds = [e.kind for e in k.events if e.pid == 1]
    assert kinds.index("fault") < kinds.index("exit")


def test_fault_frames_are_bounded_for_deep_recursion() -> None:
    async def deep(sys, args):  # type: ignore[no-untyped-def]
        def down(n: int) -> int:
            return down(n + 1)
        return down(0)

    k = Kernel(deterministic=True)
    res = k.run(deep)
    assert "RecursionError" in str(res.reason)
    [ev] = [e for e in k.events if e.kind == "fault"]
    assert len(ev.data["frames"]) == 20
