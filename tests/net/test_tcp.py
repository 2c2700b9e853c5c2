"""Two kernels in two OS processes over TCP on 127.0.0.1: round trips both ways, and a
peer killed and restarted is reached again (the link reconnects with backoff)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentos import AllowAll, Kernel
from agentos.net.tcp import TcpLink, TcpListener, encode_frame, tcp_node

PEER = str(Path(__file__).with_name("tcp_peer.py"))
KEY = "tcp-test-key-0123456789abcdefgh"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTOS_TEST_NET_KEY": KEY,
           "PYTHONPATH": SRC + os.pathsep + str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, PEER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(p: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"peer hung; stderr: {err[-2000:]}")
    assert p.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.live_only(reason="two kernels in two OS processes on a real clock and real sockets")
def test_round_trips_both_ways_between_two_processes() -> None:
    pa, pb = free_port(), free_port()
    a = start("a", pa, "b", pb, "both", 5)
    b = start("b", pb, "a", pa, "both", 5)
    ra, rb = finish(a), finish(b)
    assert ra["reason"] == rb["reason"] == "normal"
    assert ra["value"] == [{"echo": ["a", i], "by": "b"} for i in range(5)]
    assert rb["value"] == [{"echo": ["b", i], "by": "a"} for i in range(5)]
    assert ra["dropped"] == rb["dropped"] == {}


@pytest.mark.slow
@pytest.mark.live_only(reason="kills and restarts an OS process")
def test_a_killed_and_restarted_peer_is_reached_again() -> None:
    pa, pb = free_port(), free_port()
    server = start("b", pb, "a", pa, "server")
    client = start("a", pa, "b", pb, "client", 12)
    assert client.stdout is not None
    lines: list[str] = []
    restarted = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = client.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if not restarted and sum(x.startswith("ok") for x in lines) == 3:
            server.send_signal(signal.SIGKILL)
            server.wait()
            time.sleep(0.5)  # the client misses while nobody listens
            server = start("b", pb, "a", pa, "server")
            restarted = True
        if line.startswith("{"):
            break
    result = json.loads(lines[-1])
    server.kill()
    server.communicate()
    client.wait(timeout=10)
    assert restarted and result["reason"] == "normal" and result["value"] == 12
    first_ok = [i for i, x in enumerate(lines) if x.startswith("ok")]
    assert any(x.startswith("miss") for x in lines[first_ok[2]:]), lines  # the outage was seen
    assert result["connects"] >= 2  # the link reconnected to the new process


@pytest.mark.live_only(reason="real sockets")
def test_a_frame_longer_than_the_limit_ends_the_connection_and_counts_oversize() -> None:
    async def main() -> tuple[dict[str, int], int]:
        k = Kernel(policy=AllowAll())
        tn = await tcp_node(k, "b", KEY.encode(), max_frame=4096)
        r, w = await asyncio.open_connection("127.0.0.1", tn.port)
        w.write((1 << 30).to_bytes(4, "big"))  # claims a gigabyte: never read
        await w.drain()
        closed = await asyncio.wait_for(r.read(), 5)  # the listener hangs up
        await tn.close()
        return dict(tn.net.dropped), len(closed)

    dropped, rest = asyncio.run(main())
    assert dropped == {"oversize": 1} and rest == 0


@pytest.mark.live_only(reason="real sockets")
def test_a_link_queues_while_disconnected_refuses_past_its_bound_and_backs_off() -> None:
    async def main() -> TcpLink:
        port = free_port()  # nobody listens here yet
        link = TcpLink("127.0.0.1", port, queue=3, backoff_min=0.01, backoff_max=0.04).start()
        took = [link.send(b"f%d" % i) for i in range(5)]
        assert took == [True, True, True, False, False]
        for _ in range(1000):              # a loaded machine may run the retries late
            if link.failures >= 3:
                break
            await asyncio.sleep(0.01)
        assert link.failures >= 3 and max(link.delays) <= 0.04 and not link.connected
        got: list[bytes] = []
        listener = TcpListener(got.append, "127.0.0.1", port)
        await listener.start()
        for _ in range(1000):
            if len(got) == 3:
                break
            await asyncio.sleep(0.02)
        await link.close()
        await listener.close()
        assert got == [b"f0", b"f1", b"f2"]
        return link

    link = asyncio.run(main())
    assert link.connects == 1 and link.refused == 2


def test_frames_are_length_prefixed() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
