"""A sandboxed memory bomb cannot take more address space than RLIMIT_AS allows."""
from agentos.sandbox import SandboxLimits

from sbx import run_sandboxed

BOMB = '''
async def main(sys, args):
    hoard = []
    while True:
        hoard.append(bytearray(8 * 1024 * 1024))
'''

CATCHER = '''
async def main(sys, args):
    hoard, failures = [], 0
    for _ in range(200):
        try:
            hoard.append(bytearray(8 * 1024 * 1024))
        except MemoryError:
            failures += 1
    await sys.log("info", "result", held_mib=8 * len(hoard), failures=failures)
'''


def test_memory_bomb_is_stopped_by_rlimit_as():
    out = run_sandboxed(BOMB, limits=SandboxLimits(as_bytes=128 * 2**20))
    assert out.reason.startswith("fault(") and "MemoryError" in out.reason, out.reason
    assert out.sibling == "normal" and out.init == "normal"


def test_memory_bomb_that_catches_memory_error_still_cannot_exceed_the_cap():
    out = run_sandboxed(CATCHER, limits=SandboxLimits(as_bytes=128 * 2**20))
    assert out.reason == "normal", out.reason
    assert out.result["failures"] > 0 and out.result["held_mib"] < 128, out.result
