"""Killing the kernel process that stands for a sandboxed agent SIGKILLs its OS process
(and everything it forked); an OS process that dies on its own ends its kernel process."""
import os
import signal

import pytest

from agentos import AllowAll, Kernel
from agentos.sandbox import SandboxLimits, install, sandbox

from sbx import ROOT, alive, uid_processes, uid_processes_after

SLEEPER = '''
import os, time
async def main(sys, args):
    if args.get("fork"):
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
            os._exit(0)
    await sys.send(sys.caps[1], {"ready": os.getpid()})  # spawn caps: sandbox device, parent
    await sys.recv()                 # parked in a forwarded syscall
    time.sleep(60)
'''


def _run(scenario):
    k = Kernel(policy=AllowAll())
    drv = install(k)
    seen = {}

    async def ticker(sys, _):
        for _ in range(3):
            await sys.sleep(5)
        return "ticked"

    async def init(sys, _):
        me = await sys.self_cap()
        _p, cap = await sys.spawn(sandbox(SLEEPER, limits=SandboxLimits(cpu_s=5)),
                                  args={"fork": ROOT}, caps=["sandbox", me])
        await sys.recv()                      # it is running its code now
        seen["child"] = drv.history[-1][1]    # the host pid (inside, it has a namespace's)
        await scenario(sys, cap, seen)
        r = await sys.waitpid(cap)
        _t, tcap = await sys.spawn(ticker)
        return str(r), str(await sys.waitpid(tcap))

    res = k.run(init, grant=["sandbox"])
    started = [e for e in k.events.events(kind="log") if e.data[1] == "sandbox started"]
    return res, seen, started[0].data[2]


def test_sigkill_of_sandboxed_process_kills_its_os_process_and_forks():
    async def kill(sys, cap, seen):
        await sys.kill(cap)
    res, seen, info = _run(kill)
    assert res.value[0].startswith("killed(") and res.value[1] == "normal"
    assert not alive(seen["child"])
    if ROOT:
        assert uid_processes_after(info["uid"]) == []


def test_os_level_death_of_the_child_is_noticed_by_the_kernel():
    async def external_kill(sys, cap, seen):
        os.kill(seen["child"], signal.SIGKILL)  # e.g. the host's OOM killer
    res, seen, info = _run(external_kill)
    assert res.value[0] == "fault(sandboxed child killed by SIGKILL (killed))", res.value
    assert res.value[1] == "normal"
    if ROOT:
        assert uid_processes_after(info["uid"]) == []


def test_kernel_shutdown_kills_sandboxed_children():
    async def leave(sys, cap, seen):
        await sys.exit()  # init ends: the kernel shuts every process down
    res, seen, info = _run(leave)
    assert not alive(seen["child"])


def test_forks_die_with_the_pid_namespace_even_if_the_kernel_never_cleans_up():
    """Simulate a kernel killed with kill -9: no teardown runs. The death signals chain
    (stub → namespace init → namespace) still take every fork down."""
    import subprocess
    import sys
    import textwrap
    import time

    prog = textwrap.dedent('''
        import os, sys
        from agentos import Kernel
        from agentos import AllowAll
        from agentos.sandbox import install, sandbox
        CODE = (
            "import os, time\\n"
            "async def main(sys, args):\\n"
            "    if os.fork() == 0:\\n"
            "        os.setsid()\\n"
            "        time.sleep(60)\\n"
            "        os._exit(0)\\n"
            "    await sys.send(sys.caps[1], 'forked')\\n"
            "    time.sleep(60)\\n")
        k = Kernel(policy=AllowAll())
        drv = install(k)
        async def init(sys, _):
            me = await sys.self_cap()
            _p, cap = await sys.spawn(sandbox(CODE), caps=["sandbox", me])
            msg = await sys.recv()
            print(drv.history[-1][2], flush=True)
            print(msg.body, flush=True)
            await sys.waitpid(cap)
        k.run(init, grant=["sandbox"])
    ''')
    kernel = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        uid, forked = None, False
        while time.monotonic() < deadline and not (uid and forked):
            line = kernel.stdout.readline().strip()
            if line.isdigit():
                uid = int(line)
            elif line == "forked":
                forked = True
        assert uid and forked
        assert len(uid_processes(uid)) >= 2    # the worker and its escaped fork
    finally:
        kernel.kill()                           # kill -9 of the kernel: no teardown
        kernel.wait()
    deadline = time.monotonic() + 10
    while uid_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_processes_after(uid) == []
