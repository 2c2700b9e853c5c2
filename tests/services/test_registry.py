"""The tool registry on a kernel: tiers chosen by the registry, calls through the device
path (policy, reservation, journal), discovery that lists exactly what can be called."""
from __future__ import annotations

import json

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import BadArgument, CapError, DriverError, PolicyDenied, ToolError
from agentos.abi.types import ExitKind, Quota
from agentos.audit import FlightRecorder
from agentos.services import ManifestError, ToolRegistry, install_registry

from .policies import policy
from .tools import ADD, CALLS, MUL, PUT, host_tools

pytest.importorskip("wasmtime")


def run(init, *, pol=None, audit=None, registry=None, quota=None):  # type: ignore[no-untyped-def]
    k = Kernel(deterministic=True, policy=pol if pol is not None else AllowAll(), audit=audit)
    reg = install_registry(k, registry if registry is not None else ToolRegistry(host_tools()))
    res = k.run(init, grant=["registry"], quota=quota)
    return k, reg, res


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLS.clear()


def test_host_pure_tool_runs_in_the_kernel_metered_and_journaled() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        out = await sys.read(h, {"tool": "add", "args": {"a": 2, "b": 40}})
        return out, (await sys.budget()).used["tool_calls"]

    k, reg, res = run(init)
    assert res.value == (42, 1)
    assert CALLS == [("add", 2, 40)]  # the host function itself ran, in this process
    assert [e.action for e in k.journal.entries if e.op == "read"] == ["registry.add"]
    assert [e.data[0] for e in k.events.events(kind="policy")] == ["registry.add"]


def test_tool_registered_at_run_time_as_pure_runs_in_wasm_never_in_the_kernel() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        desc = await sys.write(h, {"op": "register", "manifest": {**MUL, "risk": "pure", "driver": "tools"}})
        out = await sys.read(h, {"tool": "mul", "args": {"a": 6, "b": 7}})
        return desc["tier"], desc["origin"], out

    k, reg, res = run(init)
    assert res.value == ("wasm", "runtime", 42)
    assert set(reg.in_kernel.tools) == {"add", "put"}  # the in-kernel table never got it
    assert reg.entries["mul"].tier.value == "wasm"
    assert reg.wasm().compiles >= 1  # wasmtime compiled and ran it
    call = [e for e in k.journal.entries if e.action == "registry.mul"]
    assert call and call[0].reductions > 0  # its fuel was charged


@pytest.mark.parametrize("field", ["tier", "driver", "in_kernel", "sandbox"])
def test_caller_choosing_the_tier_is_refused(field: str) -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        try:
            await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 2}, field: "in_kernel"})
        except ToolError as e:
            return str(e), (await sys.budget()).used["tool_calls"]

    _k, _reg, res = run(init)
    msg, used = res.value
    assert repr(field) in msg and "the registry chooses where a tool runs" in msg
    assert used == 0 and CALLS == []


def test_schema_invalid_arguments_are_refused_before_execution_and_charged_nothing() -> None:
    bad = [{"a": "two", "b": 1}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, ["not", "an", "object"],
           {"a": float("nan"), "b": 1}, {"a": float("inf"), "b": 1}, None]
    too_wide = {"a": 1, "b": 2 ** 70}  # an integer to the schema, but the export takes an i64

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": MUL})
        errors = []
        for tool in ("add", "mul"):
            for args in bad:
                try:
                    await sys.read(h, {"tool": tool, "args": args})
                except (ToolError, BadArgument) as e:
                    errors.append(type(e).__name__)
        try:
            await sys.read(h, {"tool": "mul", "args": too_wide})
        except ToolError as e:
            errors.append("i64" in str(e))
        b = await sys.budget()
        return errors, b.used["tool_calls"]

    k, _reg, res = run(init)
    assert res.reason.kind is ExitKind.NORMAL, res.reason
    errors, used = res.value
    assert errors == ["ToolError"] * (2 * len(bad)) + [True]
    assert used == 1 and CALLS == []  # the registration's one call; the refused calls nothing
    assert not [e for e in k.journal.entries if e.action == "registry.mul" and e.ok]


