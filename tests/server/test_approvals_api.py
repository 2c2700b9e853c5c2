"""Approvals through the daemon: a pending request is listed and answered over the API;
a denied one never runs its side effect."""
from __future__ import annotations

import time
from pathlib import Path

from agentos import Decision

from .conftest import start, stop

PROGRAM = '''
from agentos import PolicyDenied
from agentos.drivers.tools import ToolsDriver, tool

@tool()
def pay(amount: int) -> str:
    with open(%r, "a") as f:
        f.write(f"{amount}\\n")
    return f"paid {amount}"

def setup(k):
    k.register_driver(ToolsDriver([pay]))

GRANT = ["tools"]

async def init(sys, args):
    h = await sys.open("tools")
    for amount in (5, 500):
        try:
            await sys.log("info", await sys.read(h, {"tool": "pay", "args": {"amount": amount}}))
        except PolicyDenied as e:
            await sys.log("warning", f"denied {amount}")
    while True:
        await sys.sleep(50)
'''


class PayNeedsAPerson:
    def check(self, pid: int, action: str, args: object, *, dry_run: bool = False) -> Decision:
        if action == "tools.pay":
            return Decision(False, "pay-gate", "a person approves payments", effect="approve")
        return Decision(True, "ok")


def _pending(s):  # type: ignore[no-untyped-def]
    end = time.monotonic() + 15
    while time.monotonic() < end:
        got = s.request("GET", "/v1/approvals")[1]["pending"]
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("no approval request arrived")


def test_approve_one_deny_one_over_the_api(tmp_path: Path) -> None:
    effects = tmp_path / "paid.txt"
    s = start(tmp_path, policy=PayNeedsAPerson())
    try:
        pid = s.request("POST", "/v1/submit", {"path": s.program(tmp_path, PROGRAM % str(effects))})[1]["pid"]
        [first] = _pending(s)
        assert first["pid"] == pid and first["action"] == "tools.pay" and first["args"] == {"amount": 5}
        assert s.request("POST", f"/v1/approvals/{first['id']}", {"approve": "yes"})[0] == 400
        assert s.request("POST", "/v1/approvals/nope", {"approve": True})[0] == 404
        assert s.request("POST", f"/v1/approvals/{first['id']}", {"approve": True},
                         headers={"Origin": "http://evil.example"})[0] == 403
        assert s.request("POST", f"/v1/approvals/{first['id']}", {"approve": True})[0] == 200
        [second] = _pending(s)
        assert second["args"] == {"amount": 500}
        assert s.request("POST", f"/v1/approvals/{second['id']}", {"approve": False})[0] == 200
        end = time.monotonic() + 15
        while time.monotonic() < end:
            logs = [e["data"][1] for e in s.request("GET", f"/v1/procs/{pid}/logs")[1]["events"] if e["kind"] == "log"]
            if "denied 500" in logs:
                break
            time.sleep(0.02)
        assert logs == ["paid 5", "denied 500"]
        assert effects.read_text().split() == ["5"]
    finally:
        stop(s)
