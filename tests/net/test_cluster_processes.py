"""Three kernels in three OS processes on a real nats-server: the cluster as deployed.

Remote spawn, send, monitor, call/reply and names across processes; a `kill -9`d kernel
noticed within two lease periods; a SIGSTOPped kernel declared down, fenced on SIGCONT
and back as a new incarnation; durable sends surviving a receiver restart and a
nats-server restart, each delivered exactly once.
"""
from __future__ import annotations

import signal
import time
from typing import Iterator

import pytest

from tests.support.cluster_procs import NodeProc

pytestmark = pytest.mark.live_only(reason="real OS processes, a real nats-server and wall-clock leases")

LEASE = 0.8


@pytest.fixture
def nodes(nats_server) -> Iterator[dict[str, NodeProc]]:  # type: ignore[no-untyped-def]
    started: dict[str, NodeProc] = {}

    def start(name: str, **kw) -> NodeProc:  # type: ignore[no-untyped-def]
        p = NodeProc(nats_server.url, name, lease=LEASE, **kw)
        started[name] = p
        p.ev("ready")
        return p

    started_fn = start
    try:
        yield {"start": started_fn, "all": started}  # type: ignore[dict-item]
    finally:
        for p in started.values():
            p.stop()


def _all_up(procs: list[NodeProc], names: set[str]) -> None:
    for p in procs:
        for other in names - {p.node}:
            p.ev("node_up", node=other)


def test_three_nodes_spawn_send_monitor_call_and_names(nodes) -> None:  # type: ignore[no-untyped-def]
    a, b, c = (nodes["start"](n) for n in "abc")
    _all_up([a, b, c], {"a", "b", "c"})
    r = a.cmd("spawn_remote", node="b", image="echo", args={"k": 1}, **{"as": "e"})
    assert r.get("pid"), r
    assert a.cmd("call", to="e", body="hi")["reply"] == {"echo": "hi", "args": {"k": 1}}
    a.cmd("monitor", to="e")
    a.cmd("send", to="e", body="crash")
    d = a.cmd("await_down", timeout=60)
    assert d["down"] == r["pid"] and d["reason"].startswith("fault"), d
    # names are cluster-wide: registered on c, found from a, refused twice
    assert c.cmd("register", name="svc")["ok"]
    assert "NameTaken" in b.cmd("register", name="svc").get("error", ""), "a second holder was allowed"
    # the name reaches a through its watch of the names bucket: on a loaded machine that can
    # trail c's answer, so a looks it up until it arrives (a name never seen fails the test)
    deadline = time.monotonic() + 30
    found = a.cmd("lookup", name="svc", **{"as": "svc"})
    while not found["found"] and time.monotonic() < deadline:
        time.sleep(0.1)
        found = a.cmd("lookup", name="svc", **{"as": "svc"})
    assert found["found"] is True, "a cluster name registered on c never reached a"
    # an image nobody published is refused with a typed error, and nothing is left waiting
    bad = a.cmd("spawn_remote", node="c", image="no-such-image", **{"as": "x"})
    assert "RemoteRefused" in bad["error"] and "no-such-image" in bad["error"]


def test_kill_9_is_noticed_within_two_lease_periods(nodes) -> None:  # type: ignore[no-untyped-def]
    a, b, c = (nodes["start"](n) for n in "abc")
    _all_up([a, b, c], {"a", "b", "c"})
    assert a.cmd("spawn_remote", node="c", image="sleeper", **{"as": "s"}).get("pid")
    a.cmd("monitor", to="s")
    assert b.cmd("spawn_remote", node="c", image="sleeper", **{"as": "s"}).get("pid")
    b.cmd("monitor", to="s")
    t0 = time.time()
    c.signal(signal.SIGKILL)
    for p in (a, b):
        # the bound is measured on the detector's own clock: how long c's lease had gone
        # unchanged when p declared it down. Wall time from the kill to the test reading the
        # Down adds the loaded machine's scheduling and pipe delays, so it gets a hang bound.
        down = p.ev("node_down", node="c", timeout=30)
        assert LEASE < down["lease_age"] <= 2 * LEASE, f"declared down at lease age {down['lease_age']:.2f}s, lease {LEASE}s"
        assert down["t"] - t0 <= 2 * LEASE + 5, f"Down after {down['t'] - t0:.2f}s, lease {LEASE}s"
        d = p.cmd("await_down", timeout=60)
        assert d["down"] is not None, "no Down after kill -9"
        assert d["reason"] == "noconnection(c)"


