"""The kv driver: per-process namespaces by default, shared on purpose."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentos import DriverError
from agentos.drivers import KVDriver
from tests.support.boot import boot


def test_namespaces_isolate_by_default_and_share_on_request():
    async def writer(sys, args):
        h = await sys.open("kv")
        await sys.write(h, {"key": "k", "value": "private"})
        s = await sys.open("kv", {"ns": "shared"})
        await sys.write(h := s, {"key": "k", "value": "shared"})

    async def init(sys, args):
        _, w = await sys.spawn(writer, caps=["kv"])
        await sys.waitpid(w)
        mine = await sys.open("kv")
        shared = await sys.open("kv", {"ns": "shared"})
        out = [await sys.read(mine, {"key": "k"}), await sys.read(shared, {"key": "k"}),
               await sys.read(shared, {"op": "keys"})]
        try:
            await sys.read(shared, {"op": "drop_table"})
        except DriverError as e:
            out.append(str(e))
        return out

    _, res = boot(init, drivers=[KVDriver()], grant=["kv"])
    assert res.value == [None, "shared", ["k"], "kv: unknown read op 'drop_table' (reads: get, keys, has)"]


def test_a_value_read_or_written_cannot_be_changed_without_a_write():
    """A reply reaches the reader by reference: editing what `get` returned, or the object
    handed to `set`, must not change what the store holds (that would be a write with no
    syscall, no journal entry and no policy check, and a replay would read otherwise)."""
    async def init(sys, args):
        h = await sys.open("kv")
        mine = {"plan": ["a"], "n": 1}
        await sys.write(h, {"key": "k", "value": mine})
        mine["plan"].append("after set")                 # the writer keeps its object
        got = await sys.read(h, {"key": "k"})
        got["plan"].append("after get")                  # the reader edits its reply
        got["n"] = 99
        return await sys.read(h, {"key": "k"})

    _, res = boot(init, drivers=[KVDriver()], grant=["kv"])
    assert res.value == {"plan": ["a"], "n": 1}


_JSONISH = st.recursive(st.none() | st.integers() | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                        max_leaves=12)


def _scribble(v):
    """Change every container inside `v` in place."""
    if type(v) is list:
        for x in v:
            _scribble(x)
        v.append("scribbled")
    elif type(v) is dict:
        for x in list(v.values()):
            _scribble(x)
        v["scribbled"] = True


@given(_JSONISH)
def test_whatever_a_writer_or_reader_does_to_its_objects_the_store_keeps_what_was_written(value):
    import copy

    kv = KVDriver()
    h = kv.open(1, None)
    mine = copy.deepcopy(value)
    kv.write(h, {"key": "k", "value": mine})
    _scribble(mine)
    _scribble(kv.read(h, {"key": "k"}).value)
    assert kv.read(h, {"key": "k"}).value == value


def test_a_value_too_deep_to_copy_is_a_driver_error_not_a_crash():
    import pytest

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    kv = KVDriver()
    h = kv.open(1, None)
    with pytest.raises(DriverError, match="cannot be stored"):
        kv.write(h, {"key": "k", "value": deep})
    assert kv.read(h, {"key": "k"}).value is None
