"""What a hibernated process holds comes back as it was: monitor and signal messages keep
their types, values the record cannot hold exactly keep the process resident, and a
malformed record fails one wake with a typed error while the kernel carries on."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from agentos import Kernel
from agentos.abi.errors import KernelError
from agentos.abi.types import Down, ExitKind, ExitReason, Signal, SignalMessage
from agentos.sched import HibernationConfig, MemoryHibernationStore, message_loop
from agentos.sched import plain
from agentos.sched.hibernate import HibernationRecordError
from tests.sched.test_hibernate import _ask, counter


async def _short(sys, args):
    await sys.sleep(2)
    return "done"


def test_a_down_and_a_signal_queued_in_a_hibernated_mailbox_come_back_as_themselves():
    ref = {}
    out = {}

    async def sleeper(sys, args):
        _, short = await sys.spawn(_short)
        await sys.monitor(short)
        await sys.sleep(20)        # a Down and a SIGTERM queue up; it hibernates holding them
        got = [(await sys.recv()).body, (await sys.recv()).body]
        out["got"] = [(type(b).__name__, repr(b)) for b in got]
        out["same"] = (isinstance(got[0], Down) and got[0].reason.kind is ExitKind.NORMAL
                       and got[1] == SignalMessage(Signal.SIGTERM, 1))

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(sleeper, caps=["spawn"])
        await sys.sleep(3)
        await sys.term(cap)                # queued: it sleeps, it does not recv
        await sys.sleep(2)
        out["queued"] = len(k.procs[pid].mailbox)
        k.hibernate(pid)
        out["state"] = k.procs[pid].state.value
        await sys.waitpid(cap)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["queued"] == 2 and out["state"] == "hibernated"
    assert [t for t, _ in out["got"]] == ["Down", "SignalMessage"], out["got"]
    assert out["same"] is True


@pytest.mark.parametrize("value", [
    Down(7, ExitReason(ExitKind.KILLED, "1"), "w"), SignalMessage(Signal.SIGUSR1, 3),
    (1, b"\x00", {"@tuple": [1]}), {2: "a", (1, 2): [None]}, {"b": 1, "a": 2}, float("nan"),
    [Down(1, ExitReason(ExitKind.NORMAL), "")], 10**300,
])
def test_the_record_codec_gives_back_the_same_types(value):
    import json

    back = plain.decode(json.loads(json.dumps(plain.encode(value))))
    assert type(back) is type(value)
    assert repr(back) == repr(value)
    if isinstance(value, dict):
        assert list(back) == list(value)   # order kept


class _Str(str):
    def __hash__(self):
        raise RuntimeError("hostile __hash__")


@pytest.mark.parametrize("value,why", [
    ({1, 2}, "set"), (_Str("x"), "_Str"), (frozenset(), "frozenset"), (object(), "object"),
    (ExitReason(ExitKind.NORMAL), "ExitReason"), (Down(1, "normal", "x"), "Down with fields"),
    ("\ud800", "lone surrogate"), (2 ** 20000, "bits"),
], ids=["set", "str-subclass", "frozenset", "object", "exit-reason", "bad-down", "surrogate", "huge-int"])
def test_the_record_codec_refuses_what_it_cannot_hold_exactly(value, why):
    with pytest.raises(plain.NotPlain, match=why):
        plain.encode(value, "it")


def test_the_record_codec_refuses_a_structure_deeper_than_its_bound():
    deep: list = []
    for _ in range(plain.MAX_PLAIN_DEPTH + 5):
        deep = [deep]
    with pytest.raises(plain.NotPlain, match="deeper"):
        plain.encode(deep)


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(plain_values)
def test_any_plain_value_round_trips_through_the_record_codec(value):
    from agentos.kernel.events import dumps_canonical

    back = plain.decode(plain.loads(dumps_canonical(plain.encode(value)).encode()))
    assert repr(back) == repr(value)


def test_a_process_whose_mailbox_holds_a_value_that_is_not_plain_stays_resident():
    ref = {}
    out = {}

    async def sleeper(sys, args):
        await sys.sleep(10)
        out["body"] = type((await sys.recv()).body).__name__

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(sleeper)
        await sys.send(cap, {"a", "set"})      # a set is checked at send, but is not plain data
        await sys.sleep(1)
        try:
            k.hibernate(pid)
        except KernelError as e:
            out["refused"] = str(e)
        out["state"] = k.procs[pid].state.value
        await sys.waitpid(cap)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["state"] == "waiting" and "not plain data" in out["refused"] and "mailbox" in out["refused"]
    assert out["body"] == "set"      # it kept its set, not a list that a store would have made
    assert k.metrics()["hibernations"] == 0


def test_a_loop_whose_state_is_not_plain_keeps_it_and_pages_out_its_context_only():
    ref = {}
    out = {}

    @message_loop()
    async def keeper(sys, state, msg):
        state = set(state or ()) | {msg.body}
        await sys.send(msg.caps[0], sorted(state))
        return state

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(keeper)
        out["a"] = await _ask(sys, cap, "x")
        k.hibernate(pid)
        out["coro_kept"] = k.procs[pid].coro is not None
        out["b"] = await _ask(sys, cap, "y")
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig())
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out == {"a": ["x"], "coro_kept": True, "b": ["x", "y"]}
    assert [e.data[1] for e in k.events.events() if e.kind == "hibernate"] == ["context"]


def test_the_watermark_passes_over_a_process_that_cannot_be_stored_and_takes_the_next():
    out = {}

    async def sleeper(sys, args):
        await sys.sleep(50)

    async def init(sys, args):
        caps = []
        for i in range(4):
            pid, cap = await sys.spawn(sleeper, priority=1 if i == 0 else 3)
            caps.append(cap)
        await sys.send(caps[0], frozenset({1}))   # the lowest-scored one holds a frozenset
        await sys.sleep(5)
        for c in caps:
            await sys.waitpid(c)
        return "ok"

    from tests.support.boot import boot

    k, res = boot(init, hibernation=HibernationConfig(max_resident=3, low_water=0.7))
    assert res.value == "ok"
    hibernated = [e.pid for e in k.events.events() if e.kind == "hibernate"]
    assert hibernated and 2 not in hibernated   # pid 2 (priority 1) holds the frozenset


class CorruptStore(MemoryHibernationStore):
    """A store whose records go bad (a disk, a hand edit): its reads return `bad` once set.
    A replay has its own store and takes the failed read from the journal."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = None

    def get(self, key):
        return self.bad if self.bad is not None else super().get(key)


