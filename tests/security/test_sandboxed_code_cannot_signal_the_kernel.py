"""Sandboxed code runs as its own uid: it cannot signal or inspect the kernel's OS process."""
import os

import pytest

from sbx import ROOT, run_sandboxed

ATTACK = '''
import os, signal
async def main(sys, args):
    out = {}
    try:
        os.kill(args, signal.SIGKILL)
        out["kill"] = "sent"
    except OSError as e:
        out["kill"] = type(e).__name__
    try:
        open(f"/proc/{args}/environ", "rb").read()
        out["environ"] = "read"
    except OSError as e:
        out["environ"] = type(e).__name__
    try:
        os.kill(-1, signal.SIGKILL)   # reaches only processes of its own uid: itself excluded
        out["kill_all"] = "sent"
    except OSError as e:
        out["kill_all"] = type(e).__name__
    await sys.log("info", "result", **out)
'''


@pytest.mark.skipif(not ROOT, reason="a private uid needs root")
def test_sandboxed_code_cannot_signal_or_inspect_the_kernel():
    out = run_sandboxed(ATTACK, args=os.getpid())
    assert out.result["kill"] == "ProcessLookupError", out.result  # not in its pid namespace
    assert out.result["environ"] == "FileNotFoundError", out.result  # no /proc in its root
    assert out.reason == "normal" and out.sibling == "normal" and out.init == "normal"


@pytest.mark.skipif(not ROOT, reason="a private uid needs root")
def test_without_the_pid_namespace_and_with_the_host_view_its_uid_still_protects_the_kernel():
    out = run_sandboxed(ATTACK, args=os.getpid(), fs_view="host", pid_namespace=False)
    assert out.result["kill"] == "PermissionError" and out.result["environ"] == "PermissionError", out.result
