"""One kernel on TCP in its own OS process, for tests/net/test_tcp.py.

    python tcp_peer.py NODE PORT PEER PEER_PORT MODE [N]

MODE both: serve calls (pid 2) and make N calls to PEER's pid 2, then exchange "done" with
PEER's init and exit; prints one JSON line with the answers. MODE server: answer calls as
pid 1 until killed. MODE client: call PEER's pid 1 until N answers came back, printing
"ok I" or "miss I" per attempt (the test kills and restarts the server meanwhile).
Frames go to stdout as lines; the key comes from AGENTOS_TEST_NET_KEY.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from agentos import AllowAll, Kernel, SyscallError
from agentos.net.tcp import tcp_node
from agentos.userland import CallTimeout, call


async def echo(sys_: Any, args: Any) -> None:
    while True:
        msg = await sys_.recv()
        if msg.body == "stop":
            return
        if msg.caps:
            await sys_.send(msg.caps[0], {"echo": msg.body, "by": args}, corr=msg.corr)


async def both(sys_: Any, args: Any) -> Any:
    node, peer, n = args
    _, server = await sys_.spawn(echo, args=node)
    cap = await sys_.dial(peer, 2)
    answers = []
    i = 0
    while len(answers) < n:
        try:
            answers.append(await call(sys_, cap, [node, i], timeout=2000))
            i += 1
        except (CallTimeout, SyscallError):
            await sys_.sleep(100)  # the peer may not be up yet
    await sys_.send(await sys_.dial(peer, 1), "done")
    await sys_.recv(match=lambda m: m.body == "done")
    await sys_.send(server, "stop")
    return answers


async def client(sys_: Any, args: Any) -> int:
    node, peer, n = args
    cap = await sys_.dial(peer, 1)
    ok = i = 0
    while ok < n:
        i += 1
        try:
            await call(sys_, cap, i, timeout=300)
            ok += 1
            print(f"ok {i}", flush=True)
        except (CallTimeout, SyscallError) as e:
            print(f"miss {i} {type(e).__name__}", flush=True)
            await sys_.sleep(50)
    return ok


async def main() -> None:
    node, port, peer, peer_port, mode = sys.argv[1:6]
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 5
    key = os.environ["AGENTOS_TEST_NET_KEY"].encode()
    k = Kernel(policy=AllowAll())
    tn = await tcp_node(k, node, key, listen=("127.0.0.1", int(port)),
                        peers={peer: ("127.0.0.1", int(peer_port))}, backoff_min=0.02, backoff_max=0.5)
    try:
        if mode == "server":
            res = await k.boot(echo, args=node)
        else:
            res = await k.boot(both if mode == "both" else client, args=(node, peer, n))
        link = tn.links[peer]
        print(json.dumps({"reason": str(res.reason), "value": res.value, "connects": link.connects,
                          "dropped": dict(tn.net.dropped)}), flush=True)
    finally:
        await tn.close()


if __name__ == "__main__":
    asyncio.run(main())
