"""A sandboxed busy loop is killed by RLIMIT_CPU (SIGXCPU), and the kernel says so."""
from agentos.sandbox import SandboxLimits

from sbx import alive, run_sandboxed

SPIN = '''
async def main(sys, args):
    await sys.log("info", "spinning")
    while True:
        pass
'''


def test_cpu_spin_is_killed_by_rlimit_cpu():
    out = run_sandboxed(SPIN, limits=SandboxLimits(cpu_s=1))
    assert "SIGXCPU" in out.reason or "SIGKILL" in out.reason, out.reason
    assert "CPU-time limit" in out.reason or "killed" in out.reason
    assert out.sibling == "normal" and out.init == "normal"
    assert out.child_pid is not None and not alive(out.child_pid)
