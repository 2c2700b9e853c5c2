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


def _with(doc_bytes, **changes):
    doc = json.loads(doc_bytes)
    for k, v in changes.items():
        doc[k] = v(doc[k]) if callable(v) else v
    return json.dumps(doc).replace('"RAW:1e400"', "1e400").encode()   # a number JSON reads as inf


def test_queued_messages_after_import_are_sent_by_the_importer_not_the_pid_in_the_file():
    ex = _exported()
    data = _with(ex["file"], mailbox=[[999, "forged", None, None], [0, "kernel?", None, None]])
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        pid = import_agent(k, data, parent=1)
        out["senders"] = [m.sender for m in k.procs[pid].mailbox]
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    k.register_image(counter)
    ref["k"] = k
    assert k.run(init, quota=Quota(mem=50_000)).value == "ok"
    assert out["senders"] == [1, 1]


@pytest.mark.parametrize("change,text", [
    ({"state": {"@float": "nan"}}, "non-finite"),
    ({"args": [1, {"@float": "inf"}]}, "non-finite"),
    ({"mailbox": [[1, {"@tuple": [{"@float": "-inf"}]}, None, None]]}, "non-finite"),
    ({"mailbox": [[1, "x", {"@float": "nan"}, None]]}, "non-finite"),
    ({"state": [1, "RAW:1e400"]}, "non-finite"),
    ({"state": {"@nonsense": 1}}, "unknown tag"),
    ({"budget": {"mem": 10**400}}, "budget mem"),
    ({"budget": {"usd": 10**400}}, "budget usd"),
    ({"mailbox": [[1, {"@down": [5, "normal", None, "w"]}, None, None]]}, "only this kernel"),
    ({"mailbox": [[1, {"@signal": [15, 1]}, None, None]]}, "only this kernel"),
    ({"names": ["n%d" % i for i in range(300)]}, "names"),
    ({"caps": [{"kind": "process"}] * 2000}, "capabilities"),
], ids=["nan-state", "inf-args", "inf-in-tuple-body", "nan-corr", "1e400", "unknown-tag", "huge-int-budget",
        "huge-usd", "forged-down", "forged-signal", "many-names", "many-caps"])
def test_hostile_values_anywhere_in_an_agent_file_are_refused(change, text):
    ex = _exported()
    value, out, k = _import(_with(ex["file"], **change))
    assert value == "refused"
    assert isinstance(out["error"], AgentFileError), repr(out["error"])
    assert text in str(out["error"]), str(out["error"])
    assert len(k.procs) == 0 and k.accounts.open_count == 0


def test_an_agent_file_with_more_queued_messages_than_the_importers_mailbox_limit_is_refused():
    ex = _exported()
    three = _with(ex["file"], mailbox=[[1, i, None, None] for i in range(3)])
    value, out, _ = _import(three, quota=Quota(mem=50_000, max_mailbox=2))
    assert value == "refused" and isinstance(out["error"], AgentFileError)
    assert "3 messages, more than the 2" in str(out["error"])
    value, out, _ = _import(three, quota=Quota(mem=50_000, max_mailbox=3))
    assert value == "ok"
    from agentos.sched.agentfile import MAX_QUEUED

    many = _with(ex["file"], mailbox=[[1, 0, None, None]] * (MAX_QUEUED + 1))
    value, out, _ = _import(many)   # no limit of its own: the file's bound holds
    assert value == "refused" and "more than" in str(out["error"])


def test_an_exported_agents_queued_down_stays_home_and_a_corrupt_record_is_a_typed_export_error():
    from agentos.sched.hibernate import HibernationRecordError

    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(counter, args="x")
        await _ask(sys, cap)
        k.hibernate(pid)
        key = f"hib/{pid}"
        store = k.hibernation.store
        rec = json.loads(store.records[key])
        rec["mailbox"].append([0, {"@down": [9, "normal", None, "gone"]}, [], None, None, 0])
        store.records[key] = json.dumps(rec).encode()
        out["mailbox"] = json.loads(export_agent(k, pid))["mailbox"]
        store.records[key] = b"{corrupt"
        try:
            export_agent(k, pid)
        except HibernationRecordError as e:
            out["error"] = str(e)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["mailbox"] == []
    assert "malformed" in out["error"]


