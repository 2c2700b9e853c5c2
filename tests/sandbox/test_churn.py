"""Seeded chaos: many sandboxes ending every way at once leave nothing behind."""
from __future__ import annotations

import random

import pytest

from agentos import AllowAll, Kernel
from agentos.sandbox import SandboxLimits, install, sandbox

from sbx import ROOT, alive, uid_processes, uid_processes_after

BEHAVIOURS = {
    "normal": "async def main(sys, args):\n    return await sys.pid()\n",
    "raises": "async def main(sys, args):\n    raise RuntimeError('x')\n",
    "os_exit": "import os\nasync def main(sys, args):\n    await sys.pid()\n    os._exit(3)\n",
    "self_kill": "import os, signal\nasync def main(sys, args):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "forks": ("import os, time\nasync def main(sys, args):\n    if os.fork() == 0:\n        os.setsid()\n"
              "        time.sleep(30)\n        os._exit(0)\n    await sys.recv()\n"),
    "waits": "async def main(sys, args):\n    await sys.recv()\n",
    "spins": "async def main(sys, args):\n    await sys.pid()\n    while True:\n        pass\n",
}


@pytest.mark.parametrize("seed", [1, 2])
def test_sandbox_churn_leaves_no_process_or_source_behind(seed):
    rng = random.Random(seed)
    plan = [rng.choice(sorted(BEHAVIOURS)) for _ in range(8)]
    k = Kernel(policy=AllowAll())
    drv = install(k)
    images = {b: sandbox(c, limits=SandboxLimits(cpu_s=3)) for b, c in BEHAVIOURS.items()}

    async def init(sys, _):
        caps = []
        for b in plan:
            _p, cap = await sys.spawn(images[b], caps=["sandbox"])
            caps.append((b, cap))
        await sys.sleep(rng.randint(50, 300))
        for b, cap in caps:   # whatever is still running is killed now
            if b in ("forks", "waits", "spins") or rng.random() < 0.3:
                await sys.kill(cap)
        return [(b, str(await sys.waitpid(cap))) for b, cap in caps]

    res = k.run(init, grant=["sandbox"])
    assert res.reason.normal, res
    for b, reason in res.value:
        expect = {"normal": ("normal", "killed"), "raises": ("fault(sandboxed code raised RuntimeError",
                  "killed"), "os_exit": ("fault(sandboxed child exited with status 3", "killed"),
                  "self_kill": ("fault(sandboxed child killed by SIGKILL", "killed"),
                  "forks": ("killed",), "waits": ("killed",), "spins": ("killed",)}[b]
        assert reason.startswith(expect), (b, reason)
    assert not drv.live and k._external_sources == 0
    assert len(drv.history) == len(plan)
    for _owner, pid, uid in drv.history:
        assert not alive(pid)
        if ROOT:
            assert uid_processes_after(uid) == []
