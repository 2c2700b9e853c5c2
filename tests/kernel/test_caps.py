"""Capabilities: derive, attenuate, expiry, transitive revoke, forgery."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from agentos import CapError, Right
from agentos.kernel.caps import CapTable
from agentos.kernel.process import Process, ProcessImage
from tests.support.boot import boot


async def idle(sys, args):
    while True:
        await sys.recv()


def test_derive_cannot_add_rights():
    async def init(sys, args):
        _, c = await sys.spawn(idle)
        send_only = await sys.derive(c, "send")
        try:
            await sys.derive(send_only, "send,kill")
        except CapError as e:
            msg = str(e)
        info = await sys.cap_info(send_only)
        await sys.kill(c)
        return msg, info["rights"]

    _, res = boot(init)
    assert "cannot add rights" in res.value[0]
    assert res.value[1] == "send"


def test_attenuated_cap_expires_on_the_kernel_clock():
    async def init(sys, args):
        _, c = await sys.spawn(idle)
        short = await sys.attenuate(c, rights="send", expires_in=100)
        await sys.send(short, "ok")
        await sys.sleep(100)
        try:
            await sys.send(short, "too late")
        except CapError as e:
            return str(e)

    _, res = boot(init)
    assert "expired" in res.value


def test_attenuation_never_extends_an_inherited_expiry():
    async def init(sys, args):
        _, c = await sys.spawn(idle)
        a = await sys.attenuate(c, expires_in=50)
        b = await sys.attenuate(a, expires_in=10_000)
        info = await sys.cap_info(b)
        await sys.kill(c)
        return info["expires"]

    _, res = boot(init)
    assert res.value == 50.0


def test_revoke_is_transitive_across_processes():
    async def holder(sys, args):
        msg = await sys.recv()
        cap = msg.caps[0]
        await sys.send(sys.caps[0], "holding")
        await sys.recv()  # wait for the go-ahead
        try:
            await sys.send(cap, "after revoke")
            return "still works"
        except CapError as e:
            return "revoked: " + str(e)

    async def init(sys, args):
        _, target = await sys.spawn(idle)
        me = await sys.self_cap()
        _, h = await sys.spawn(holder, caps=[me])
        mine = await sys.derive(target, "send")
        await sys.send(h, "take this", caps=[mine])
        await sys.recv()
        n = await sys.revoke(mine)
        await sys.send(h, "go")
        reason = await sys.waitpid(h)
        await sys.kill(target)
        return n, str(reason)

    k, res = boot(init)
    assert res.value[0] == 2  # the derived cap and the copy the holder got
    assert k.caps.live == 0 and k.caps.ghosts == 0


def test_forged_ref_is_caperror_and_changes_nothing():
    async def victim(sys, args):
        me = await sys.self_cap()
        await sys.send(sys.caps[0], me)   # leaks its *own* ref value
        m = await sys.recv()
        return m.body

    async def init(sys, args):
        me = await sys.self_cap()
        _, v = await sys.spawn(victim, caps=[me])
        leaked = (await sys.recv()).body   # an int valid only in the victim's table
        errors = []
        for forged in (leaked, leaked + 1, 12345, -1, "ref", None):
            try:
                await sys.send(forged, "forged")
            except CapError as e:
                errors.append(type(e).__name__)
        for forged in (leaked, 999):
            try:
                await sys.kill(forged)
            except CapError as e:
                errors.append(type(e).__name__)
        await sys.send(v, "legit")
        return errors, str(await sys.waitpid(v))

    k, res = boot(init)
    assert res.value == (["CapError"] * 8, "normal")


def test_children_only_get_the_caps_they_were_given():
    seen = []

    async def child(sys, args):
        try:
            await sys.open("tools")
            seen.append("opened")
        except CapError as e:
            seen.append(str(e))

    async def init(sys, args):
        _, c = await sys.spawn(child)
        await sys.waitpid(c)
        _, c2 = await sys.spawn(child, caps=["tools"])
        await sys.waitpid(c2)

    from agentos.drivers import ToolsDriver
    boot(init, drivers=[ToolsDriver([])], grant=["tools"])
    assert "holds no capability for device 'tools'" in seen[0]
    assert seen[1] == "opened"


# -- property: a derived cap never has more rights or a later expiry than its source ----

def _proc(pid: int) -> Process:
    async def m(sys, args):
        return None
    return Process(pid, "p", ProcessImage("p", m), None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 127), st.one_of(st.none(), st.floats(0, 1e6)),
                          st.integers(0, 50)), min_size=1, max_size=30))
def test_property_attenuation_never_widens(steps):
    now = [0.0]
    table = CapTable(random.Random(1), lambda: now[0])
    p = _proc(1)
    root = table.grant(p, 0, object(), int(Right.ALL))
    caps = [root]
    for rights, expires_in, pick in steps:
        src = caps[pick % len(caps)]
        try:
            new = table.derive(p, src.ref, rights & src.rights, expires_in)
        except CapError:
            continue
        assert new.rights & ~src.rights == 0
        if src.expires is not None:
            assert new.expires is not None and new.expires <= src.expires
        caps.append(new)
        # asking for more than the source has must always fail
        extra = (~src.rights) & int(Right.ALL)
        if extra:
            with pytest.raises(CapError):
                table.derive(p, src.ref, src.rights | extra)
    # revoking the root removes every derived cap
    assert table.revoke(p, root.ref) == len(caps)
    assert p.caps == {} and table.live == 0 and table.ghosts == 0