@pytest.mark.parametrize("max_bytes", [float("nan"), float("inf"), -1, 0, 10**400, "8"],
                         ids=["nan", "inf", "negative", "zero", "huge", "str"])
def test_a_hostile_size_bound_given_to_import_is_refused(max_bytes):
    ex = _exported()
    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    with pytest.raises(AgentFileError, match="max_bytes"):
        import_agent(k, ex["file"], parent=1, max_bytes=max_bytes)


@pytest.mark.parametrize("change,text", [
    ({"extra": 1}, "unknown key(s) 'extra'"),
    ({"state": "DROP"}, "has no state"),
    ({"caps": "DROP"}, "has no caps"),
    ({"context": "DROP"}, "has no context"),
    ({"priority": 9}, "priority must be an int in 0..5"),
    ({"priority": -1}, "priority must be an int in 0..5"),
    ({"priority": 10**30}, "priority must be an int in 0..5"),
], ids=["unknown-key", "missing-state", "missing-caps", "missing-context", "priority-above-importer",
        "negative-priority", "huge-priority"])
def test_an_agent_file_with_a_missing_or_unknown_key_or_a_raised_priority_is_refused(change, text):
    ex = _exported()
    doc = json.loads(ex["file"])
    for key, v in change.items():
        if v == "DROP":
            del doc[key]
        else:
            doc[key] = v
    value, out, k = _import(json.dumps(doc).encode())
    assert value == "refused"
    assert isinstance(out["error"], AgentFileError), repr(out["error"])
    assert text in str(out["error"]), str(out["error"])
    assert len(k.procs) == 0 and k.accounts.open_count == 0


def test_a_bytes_subclass_that_lies_about_its_length_cannot_pass_the_size_bound():
    class Small(bytes):
        def __len__(self) -> int:
            return 3

    class Quiet(str):
        def encode(self, *a, **kw):   # noqa: ARG002
            return b"{}"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    with pytest.raises(AgentFileError, match="9437184 bytes, more than"):
        import_agent(k, Small(b" " * (9 * 1024 * 1024)), parent=1)
    with pytest.raises(AgentFileError, match="more than the 8388608 bytes"):
        import_agent(k, Quiet(" " * (9 * 1024 * 1024)), parent=1)


def test_importing_the_same_file_twice_makes_two_agents_and_only_the_first_gets_its_names():
    ex = _exported()
    data = _with(ex["file"], names=["counter-svc"])
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        a = import_agent(k, data, parent=1)
        b = import_agent(k, data, parent=1)
        out["pids"] = (a, b)
        out["holder"] = k.names["counter-svc"].pid
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    k.register_image(counter)
    ref["k"] = k
    assert k.run(init, quota=Quota(mem=50_000)).value == "ok"
    a, b = out["pids"]
    assert a != b and out["holder"] == a


def test_export_of_a_process_that_cannot_hibernate_says_export_and_why():
    ref = {}
    out = {}

    async def init(sys, args):
        try:
            export_agent(ref["k"], 1)   # init itself: running, not waiting
        except KernelError as e:
            out["e"] = str(e)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    k.run(init)
    assert out["e"].startswith("export: hibernate: pid 1 cannot hibernate now"), out["e"]


@pytest.mark.parametrize("image,text", [(5, "image: cannot run a int"), ("nope", "no image is registered as 'nope'"),
                                        (object(), "image: cannot run a object")],
                         ids=["int", "unknown-name", "object"])
def test_a_bad_image_given_to_import_is_an_agent_file_error(image, text):
    ex = _exported()
    ref = {}
    out = {}

    async def init(sys, args):
        try:
            import_agent(ref["k"], ex["file"], parent=1, image=image)
        except AgentFileError as e:
            out["e"] = str(e)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    k.run(init)
    assert text in out["e"], out