def test_read_write_tool_needs_the_write_right_and_a_read_only_cap_lists_only_read_only_tools() -> None:
    async def reader(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open(sys.caps[0])
        seen = [t["name"] for t in await sys.read(h, {"op": "list"})]
        ok = await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})
        out = [seen, ok]
        try:
            await sys.read(h, {"tool": "put", "args": {"key": "k", "value": "v"}})
        except ToolError as e:
            out.append("read_write" in str(e))
        try:
            await sys.write(h, {"tool": "put", "args": {"key": "k", "value": "v"}})
        except CapError:
            out.append("no write right")
        try:
            await sys.write(h, {"op": "list"})
        except CapError:
            out.append("no write list")
        return out

    async def init(sys, _):  # type: ignore[no-untyped-def]
        ro = await sys.attenuate(sys.caps[0], rights=["open", "read"])
        _pid, c = await sys.spawn(reader, caps=[ro])
        await sys.waitpid(c)
        h = await sys.open("registry")
        return [t["name"] for t in await sys.write(h, {"op": "list"})]

    k, _reg, res = run(init)
    assert res.value == ["add", "put"]
    child = [e.data for e in k.events.events(kind="exit") if e.pid == 2][0]
    assert CALLS == [("add", 1, 1)]
    assert "normal" in str(child)


STRICT = '''
kernel: {version: "1.0", mode: strict}
policies:
  - name: adding
    action: registry.add
    effect: allow
  - name: registering
    action: registry.register
    effect: allow
'''


def test_discovery_never_lists_a_tool_policy_denies_and_calling_it_kills() -> None:
    async def caller(sys, tool):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        return await sys.write(h, {"tool": tool, "args": {"a": 1, "b": 2} if tool != "put" else
                                   {"key": "k", "value": "v"}})

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": MUL})
        seen = [t["name"] for t in await sys.write(h, {"op": "list"})]
        exits = {}
        for tool in ("add", "mul", "put"):
            _p, c = await sys.spawn(caller, args=tool, caps=["registry"])
            exits[tool] = str(await sys.waitpid(c))
        return seen, exits

    _k, _reg, res = run(init, pol=policy(STRICT))
    seen, exits = res.value
    assert seen == ["add"]
    assert exits == {"add": "normal", "mul": "policy(default-deny)", "put": "policy(default-deny)"}


ONTO = '''
kernel: {version: "1.0", mode: strict}
policies:
  - name: arithmetic
    class: Arithmetic
    effect: allow
  - name: registering
    action: registry.register
    effect: allow
'''


def test_discovery_by_class_follows_ontology_subsumption_and_policy_class_rules() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": MUL})
        arith = [t["name"] for t in await sys.write(h, {"op": "list", "class": "Arithmetic"})]
        adds = [t["name"] for t in await sys.write(h, {"op": "list", "class": "Addition"})]
        store = [t["name"] for t in await sys.write(h, {"op": "list", "class": "Storage"})]
        math = [t["name"] for t in await sys.write(h, {"op": "list", "capability": "math"})]
        one = [t["name"] for t in await sys.write(h, {"op": "list", "name": "mul"})]
        return arith, adds, store, math, one, await sys.read(h, {"tool": "mul", "args": {"a": 3, "b": 3}})

    _k, _reg, res = run(init, pol=policy(ONTO, ontology=True))
    arith, adds, store, math, one, nine = res.value
    assert arith == ["add", "mul"] and adds == ["add"] and one == ["mul"] and nine == 9
    assert store == []            # put is Storage, which no rule allows: not listed
    assert math == ["add", "mul"]


def test_run_time_tool_typed_by_a_class_the_ontology_lacks_is_refused() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        try:
            await sys.write(h, {"op": "register", "manifest": {**MUL, "ontology_class": "Teleportation"}})
        except ManifestError as e:
            return e.field

    _k, reg, res = run(init, pol=policy(ONTO, ontology=True))
    assert res.value == "ontology_class"
    assert "mul" not in reg.entries