@pytest.mark.parametrize("blob", [
    b"{not json", b"[]", b'{"v":2}', b"\xff\xfe", b"[" * 100_000, b'{"v":2,"pid":2,"mailbox":NaN}',
    "a str, not bytes",
], ids=["not-json", "a-list", "missing-keys", "not-utf8", "deep", "nan", "str"])
def test_a_malformed_record_fails_the_wake_with_a_typed_error_and_the_kernel_carries_on(blob):
    store = CorruptStore()
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(counter, args="c")
        await _ask(sys, cap)
        k.hibernate(pid)
        store.bad = blob
        try:
            k.thaw(pid)
        except HibernationRecordError as e:
            out["error"] = str(e)
        out["state"] = k.procs[pid].state.value
        me = await sys.self_cap()
        await sys.send(cap, "ping", caps=[me])   # the send succeeds: the message waits
        await sys.sleep(5)
        out["still"] = k.procs[pid].state.value
        _, other = await sys.spawn(counter, args="o")
        out["other"] = await _ask(sys, other)    # the kernel carries on
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert "malformed" in out["error"] and len(out["error"].splitlines()) == 1
    assert out["state"] == out["still"] == "hibernated"
    assert out["other"][:2] == [1, "o"]
    assert k.metrics()["hibernate_errors"] >= 2


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(pid=r["pid"] + 1),
    lambda r: r.update(v=1),
    lambda r: r["mailbox"].append([1, {"@evil": 1}, [], None, None, 0]),
    lambda r: r["mailbox"].append(["1", "x", [], None, None, 0]),
    lambda r: r["loop"].update(state={"@signal": [999, 1]}),
    lambda r: r["loop"].update(seq=-1),
    lambda r: r.pop("loop"),
    lambda r: r.update(counters=[0.0, 1, 2]),
    lambda r: r.update(account=[1, 2, 3, 4, 10**30]),
    lambda r: r["memory"]["resident"][0].__setitem__(3, "nonsense"),
    lambda r: r["memory"].update(tokens=-1),
    lambda r: r.update(names=[1]),
    lambda r: r.update(caps=[1]),
], ids=["other-pid", "old-version", "unknown-tag", "str-sender", "bad-signal", "neg-seq", "no-loop",
        "short-counters", "huge-usage", "segment-kind", "neg-tokens", "int-name", "int-cap"])
def test_a_record_with_wrong_types_or_keys_is_refused_before_anything_changes(mutate):
    import json

    store = CorruptStore()
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        pid, cap = await sys.spawn(counter, args="c")
        await _ask(sys, cap)
        k.hibernate(pid)
        raw = store.records.get(f"hib/{pid}")   # (a replay's program sees no record: its kernel
        if raw is not None:                       # reads the failure from the journal)
            rec = json.loads(raw)
            mutate(rec)
            store.bad = json.dumps(rec).encode()
        try:
            k.thaw(pid)
        except HibernationRecordError as e:
            out["error"] = str(e)
        p = k.procs[pid]
        out["untouched"] = (p.state.value, p.coro, p.mailbox, p.memory, p.account)
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert "malformed" in out["error"]
    assert out["untouched"] == ("hibernated", None, None, None, None)


@pytest.mark.parametrize("full", [True, False], ids=["message-loop", "paged-out"])
def test_a_sigkill_is_not_held_back_by_a_record_that_is_malformed_for_good(full):
    """"Can I stop it now?": a record that went bad will not get better, so a kill ends the
    process without it (its usage and memory charge are forfeit, never returned), where a
    store that cannot be reached only defers the end until it can."""
    from agentos import Signal
    from tests.sched.test_hibernate import plain_waiter

    store = CorruptStore()
    ref = {}
    out = {}

    async def init(sys, args):
        k = ref["k"]
        if full:
            pid, cap = await sys.spawn(counter, args="c")
            await _ask(sys, cap)
        else:
            pid, cap = await sys.spawn(plain_waiter)
            await sys.sleep(1)
        k.hibernate(pid)
        out["before"] = k.procs[pid].state.value
        store.bad = b"{not json"
        await sys.monitor(cap)
        await sys.kill(cap)
        down = await sys.recv(timeout=1_000)
        out["down"] = None if down is None else str(down.body.reason)
        out["gone"] = pid not in k.procs
        _, other = await sys.spawn(counter, args="o")
        out["other"] = await _ask(sys, other)    # the kernel carries on
        return "ok"

    k = Kernel(deterministic=True, hibernation=HibernationConfig(store=store))
    ref["k"] = k
    assert k.run(init).value == "ok"
    assert out["before"] == "hibernated"
    assert out["down"] is not None and out["gone"], out
    assert out["other"][:2] == [1, "o"]
    assert k.metrics()["hibernated"] == 0 and k.metrics()["hibernated_full"] == 0
    assert [e for e in k.events.events(kind="hibernate_forfeit")]
