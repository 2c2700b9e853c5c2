"""Re-record the golden runs: `python tests/golden/make_golden.py`.

Only when a change to the event or journal format is deliberate (bump ABI_VERSION then):
the point of these files is that old recordings keep replaying byte for byte.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kernel"))

from replay_workloads import BOOT, interp, live_kernel  # noqa: E402

from agentos.store import MemoryStore, record_run  # noqa: E402
from agentos.store.transfer import dump_run  # noqa: E402

GOLDEN = {
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
}


def main() -> None:
    for name, spec in GOLDEN.items():
        store = MemoryStore()
        k = live_kernel(1234)
        rid = record_run(k, store, name)
        k.run(interp, args=spec, **BOOT)
        lines = list(dump_run(store, rid))
        (HERE / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        print(name, len(lines), "lines")


if __name__ == "__main__":
    main()