def test_strict_kernel_without_policy_refuses_run_time_registration_and_lists_nothing() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        seen = await sys.write(h, {"op": "list"})
        try:
            await sys.write(h, {"op": "register", "manifest": MUL})
        except PolicyDenied as e:
            return seen, str(e)

    k = Kernel(deterministic=True)  # NoPolicy: every action on the world is refused
    reg = install_registry(k, ToolRegistry(host_tools()))
    res = k.run(init, grant=["registry"])
    seen, msg = res.value
    assert seen == [] and "registry.register" in msg
    assert "mul" not in reg.entries


def test_registration_is_audited_in_the_flight_recorder_and_the_event_log() -> None:
    rec = FlightRecorder.in_memory(b"k" * 32)

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        return (await sys.write(h, {"op": "register", "manifest": MUL}))["name"]

    k, reg, res = run(init, audit=rec)
    assert res.value == "mul"
    actions = [json.loads(r.data) for r in rec.records() if r.kind == "action"]
    regs = [a for a in actions if "registry.register" in json.dumps(a)]
    assert regs, actions
    text = json.dumps(regs[0])
    assert '"mul"' in text and reg.entries["mul"].manifest.wasm.sha256 in text and '"wasm"' in text
    assert "registry.register" in [e.data[0] for e in k.events.events(kind="policy")]


def test_registering_a_name_twice_is_refused_and_the_first_stays() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        try:
            await sys.write(h, {"op": "register", "manifest": {**MUL, "name": "add"}})
        except ManifestError as e:
            return str(e), await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}})

    _k, reg, res = run(init)
    assert "already registered" in res.value[0] and res.value[1] == 2
    assert reg.entries["add"].origin.value == "host"


def test_process_registration_flood_is_capped() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        n = 0
        try:
            for i in range(10):
                await sys.write(h, {"op": "register", "manifest": {**MUL, "name": f"mul{i}"}})
                n += 1
        except ToolError as e:
            return n, str(e)

    _k, reg, res = run(init, registry=ToolRegistry(host_tools(), max_per_process=3))
    assert res.value[0] == 3 and "limit of 3" in res.value[1]


def test_hostile_manifests_through_the_syscall_are_refused_and_the_kernel_runs_on() -> None:
    deep: dict = {"type": "integer"}
    for _ in range(10_000):
        deep = {"type": "object", "properties": {"x": deep}}
    cyclic = {**MUL, "schema": {"type": "object", "$defs": {"a": {"$ref": "#/$defs/a"}},
                                "properties": {"a": {"$ref": "#/$defs/a"}, "b": {"type": "integer"}}}}
    hostile = [{**MUL, "schema": deep}, cyclic, {**MUL, "wasm": {**MUL["wasm"], "module": "x" * (5 << 20)}},
               {**MUL, "wasm": {**MUL["wasm"], "module": "(module"}}, {**MUL, "wasm": {**MUL["wasm"], "export": "nope"}},
               {**MUL, "risk": "untrusted_code"}, "manifest"]

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        out = []
        for m in hostile:
            try:
                await sys.write(h, {"op": "register", "manifest": m})
                out.append("registered")
            except (ManifestError, BadArgument) as e:
                out.append((type(e).__name__, getattr(e, "field", None)))
        out.append(await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 1}}))
        return out

    _k, reg, res = run(init)
    assert res.value == [("BadArgument", None), ("ManifestError", "schema.$ref"),
                         ("ManifestError", "wasm.module"), ("ManifestError", "wasm.module"),
                         ("ManifestError", "wasm.export"), ("ManifestError", "risk"),
                         ("ManifestError", "(root)"), 2]
    assert set(reg.entries) == {"add", "put"}


ONLY_WASM = '''
kernel: {version: "1.0", mode: strict}
policies:
  - name: wasm-only
    action: registry.register
    effect: allow
    constraints:
      tier: {enum: [wasm]}
'''