@pytest.mark.slow
def test_sigstop_longer_than_the_lease_is_declared_down_then_fenced_and_rejoins(nodes) -> None:  # type: ignore[no-untyped-def]
    a, b, c = (nodes["start"](n) for n in "abc")
    _all_up([a, b, c], {"a", "b", "c"})
    assert a.cmd("spawn_remote", node="c", image="sleeper", **{"as": "s"}).get("pid")
    a.cmd("monitor", to="s")
    assert c.cmd("spawn_remote", node="a", image="sleeper", **{"as": "t"}).get("pid")
    c.cmd("monitor", to="t")
    c.signal(signal.SIGSTOP)
    # waits, not bounds (the kill -9 test bounds detection): generous for a loaded machine
    # (a cmd's timeout is the test's wait for the answer; the node waits 30 s for the Down)
    assert a.cmd("await_down", timeout=60)["reason"] == "noconnection(c)"
    b.ev("node_down", node="c", timeout=30)
    c.signal(signal.SIGCONT)
    fenced = c.ev("node_down", node="c", timeout=30)  # c's own fence
    assert fenced["incarnation"] == 1
    d = c.cmd("await_down", timeout=60)   # its monitor of a process on a: noconnection
    assert d["reason"] == "noconnection(a)", d
    assert c.ev("node_up", node="c", timeout=30)["incarnation"] == 2
    assert a.ev("node_up", node="c", timeout=30)["incarnation"] == 2
    # the rejoined node works as a member again
    assert a.cmd("spawn_remote", node="c", image="echo", **{"as": "e"}).get("pid")
    assert a.cmd("call", to="e", body=5)["reply"]["echo"] == 5


@pytest.mark.slow
def test_durable_sends_arrive_once_across_a_receiver_restart(nodes, nats_server) -> None:  # type: ignore[no-untyped-def]
    a = nodes["start"]("a")
    b = nodes["start"]("b", sink="box")
    b.ev("sink_ready")
    a.ev("node_up", node="b")
    assert a.cmd("dial", node="b", pid=2, **{"as": "box"})["ok"]
    for i in range(3):
        assert a.cmd("send", to="box", body=i, durable=True)["ok"]
    got = [b.ev("got")["body"] for _ in range(3)]
    b.signal(signal.SIGKILL)
    b.proc.wait(5)
    for i in range(3, 6):   # b is down: the stream keeps them
        assert a.cmd("send", to="box", body=i, durable=True)["ok"]
    b2 = nodes["start"]("b", sink="box")
    nodes["all"]["b2"] = b2
    got += [b2.ev("got", timeout=30)["body"] for _ in range(3)]
    assert sorted(got) == list(range(6))
    time.sleep(1.0)
    extra = [o for o in b2.seen if o.get("ev") == "got"]
    while not b2.lines.empty():
        o = b2.lines.get()
        if o.get("ev") == "got":
            extra.append(o)
    assert extra == [], f"delivered twice: {extra}"


@pytest.mark.slow
def test_cluster_recovers_from_a_nats_server_restart_without_losing_a_durable_message(nodes, nats_server) -> None:  # type: ignore[no-untyped-def]
    a = nodes["start"]("a")
    b = nodes["start"]("b", sink="box")
    b.ev("sink_ready")
    a.ev("node_up", node="b")
    assert a.cmd("dial", node="b", pid=2, **{"as": "box"})["ok"]
    assert a.cmd("send", to="box", body="before", durable=True)["ok"]
    assert b.ev("got")["body"] == "before"
    nats_server.stop()
    import threading

    results = []
    t = threading.Thread(target=lambda: results.append(a.cmd("send", to="box", body="during", durable=True, timeout=40)))
    t.start()
    time.sleep(1.0)
    nats_server.start()
    t.join(45)
    assert results and results[0].get("ok"), results
    assert b.ev("got", timeout=20)["body"] == "during"
    # the cluster is whole again: a spawn and a call across it work
    deadline = time.monotonic() + 20
    while True:
        r = a.cmd("spawn_remote", node="b", image="echo", **{"as": "e"})
        if r.get("pid") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.get("pid"), r
    assert a.cmd("call", to="e", body="after")["reply"]["echo"] == "after"
