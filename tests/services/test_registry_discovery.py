"""Discovery lists exactly what the caller can call: for random policies and random
rights on the registry capability, every listed tool can be called through the operation
that listed it, and every tool that can be called is listed."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Kernel, NoPolicy
from agentos.abi.errors import SyscallError
from agentos.services import HostTool, ToolRegistry, install_registry

from .policies import policy
from .tools import TWO_INTS


def _fn(a: int, b: int) -> int:
    return a + b


TOOLS = {  # name -> (effect, class)
    "t_add": ("read_only", "Addition"),
    "t_mul": ("read_only", "Multiplication"),
    "t_put": ("read_write", "Storage"),
    "t_del": ("read_write", None),
}
ARGS = {"a": 1, "b": 2}


def registry() -> ToolRegistry:
    return ToolRegistry([HostTool({"name": n, "version": "1", "risk": "pure", "effect": eff, "schema": TWO_INTS,
                                   "ontology_class": cls}, _fn) for n, (eff, cls) in TOOLS.items()])


rule = st.one_of(
    st.tuples(st.sampled_from(["allow", "deny"]), st.just("action"),
              st.sampled_from([f"registry.{n}" for n in TOOLS] + ["registry.*"])),
    st.tuples(st.sampled_from(["allow", "deny"]), st.just("class"),
              st.sampled_from(["Arithmetic", "Addition", "Multiplication", "Storage"])),
)
policies = st.one_of(
    st.just("allow-all"), st.just("no-policy"),
    st.tuples(st.sampled_from(["strict", "strict", "permissive", "audit"]), st.lists(rule, max_size=4)),
)
rights = st.sets(st.sampled_from(["read", "write"])).map(lambda r: ["open", *sorted(r)])


def build(spec: Any) -> Any:
    if spec == "allow-all":
        return AllowAll()
    if spec == "no-policy":
        return NoPolicy()
    mode, rules = spec
    lines = [f'kernel: {{version: "1.0", mode: {mode}}}', "policies:"]
    for i, (effect, kind, target) in enumerate(rules):
        lines += [f"  - name: r{i}", f"    {kind}: {target}", f"    effect: {effect}"]
    if not rules:
        lines[-1] = "policies: []"
    return policy("\n".join(lines), ontology=True)


async def attempt(sys: Any, job: Any) -> None:
    """Tells its parent when the call went through (a refusal is caught, a deny kills it)."""
    op, tool = job
    h = await sys.open(sys.caps[0])
    try:
        await getattr(sys, op)(h, {"tool": tool, "args": ARGS})
    except SyscallError:
        return
    await sys.send(sys.caps[1], (op, tool))


async def init(sys: Any, rights_: list[str]) -> Any:
    cap = await sys.attenuate(sys.caps[0], rights=rights_)
    listed: dict[str, list[str]] = {}
    h = await sys.open(cap)
    for op in ("read", "write"):
        try:
            listed[op] = [t["name"] for t in await getattr(sys, op)(h, {"op": "list"})]
        except SyscallError:  # no right for this operation: nothing can be called through it
            listed[op] = []
    called: dict[str, list[str]] = {"read": [], "write": []}
    me = await sys.self_cap()
    for op in ("read", "write"):
        for tool in sorted(TOOLS):
            _pid, c = await sys.spawn(attempt, args=(op, tool), caps=[cap, me])
            await sys.waitpid(c)
            msg = await sys.recv(timeout=0)
            if msg is not None:
                called[op].append(tool)
    return listed, called


@settings(max_examples=30, deadline=None)
@given(spec=policies, rights_=rights)
def test_discovery_lists_exactly_the_tools_the_caller_can_call(spec: Any, rights_: list[str]) -> None:
    k = Kernel(deterministic=True, policy=build(spec))
    install_registry(k, registry())
    res = k.run(init, grant=["registry"], args=rights_)
    assert str(res.reason) == "normal", res.reason
    listed, called = res.value
    for op in ("read", "write"):
        assert sorted(listed[op]) == called[op], (op, spec, rights_, listed, called)
