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