def test_policy_constrains_what_a_process_may_register_by_tier() -> None:
    async def sneaky(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": {**ADD, "name": "py", "source": {
            "code": "def run(a, b):\n    return a\n", "entry": "run"}}})

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        ok = (await sys.write(h, {"op": "register", "manifest": MUL}))["tier"]
        _p, c = await sys.spawn(sneaky, caps=["registry"])
        return ok, str(await sys.waitpid(c))

    _k, reg, res = run(init, pol=policy(ONLY_WASM))
    assert res.value == ("wasm", "policy(wasm-only)")
    assert "py" not in reg.entries and "mul" in reg.entries


def test_policy_sees_the_class_of_a_tool_registered_after_it_was_first_asked_about() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        before = (await sys.check_policy("registry.mul", {})).allowed  # cached: an untyped action
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": MUL})  # typed Multiplication
        after = (await sys.check_policy("registry.mul", {})).allowed
        return before, after, await sys.read(h, {"tool": "mul", "args": {"a": 2, "b": 5}})

    _k, _reg, res = run(init, pol=policy(ONTO, ontology=True))
    assert res.value == (False, True, 10)


def test_registration_is_charged_one_call_and_a_budget_bounds_it() -> None:
    from agentos.abi.types import Quota

    async def registrar(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        for i in range(10):
            await sys.write(h, {"op": "register", "manifest": {**MUL, "name": f"m{i}"}})

    async def init(sys, _):  # type: ignore[no-untyped-def]
        _p, c = await sys.spawn(registrar, caps=["registry"], quota=Quota(tool_calls=3))
        return str(await sys.waitpid(c))

    _k, reg, res = run(init)
    assert res.value == "quota(tool_calls)"
    assert sorted(n for n in reg.entries if n.startswith("m")) == ["m0", "m1", "m2"]


@pytest.mark.parametrize("req", [
    {"op": ["list"]}, {"op": {"a": 1}}, {"op": 5}, {"op": "call", "tool": "add"}, {"op": "nope"},
    {"op": "list", "tier": "kernel"}, {"tool": "add", "args": {"a": 1, "b": 2}, "tier": "kernel"},
    {"op": "register", "manifest": MUL, "risk": "pure"}, ["list"], "list",
], ids=["op-list", "op-dict", "op-int", "op-call", "op-unknown", "list-extra", "call-picks-tier",
        "register-extra", "not-a-dict", "a-string"])
def test_malformed_registry_requests_are_typed_errors(req) -> None:  # type: ignore[no-untyped-def]
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        try:
            await sys.read(h, req)
        except ToolError as e:
            return str(e)
        return "accepted"

    _k, _reg, res = run(init)
    assert res.value != "accepted" and res.value.startswith("registry:"), res.value
    assert CALLS == []


# -- hostile arguments, requests and replies -------------------------------------------------

NUM = {"type": "object", "properties": {"a": {"type": "number", "maximum": 1, "multipleOf": 0.5}},
       "required": ["a"], "additionalProperties": False}
ANY = {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}


def _echo(a: float) -> float:
    CALLS.append(("echo", a))
    return a


def _cyclic(a: float) -> list:  # type: ignore[type-arg]
    out: list = []  # type: ignore[type-arg]
    out.append(out)
    return out


def _nan(a: float) -> float:
    return float("nan")


def _huge(a: float) -> int:
    return 10 ** 5000


def _object(a: float) -> object:
    return object()


def _hostile_tools() -> list:  # type: ignore[type-arg]
    from agentos.services import HostTool

    def tool(name: str, fn, schema: dict = ANY) -> HostTool:  # type: ignore[no-untyped-def, type-arg]
        return HostTool({"name": name, "version": "1", "risk": "pure", "effect": "read_only", "schema": schema}, fn)

    return [*host_tools(), tool("echo", _echo, NUM), tool("cyclic", _cyclic), tool("nan", _nan),
            tool("huge", _huge), tool("object", _object)]


def test_a_nan_infinite_or_overflowing_argument_is_refused_before_any_budget_is_reserved() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        out = []
        for a in (float("nan"), float("inf"), -float("inf"), 10 ** 3000):
            try:
                await sys.read(h, {"tool": "echo", "args": {"a": a}})
                out.append("accepted")
            except ToolError as e:
                out.append("bad arguments" in str(e))
        return out, (await sys.budget()).used["tool_calls"]

    k, _reg, res = run(init, registry=ToolRegistry(_hostile_tools()))
    assert res.value == ([True] * 4, 0)
    assert CALLS == []  # NaN passes `maximum` (every comparison with it is false): it never got through


class _HostileDict(dict):  # type: ignore[type-arg]
    """A dict whose own lookups raise: the registry must read it through dict's methods."""

    def get(self, *a, **kw):  # type: ignore[no-untyped-def]
        raise RuntimeError("hostile get")

    def __getitem__(self, k):  # type: ignore[no-untyped-def]
        raise RuntimeError("hostile __getitem__")


def test_a_dict_subclass_request_arguments_or_manifest_runs_none_of_its_code() -> None:
    """The kernel refuses a container subclass at the syscall boundary, before any of its
    code runs (kernel/canon.py): the registry never sees one, and nothing is registered."""
    from agentos import BadArgument

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        out = []
        for call in (lambda: sys.read(h, _HostileDict({"tool": "add", "args": {"a": 1, "b": 2}})),
                     lambda: sys.read(h, {"tool": "add", "args": _HostileDict({"a": 1, "b": 2})}),
                     lambda: sys.write(h, {"op": "register", "manifest": _HostileDict({**MUL, "name": "mul2"})}),
                     lambda: sys.write(h, {"op": "register", "manifest": {
                         **MUL, "name": "mul2", "schema": _HostileDict(MUL["schema"])}})):
            try:
                await call()
                out.append("accepted")
            except BadArgument as e:
                out.append("_HostileDict" in str(e))
        out.append(await sys.read(h, {"tool": "add", "args": {"a": 1, "b": 2}}))
        try:
            await sys.write(h, {"op": "register", "manifest": {**MUL, "name": "mul3", "schema": {
                "type": "object", "properties": {1: {"type": "integer"}}}}})
        except ManifestError as e:
            out.append(e.field)
        return out, (await sys.budget()).used["tool_calls"]

    _k, reg, res = run(init)
    assert res.value == ([True, True, True, True, 3, "schema.properties"], 1), res.reason
    assert "mul2" not in reg.entries


class _HostileStr(str):
    """A str whose own comparisons raise: the registry must read an op or a tool name by value."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    __hash__ = str.__hash__


def test_a_str_subclass_op_or_tool_name_runs_none_of_its_code() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        listed = await sys.write(h, {"op": _HostileStr("list")})
        out = await sys.read(h, {"tool": _HostileStr("add"), "args": {"a": 1, "b": 2}})
        return sorted(t["name"] for t in listed), out

    _k, _reg, res = run(init)
    assert res.value == (["add", "put"], 3), res.reason


@pytest.mark.parametrize("tool,why", [("cyclic", "cycle"), ("nan", "nan"), ("huge", "bits"),
                                      ("object", "type object")])
def test_a_hostile_tool_reply_is_a_typed_error_charged_its_call(tool: str, why: str) -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        try:
            await sys.read(h, {"tool": tool, "args": {"a": 1}})
            out = "accepted"
        except ToolError as e:
            out = str(e)
        b = await sys.budget()
        return out, b.used["tool_calls"], b.remaining["tool_calls"]

    k, _reg, res = run(init, registry=ToolRegistry(_hostile_tools()), quota=Quota(tool_calls=5))
    msg, used, left = res.value
    assert f"tool {tool!r}: bad reply" in msg and why in msg, msg
    assert (used, left) == (1, 4)  # the call is charged; nothing stays reserved
    assert [e.ok for e in k.journal.entries if e.action == f"registry.{tool}"] == [False]


def test_a_wasm_tool_answering_nan_is_a_typed_error_and_its_fuel_is_charged() -> None:
    wat = '(module (func (export "f") (param f64) (result f64) f64.const nan))'
    man = {**ADD, "name": "nanwasm", "schema": ANY, "wasm": {"module": wat, "export": "f", "params": ["a"]}}

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": man})
        try:
            await sys.read(h, {"tool": "nanwasm", "args": {"a": 1.0}})
            return "accepted"
        except ToolError as e:
            return str(e)

    k, _reg, res = run(init)
    assert "bad reply" in res.value and "nan" in res.value, res.value
    call = [e for e in k.journal.entries if e.action == "registry.nanwasm"]
    assert len(call) == 1 and not call[0].ok and call[0].reductions > 0  # the fuel it burnt is charged


@pytest.mark.parametrize("kw", [{"max_runtime_tools": float("nan")}, {"max_per_process": float("nan")},
                                {"max_runtime_tools": -1}, {"max_per_process": True}, {"max_runtime_tools": 10 ** 400},
                                {"allow_runtime": "false"}, {"require_isolation": "no"}, {"allow_runtime": 0},
                                {"sandbox_timeout_s": True}, {"sandbox_timeout_s": float("nan")}])
def test_a_careless_registry_configuration_is_refused_not_read_as_no_limit(kw: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        ToolRegistry(host_tools(), **kw)


def test_a_caller_editing_a_listed_or_registered_schema_does_not_change_what_calls_are_checked_against() -> None:
    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        listed = await sys.read(h, {"op": "list", "name": "add"})
        listed[0]["schema"]["properties"]["a"]["type"] = "string"  # the reply is this caller's to edit...
        listed[0]["schema"]["additionalProperties"] = True
        desc = await sys.write(h, {"op": "register", "manifest": {**MUL, "name": "mul2"}})
        desc["schema"]["properties"]["a"]["type"] = "string"
        out = []
        for tool in ("add", "mul2"):
            try:
                await sys.read(h, {"tool": tool, "args": {"a": "x", "b": 2}})
                out.append("accepted")
            except ToolError as e:
                out.append("is not of type 'integer'" in str(e))
        return out

    _k, reg, res = run(init)
    assert res.value == [True, True]  # ...but not the registry's
    assert CALLS == [] and reg.entries["add"].manifest.schema["properties"]["a"]["type"] == "integer"


def test_a_wasm_float_argument_past_the_exports_range_is_refused_not_an_overflow_error() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
              "required": ["a", "b"]}
    wat = '(module (func (export "f") (param f64 f32) (result f64) local.get 0))'
    man = {**ADD, "name": "fid", "schema": schema, "wasm": {"module": wat, "export": "f", "params": ["a", "b"]}}

    async def init(sys, _):  # type: ignore[no-untyped-def]
        h = await sys.open("registry")
        await sys.write(h, {"op": "register", "manifest": man})
        out = []
        for a, b in ((10 ** 400, 1.0), (-(10 ** 309), 1.0), (1.0, 1e39), (2.5, 1.5)):
            try:
                out.append(await sys.read(h, {"tool": "fid", "args": {"a": a, "b": b}}))
            except ToolError as e:
                out.append("must be a finite number" in str(e))
        return out, (await sys.budget()).used["tool_calls"]

    _k, _reg, res = run(init)
    assert res.value == ([True, True, True, 2.5], 2), res.reason  # the registration and the one good call


class _Loud:
    """A value whose __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise RuntimeError("hostile __str__")

    __repr__ = __str__


@pytest.mark.parametrize("req", [{"op": _Loud()}, {"tool": _Loud(), "args": {}}])
def test_an_unprintable_op_or_tool_name_is_a_tool_error_naming_its_type(req: dict) -> None:  # type: ignore[type-arg]
    reg = ToolRegistry(host_tools())  # called as a host would, with no kernel check in front
    with pytest.raises(ToolError, match="_Loud"):
        reg.read(1, req)
