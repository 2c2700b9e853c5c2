"""An attacker that opens a handle through a time-limited device capability keeps no
access after the capability expires: read, write and read_all are refused with CapError."""
from __future__ import annotations

from agentos import CapError, Cost, Driver, DriverResult
from tests.support.boot import boot


class Echo(Driver):
    name = "echo"

    def __init__(self):
        self.calls = 0

    def read(self, handle, req):
        self.calls += 1
        return DriverResult(req, Cost(tool_calls=1))

    def write(self, handle, data):
        self.calls += 1
        return DriverResult(("wrote", data), Cost(tool_calls=1))


def test_handle_from_expiring_cap_stops_working_when_the_cap_expires():
    echo = Echo()

    async def init(sys, args):
        short = await sys.attenuate(sys.caps[0], expires_in=100)
        h = await sys.open(short)
        before = await sys.read(h, "in time")
        await sys.sleep(100)
        refused = []
        for call in (lambda: sys.read(h, "late"), lambda: sys.write(h, "late"),
                     lambda: sys.read_all(h, ["a", "b"])):
            try:
                await call()
            except CapError as e:
                refused.append(str(e))
        return before, refused

    _, res = boot(init, drivers=[echo], grant=["echo"])
    before, refused = res.value
    assert before == "in time"
    assert len(refused) == 3 and all("expired" in r for r in refused), refused
    assert echo.calls == 1  # the driver never saw a late call


def test_handle_from_unexpired_cap_still_works():
    async def init(sys, args):
        short = await sys.attenuate(sys.caps[0], expires_in=100)
        h = await sys.open(short)
        await sys.sleep(99)
        return await sys.read(h, "ok")

    _, res = boot(init, drivers=[Echo()], grant=["echo"])
    assert res.value == "ok"
