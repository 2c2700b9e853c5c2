"""A sandboxed fork bomb hits RLIMIT_NPROC, and nothing it forked outlives the sandbox."""
import pytest

from agentos.sandbox import SandboxLimits

from sbx import ROOT, run_sandboxed, uid_processes, uid_processes_after

BOMB = '''
import os, time
async def main(sys, args):
    made, err = 0, None
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                os.setsid()          # try to escape the process group as well
                time.sleep(60)
                os._exit(0)
            made += 1
    except OSError as e:
        err = type(e).__name__
    await sys.log("info", "result", made=made, err=err)
    return made                      # leave them all running: the kernel must clean up
'''


@pytest.mark.skipif(not ROOT, reason="RLIMIT_NPROC is per uid; a private uid needs root")
def test_fork_bomb_is_stopped_by_rlimit_nproc():
    out = run_sandboxed(BOMB, limits=SandboxLimits(nproc=6, cpu_s=2))
    assert out.result["err"] == "BlockingIOError", out.result
    assert out.result["made"] <= 5, out.result
    assert out.sibling == "normal" and out.init == "normal"


@pytest.mark.skipif(not ROOT, reason="a private uid needs root")
def test_forked_children_that_escape_the_session_are_killed_with_the_sandbox():
    out = run_sandboxed(BOMB, limits=SandboxLimits(nproc=6, cpu_s=1))
    assert out.reason == "normal", out.reason
    assert out.uid is not None and out.result["made"] >= 1
    assert uid_processes_after(out.uid) == []
