"""Reading another process's /agent tree needs a capability that is still valid."""
from agentos import AllowAll, Kernel
from agentos.vfs import AccessDenied


async def target(sys, _):
    await sys.remember("private")
    await sys.recv()


def _attempt(prepare):
    k = Kernel(policy=AllowAll(), deterministic=True)

    async def init(sys, _):
        pid, cap = await sys.spawn(target)
        await sys.sleep(1)
        ref = await prepare(sys, cap)

        async def reader(sys, args):
            try:
                await sys.vfs_read(f"/agent/{args}/mem/working")
                return "read"
            except AccessDenied:
                return "denied"
        _r, rcap = await sys.spawn(reader, args=pid, caps=[ref] if ref else [])
        await sys.waitpid(rcap)
        await sys.kill(cap)
    k.run(init)
    return [e.data for e in k.events.events(kind="error") if e.data[0] == "AccessDenied"]


def test_expired_capability_does_not_reach_the_tree():
    async def prep(sys, cap):
        ref = await sys.attenuate(cap, rights="monitor", expires_in=1)
        await sys.sleep(5)
        return None  # an expired cap cannot even be passed; the reader gets nothing
    assert len(_attempt(prep)) == 1


def test_send_only_capability_does_not_reach_the_tree():
    async def prep(sys, cap):
        return await sys.derive(cap, "send")
    assert len(_attempt(prep)) == 1


def test_monitor_capability_does_reach_the_tree():
    async def prep(sys, cap):
        return await sys.derive(cap, "monitor")
    assert _attempt(prep) == []
