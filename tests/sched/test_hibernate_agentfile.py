"""Agent files: export a hibernated message loop, import it into another kernel; hostile files."""
from __future__ import annotations

import json

import pytest

from agentos import Kernel, Quota
from agentos.abi.errors import ABIMismatch, KernelError, QuotaExceeded
from agentos.abi.types import Right
from agentos.drivers.kv import KVDriver
from agentos.sched import HibernationConfig
from agentos.sched.agentfile import AgentFileError, export_agent, import_agent
from tests.sched.test_hibernate import _ask, counter

pytestmark = pytest.mark.live_only(reason="two kernels: the import is a change made outside any syscall, "
                                          "which no journal holds")


def _exported(quota=None, grant=()):
    """Run a kernel in which a counter answers twice, holds a kv cap, and is exported."""
    ref = {}
    out = {}

    async def init(sys, args):
        pid, cap = await sys.spawn(counter, args="x", quota=quota, caps=list(grant))
        await _ask(sys, cap)
        await _ask(sys, cap)
        await sys.sleep(1)
        out["file"] = export_agent(ref["k"], pid)
        out["state"] = ref["k"].procs[pid].state.value
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    k.register_driver(KVDriver())
    ref["k"] = k
    assert k.run(init, grant=list(grant), quota=Quota(mem=50_000)).value == "ok"
    return out


def _import(data, *, quota=Quota(mem=50_000), grant=(), rights=None, register=True):
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        if rights is not None:  # the importer holds kv with fewer rights
            p = k.procs[1]
            ref_ = p.devices["kv"]
            p.caps[ref_].rights = int(rights)
        try:
            pid = import_agent(k, data, parent=1)
        except Exception as e:  # noqa: BLE001 - the test looks at the type
            out["error"] = e
            return "refused"
        p = k.procs[pid]
        out["caps"] = {c.target: c.rights for c in p.caps.values() if c.kind == 1}
        out["budget"] = k.accounts.view(p.account)["limits"]
        cap = k.caps.grant(k.procs[1], 0, p, 0x7F).ref
        out["answer"] = await _ask(sys, cap)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    k.register_driver(KVDriver())
    if register:
        k.register_image(counter)
    ref["k"] = k
    res = k.run(init, grant=list(grant), quota=quota)
    return res.value, out, k


def test_an_exported_agent_carries_on_in_another_kernel():
    ex = _exported()
    assert ex["state"] == "hibernated"
    doc = json.loads(ex["file"])
    assert doc["format"] == "agentos.agent/1" and doc["image"]["name"] == "counter"
    value, out, _ = _import(ex["file"])
    assert value == "ok"
    assert out["answer"] == [3, "x", "ping", 1]   # its state (2 answers) and 4 KiB context came along


def test_import_carves_its_budget_from_the_importing_parent():
    ex = _exported(quota=Quota(mem=20_000))
    assert json.loads(ex["file"])["budget"]["mem"] > 10_000
    value, out, k = _import(ex["file"], quota=Quota(mem=50_000))
    assert value == "ok" and out["budget"]["mem"] == json.loads(ex["file"])["budget"]["mem"]
    value, out, _ = _import(ex["file"], quota=Quota(mem=5_000))   # the parent cannot pay
    assert value == "refused" and isinstance(out["error"], QuotaExceeded)


def test_import_grants_no_capability_the_importer_does_not_hold():
    ex = _exported(grant=("kv",))
    caps = json.loads(ex["file"])["caps"]
    assert any(c["kind"] == "device" and c["target"] == "kv" for c in caps)
    _, out, _ = _import(ex["file"])                      # importer holds no kv
    assert "kv" not in out["caps"]
    _, out, _ = _import(ex["file"], grant=("kv",), rights=Right.READ)   # attenuated to read
    assert out["caps"]["kv"] == int(Right.READ)


def test_import_of_an_unregistered_image_is_refused_and_never_imports_code():
    ex = _exported()
    doc = json.loads(ex["file"])
    doc["image"]["module"] = "os"
    doc["image"]["qualname"] = "system"
    value, out, _ = _import(json.dumps(doc).encode(), register=False)
    assert value == "refused" and isinstance(out["error"], AgentFileError)
    assert "not registered" in str(out["error"])


@pytest.mark.parametrize("mutate,err,text", [
    (lambda d: b"x" * (9 * 1024 * 1024), AgentFileError, "more than"),
    (lambda d: b"[" * 10_000 + b"]" * 10_000, AgentFileError, "nests deeper"),
    (lambda d: d.replace(b'"priority":5', b'"priority":NaN'), AgentFileError, "not a finite number"),
    (lambda d: d.replace(b'"format":"agentos.agent/1"', b'"format":"evil"'), AgentFileError, "not an agent file"),
    (lambda d: d.replace(b'"abi_version":', b'"abi_version":99,"x":'), ABIMismatch, "ABI version"),
    (lambda d: d.replace(b'"name":"counter","names"', b'"name":"\\ud800","names"'), AgentFileError, "surrogate"),
    (lambda d: d.replace(b'"budget":{}', b'"budget":{"mem":-5}'), AgentFileError, "budget mem"),
    (lambda d: d.replace(b'"budget":{}', b'"budget":{"mem":1e400}'), AgentFileError, "budget mem"),
    (lambda d: d.replace(b'"budget":{}', b'"budget":{"children":5}'), AgentFileError, "pooled"),
    (lambda d: d.replace(b'"priority":5', b'"priority":99'), Exception, "priority"),
    (lambda d: d.replace(b'"next_id":2', b'"next_id":"2"'), AgentFileError, "context is malformed"),
    (lambda d: "not bytes at all but a list".split(), AgentFileError, "bytes"),
])
def test_hostile_agent_files_are_refused(mutate, err, text):
    ex = _exported()
    data = mutate(ex["file"])
    assert data != ex["file"]   # the attack is really in the file
    value, out, k = _import(data)
    assert value == "refused"
    assert isinstance(out["error"], err), out["error"]
    assert text in str(out["error"])
    assert len(k.procs) == 0 and k.accounts.open_count == 0   # nothing was left behind


def test_export_of_a_plain_coroutine_is_refused():
    ref = {}
    out = {}

    async def plain(sys, args):
        await sys.recv()

    async def init(sys, args):
        pid, _ = await sys.spawn(plain)
        await sys.sleep(1)
        try:
            export_agent(ref["k"], pid)
        except KernelError as e:
            out["e"] = str(e)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    k.run(init)
    assert "coroutine frame cannot be exported" in out["e"]
