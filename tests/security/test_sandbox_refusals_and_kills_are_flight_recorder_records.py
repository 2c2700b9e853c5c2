"""What sandboxed code was refused, and why it was killed, used to live only in the volatile
event ring. Each refusal (allow-list, capability, policy, a nested sandbox wider than its
own) and each kill for a protocol violation is now a flight-recorder record, durable and
chained like every other."""
from __future__ import annotations

from pathlib import Path

from agentos.audit import FlightRecorder, verify_dir
from agentos.audit.logdir import read_records

from sbx import run_sandboxed

KEY = b"S" * 32

REFUSED = r'''
async def main(sys, args):
    for attempt in (lambda: sys.spawn("anything"),                         # not on the allow-list
                    lambda: sys.send(123456789, "hi"),                     # a forged capability
                    lambda: sys.open("sandbox", {"code": "", "namespaces": False})):  # wider than its own
        try:
            await attempt()
        except Exception:
            pass
    return "done"
'''


def test_every_refusal_is_a_record(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    out = run_sandboxed(REFUSED, audit=rec)
    rec.close()
    assert out.reason == "normal", out.reason
    refusals = [r.fields() for r in read_records(tmp_path) if r.kind == "sandbox_refusal"]
    got = [(f["data"]["syscall"], f["data"]["error"]) for f in refusals]
    assert got == [("spawn", "SandboxViolation"), ("send", "CapError"), ("open", "DriverError")], got
    assert all(f["pid"] == 2 and f["data"]["child"] == out.child_pid for f in refusals)
    assert "namespaces off" in refusals[2]["data"]["msg"]
    assert verify_dir(tmp_path, KEY).ok


def test_a_protocol_kill_is_a_durable_record(tmp_path: Path) -> None:
    rec = FlightRecorder.open(tmp_path, key=KEY, sign=False)
    code = "import os\nasync def main(sys, args):\n    os.write(4, b'[' * 200000 + b'\\n')\n    await sys.pid()\n"
    out = run_sandboxed(code, audit=rec)
    rec.close()
    assert "protocol violation" in out.reason, out.reason
    kills = [r.fields()["data"] for r in read_records(tmp_path) if r.kind == "sandbox_kill"]
    assert len(kills) == 1 and "nested too deep" in kills[0]["why"] and kills[0]["child"] == out.child_pid
    assert verify_dir(tmp_path, KEY).ok
