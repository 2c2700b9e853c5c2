"""Sandboxed code can write anything to its protocol pipe. Any frame that is malformed,
too deep, too big or out of turn kills the child at once (and says why); a valid frame
behind a bad one in the same write never leaves it blocked; a flood of frames neither
stalls the kernel nor the processes beside it. Each kill is a flight-recorder record."""
import time

import pytest

from agentos.audit import FlightRecorder
from agentos.sandbox import SandboxLimits

from sbx import run_sandboxed

WRITE_RAW = r'''
import os, time
async def main(sys, args):
    await sys.log("info", "result", step="before")
    payload = args["payload"].encode("latin-1")
    os.write(4, payload * args.get("times", 1))   # fd 4: the child's end of the protocol pipe
    await sys.pid()
    time.sleep(30)                                 # only a live child could get here
'''

VALID = '{"t":"call","name":"pid","args":[],"kw":{}}\n'


def _raw(payload: str, times: int = 1, **kw):
    rec = FlightRecorder.in_memory(b"k" * 32)
    t0 = time.monotonic()
    out = run_sandboxed(WRITE_RAW, args={"payload": payload, "times": times}, audit=rec, **kw)
    return out, rec, time.monotonic() - t0


CASES = {
    "deep_nesting": ('{"t":"call","name":"log","args":' + "[" * 100_000 + "]" * 100_000 + ',"kw":{}}\n',
                     "nested too deep"),
    "nesting_past_the_limit": ('{"t":"call","name":"log","args":' + "[" * 70 + "]" * 70 + ',"kw":{}}\n',
                               "nested more than 64 deep"),
    "nan": ('{"t":"call","name":"log","args":[NaN],"kw":{}}\n', "NaN is not JSON"),
    "infinity": ('{"t":"call","name":"log","args":[-Infinity],"kw":{}}\n', "-Infinity is not JSON"),
    "not_utf8": ('{"t":"call","name":"\xff\xfe","args":[],"kw":{}}\n', "not UTF-8"),
    "huge_integer": ('{"t":"call","name":"log","args":[' + "9" * 5000 + '],"kw":{}}\n', "not JSON"),
    "array_frame": ('[1,2,3]\n', "not an object"),
    "unknown_type": ('{"t":"gimme"}\n', "unknown type"),
    "second_hello": ('{"t":"hello"}\n', "'hello' frame twice"),
    "call_without_name": ('{"t":"call","args":[],"kw":{}}\n', "without a syscall name"),
    "kw_not_object": ('{"t":"call","name":"pid","args":[],"kw":[]}\n', "kw is not an object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_frame_kills_the_child(case):
    payload, why = CASES[case]
    out, rec, _ = _raw(payload)
    assert "killed by the monitor: protocol violation" in out.reason and why in out.reason, out.reason
    assert out.sibling == "normal"
    kills = [r for r in rec.records() if r.kind == "sandbox_kill"]
    assert len(kills) == 1 and why in kills[0].fields()["data"]["why"], kills


def test_bad_frame_followed_by_a_valid_one_in_the_same_write_still_kills_at_once():
    out, _rec, secs = _raw('{"t":"call","name":"log","args":' + "[" * 5000 + "]" * 5000 + '}\n' + VALID)
    assert "protocol violation" in out.reason, out.reason
    assert secs < 20  # not blocked until the 30 s sleep ends


def test_two_calls_without_waiting_for_the_answer_kill_the_child():
    out, _rec, _ = _raw(VALID + VALID)
    assert "before its last call was answered" in out.reason, out.reason


def test_a_flood_of_frames_does_not_stall_the_kernel():
    out, rec, secs = _raw(VALID, times=100_000)
    assert "before its last call was answered" in out.reason, out.reason
    assert out.sibling == "normal"
    assert secs < 20, secs
    assert [r.kind for r in rec.records()].count("sandbox_kill") == 1


def test_a_line_longer_than_max_line_kills_the_child():
    out, _rec, _ = _raw('{"t":"call","name":"log","args":["' + "a" * 5000 + '"]}\n',
                        limits=SandboxLimits(max_line=4096))
    assert "a request line over 4096 bytes" in out.reason, out.reason


STRICT_FROM_THE_STUB = r'''
async def main(sys, args):
    try:
        await sys.log("info", "x", v=float("nan"))
    except ValueError as e:
        await sys.log("info", "result", nan=type(e).__name__)
    deep = []
    for _ in range(100):
        deep = [deep]
    try:
        await sys.send(await sys.self_cap(), deep)
        got = "sent"
    except Exception as e:
        got = type(e).__name__
    await sys.log("info", "result", deep=got)
'''


def test_values_the_stub_cannot_send_are_the_codes_own_error_not_a_kill():
    """Ordinary code that makes a NaN or a 100-deep value gets a ValueError from its own
    stub (which never writes a frame the monitor would kill it for), and lives on."""
    out = run_sandboxed(STRICT_FROM_THE_STUB)
    assert out.reason == "normal", out.reason
    logs = [e.data[2] for e in out.kernel.events.events(kind="log") if e.data[1] == "result"]
    assert logs == [{"nan": "ValueError"}, {"deep": "ValueError"}], logs
