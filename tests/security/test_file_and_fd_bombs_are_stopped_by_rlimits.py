"""Filling the disk and exhausting file descriptors stop at RLIMIT_FSIZE / RLIMIT_NOFILE."""
from agentos.sandbox import SandboxLimits

from sbx import run_sandboxed

DISK = '''
async def main(sys, args):
    err = None
    with open("big.bin", "wb", buffering=0) as f:
        try:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
        except OSError as e:
            err = e.errno
    import os
    await sys.log("info", "result", size=os.path.getsize("big.bin"), err=err)
'''

FDS = '''
async def main(sys, args):
    held, err = [], None
    try:
        for i in range(10000):
            held.append(open(f"f{i}", "w"))
    except OSError as e:
        err = e.errno
    await sys.log("info", "result", held=len(held), err=err)
'''


def test_disk_filler_is_stopped_by_rlimit_fsize():
    out = run_sandboxed(DISK, limits=SandboxLimits(fsize=4 << 20))
    assert out.result["err"] == 27, out.result  # EFBIG
    assert out.result["size"] <= 4 << 20
    assert out.sibling == "normal"


def test_fd_exhaustion_is_stopped_by_rlimit_nofile():
    out = run_sandboxed(FDS, limits=SandboxLimits(nofile=16))
    assert out.result["err"] == 24, out.result  # EMFILE
    assert out.result["held"] < 16
