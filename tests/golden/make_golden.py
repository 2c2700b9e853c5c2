"""Record the golden runs of the current recording format: `python tests/golden/make_golden.py`.

Goldens are written to tests/golden/v<RECORDING_FORMAT>/ and the goldens of older formats
are never touched: the point of them is that recordings made by an older agentos keep
replaying (or are refused clearly) after the format moves on. Record new goldens when
RECORDING_FORMAT is bumped (kernel/recording.py says how), then add a line for each to
PROTECTS in tests/golden/test_goldens.py. Re-recording the current version's goldens
needs --force (only while that version is unreleased work in progress).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kernel"))

from replay_workloads import (  # noqa: E402
    BOOT, TOOLS, Typed, hibernating, interp, live_kernel, net_kernel, net_self_loop, tools_agent, typed_values,
)

from agentos.kernel.recording import RECORDING_FORMAT  # noqa: E402
from agentos.store import MemoryStore, record_run  # noqa: E402
from agentos.store.transfer import dump_run  # noqa: E402

GOLDEN: dict[str, Any] = {
    "agents_kv_echo_policy": {"ops": [
        ("set", "a", 1), ("echo", 1), ("echo_all", [1, 2, 3]), ("del", "a"), ("check", "kv.delete"),
        ("spawn", {"ops": [("echo", 5), ("send", 7), ("remember", "abc xyz"), ("sleep", 10)]}),
        ("spawn", {"ops": [("set", "forbidden", 1), ("echo", 2)]}),
        ("recv", 50), ("get", "a"), ("sleep", 20), ("now",),
        ("spawn", {"ops": [("echo_all", [4, 5]), ("yield",), ("echo", 9), ("send", 8)]}),
        ("recv", 30), ("echo", 3)]},
    "agents_many_children": {"ops": [
        ("spawn", {"ops": [("echo", i), ("send", i), ("sleep", 5 * i)]}) for i in range(6)]
        + [("recv", 40) for _ in range(6)] + [("echo_all", [1, 2, 3, 4])]},
    # since format 2: values keep their Python types through a store
    "journal_values_keep_their_types": typed_values,
    # since format 4: bounded tool calls are reserved, then settled
    "tool_calls_reserved_and_settled": tools_agent,
    # since format 6: network input (dial, remote sends and deliveries) is journaled
    "net_self_loop": net_self_loop,
    # since format 6: under a constant policy (AllowAll) device ops journal no decision
    "constant_policy_decisions_unjournaled": {"ops": [
        ("set", "a", 1), ("echo", 1), ("echo_all", [1, 2, 3]), ("get", "a"),
        ("spawn", {"ops": [("echo", 5), ("send", 7), ("set", "b", 2)]}),
        ("recv", 50), ("check", "kv.delete"), ("del", "a"), ("echo", 3)]},
    # since format 7: the run row holds the hibernation settings; processes waiting in recv
    # and sleep hibernate past the resident watermark and wake on their messages and timers
    "hibernation_watermark": hibernating,
}
CONSTANT_POLICY = {"constant_policy_decisions_unjournaled"}  # recorded under AllowAll


def main(argv: list[str]) -> int:
    out = HERE / f"v{RECORDING_FORMAT}"
    force = "--force" in argv
    existing = sorted(out.glob("*.jsonl")) if out.is_dir() else []
    if existing and not force:
        print(f"{out} already holds {len(existing)} goldens of format {RECORDING_FORMAT}; "
              f"bump RECORDING_FORMAT first, or pass --force to re-record them", file=sys.stderr)
        return 2
    out.mkdir(exist_ok=True)
    for name, spec in GOLDEN.items():
        store = MemoryStore()
        if spec is net_self_loop:
            k = net_kernel(1234)
        elif spec is hibernating:
            from agentos.sched import HibernationConfig

            k = live_kernel(1234, hibernation=HibernationConfig(max_resident=3))
        elif name in CONSTANT_POLICY:
            from agentos import AllowAll

            k = live_kernel(1234, policy=AllowAll())
        else:
            k = live_kernel(1234)
        rid = record_run(k, store, name)
        if spec is net_self_loop or spec is hibernating:
            k.run(spec, **BOOT)
        elif spec is tools_agent:
            from agentos import Quota
            from agentos.drivers.tools import ToolsDriver

            k.register_driver(ToolsDriver(TOOLS))
            k.run(spec, grant=["tools"], quota=Quota(tool_calls=20, tokens=1000))
        elif callable(spec):  # a program of its own, on the typed device
            k.register_driver(Typed())
            k.run(spec, grant=["typed"], quota=BOOT["quota"])
        else:
            k.run(interp, args=spec, **BOOT)
        lines = list(dump_run(store, rid))
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        print(f"v{RECORDING_FORMAT}/{name}", len(lines), "lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
