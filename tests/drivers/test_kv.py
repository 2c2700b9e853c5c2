"""The kv driver: per-process namespaces by default, shared on purpose."""
from __future__ import annotations

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
