"""Tool registry figures: what a call costs in each tier, beside the plain tools driver.

  * in-kernel: a host tool called through the registry (`sys.read` → schema check with
    RE2 patterns → the tools driver) beside the same function on a bare `ToolsDriver`;
  * WASM: a tool registered at run time as a module, called through the registry (a fresh
    handle per call from the compile cache, fuel charged);
  * sandbox: a tool registered at run time as Python source: a child OS process per call;
  * discovery: listing 200 tools under a strict `PolicyEngine` (one dry-run check each).
Each figure runs in a live kernel on a real clock and counts wall time.
"""
from __future__ import annotations

import time
from typing import Any

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
          "required": ["a", "b"], "additionalProperties": False}
WAT = '(module (func (export "add") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add))'
SRC = "def run(a, b):\n    return a + b\n"


def add(a: int, b: int) -> int:
    return a + b


def _manifest(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "version": "1", "risk": "pure", "effect": "read_only", "schema": SCHEMA, **kw}


def _timed(k: Any, body: Any, grant: str) -> float:
    out: dict[str, float] = {}

    async def init(sys: Any, _: Any) -> None:
        out["t"] = await body(sys)

    res = k.run(init, grant=[grant])
    assert str(res.reason) == "normal", res.reason
    return out["t"]


def run(quick: bool = False) -> list[dict[str, Any]]:
    from agentos import AllowAll, Kernel
    from agentos.drivers.tools import Tool, ToolsDriver
    from agentos.services import HostTool, ToolRegistry, install_registry

    n = 2000 if quick else 20000
    rows: list[dict[str, Any]] = []

    async def calls(sys: Any, tool: str, count: int) -> float:
        h = await sys.open(sys.caps[0])
        t = time.perf_counter()
        for i in range(count):
            await sys.read(h, {"tool": tool, "args": {"a": i, "b": 1}})
        return time.perf_counter() - t

    k = Kernel(policy=AllowAll())
    k.register_driver(ToolsDriver([Tool("add", add, SCHEMA, effect="read_only")]))
    bare = _timed(k, lambda s: calls(s, "add", n), "tools")
    k = Kernel(policy=AllowAll())
    install_registry(k, ToolRegistry([HostTool(_manifest("add"), add)]))
    ours = _timed(k, lambda s: calls(s, "add", n), "registry")
    rows.append({"name": "registry call, in-kernel tier", "ops_per_s": n / ours, "ceiling_ops_per_s": n / bare,
                 "ratio": round(bare / ours, 2), "notes": "ceiling: the same function on a bare ToolsDriver"})

    async def reg_then(sys: Any, manifest: dict[str, Any], count: int) -> float:
        h = await sys.open(sys.caps[0])
        await sys.write(h, {"op": "register", "manifest": manifest})
        return await calls(sys, manifest["name"], count)

    m = n // 10
    k = Kernel(policy=AllowAll())
    install_registry(k, ToolRegistry())
    t = _timed(k, lambda s: reg_then(s, _manifest("wadd", wasm={"module": WAT, "export": "add",
                                                                 "params": ["a", "b"]}), m), "registry")
    rows.append({"name": "registry call, WASM tier", "ops_per_s": m / t,
                 "notes": "run-time tool: fresh handle from the compile cache, worker thread, fuel"})

    s = 5 if quick else 20
    k = Kernel(policy=AllowAll())
    install_registry(k, ToolRegistry())
    t = _timed(k, lambda sy: reg_then(sy, _manifest("padd", source={"code": SRC, "entry": "run"}), s), "registry")
    rows.append({"name": "registry call, sandbox tier", "ops_per_s": s / t,
                 "notes": "run-time tool: one child OS process per call (namespaces, seccomp, rlimits)"})

    from agentos.policy import PolicyEngine
    from agentos.policy.loader import parse_policy

    text = ('# p\n\n```yaml\nkernel: {version: "1.0", mode: strict}\npolicies:\n'
            '  - name: evens\n    action: registry.*\n    effect: allow\n'
            '  - name: odd\n    action: [' + ", ".join(f"registry.t{i}" for i in range(1, 200, 2)) + ']\n'
            '    effect: deny\n```\n')
    pol = PolicyEngine(parse_policy(text, extra_families=["registry"]))
    k = Kernel(policy=pol)
    install_registry(k, ToolRegistry([HostTool(_manifest(f"t{i}"), add) for i in range(200)]))
    lists = 50 if quick else 500

    async def discover(sys: Any) -> float:
        h = await sys.open(sys.caps[0])
        t0 = time.perf_counter()
        for _ in range(lists):
            got = await sys.read(h, {"op": "list"})
        assert len(got) == 100
        return time.perf_counter() - t0

    t = _timed(k, discover, "registry")
    rows.append({"name": "registry discovery, 200 tools, strict policy", "ops_per_s": lists / t,
                 "unit": "lists/s", "notes": "100 listed: one dry-run policy check per tool per list"})
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
