"""The dashboard's data: at most 200 process rows with 10,000 processes (paging, search,
aggregation), and a server-sent event stream coalesced to at most 10 updates a second."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from .conftest import Served, start, stop

MANY = """
async def child(sys, args):
    while True:
        await sys.sleep(1000)

async def init(sys, args):
    for i in range(args["n"]):
        await sys.spawn(child, name=f"worker-{i % 7}")
    while True:
        await sys.sleep(1000)
"""


def _stream(served: Served, query: str, frames: int, timeout: float = 20.0) -> tuple[list[dict], float]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", served.d.port, timeout=timeout)
    conn.request("GET", "/v1/stream?" + query, headers={"Host": f"127.0.0.1:{served.d.port}",
                                                       "Authorization": f"Bearer {served.d.token}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
    got: list[dict] = []  # type: ignore[type-arg]
    t0 = time.monotonic()
    while len(got) < frames:
        line = r.readline().decode()
        if line.startswith("data: "):
            got.append(json.loads(line[6:]))
    elapsed = time.monotonic() - t0
    conn.close()
    return got, elapsed


@pytest.mark.slow
def test_ten_thousand_processes_give_at_most_200_rows_with_paging_search_and_aggregates(tmp_path: Path) -> None:
    s = start(tmp_path)
    try:
        s.request("POST", "/v1/submit", {"path": s.program(tmp_path, MANY), "args": {"n": 10_000}, "name": "spawner"})
        deadline = time.monotonic() + 120
        while s.call(lambda: len(s.d.kernel.ps())) < 10_002 and time.monotonic() < deadline:
            time.sleep(0.2)
        [view], _ = _stream(s, "once=1", 1)
        assert view["live"] == 10_002 and view["total"] == 10_002 and len(view["processes"]) == 200
        agg = {(a["name"], a["state"]): a["count"] for a in view["aggregate"]}
        assert sum(c for (n, _), c in agg.items() if n.startswith("worker-")) == 10_000
        [p2], _ = _stream(s, "once=1&page=2", 1)
        assert [p["pid"] for p in p2["processes"]][0] == view["processes"][0]["pid"] + 400
        [found], _ = _stream(s, "once=1&q=worker-3", 1)
        assert all(p["name"] == "worker-3" for p in found["processes"]) and len(found["processes"]) == 200
        [big], _ = _stream(s, "once=1&size=100000", 1)
        assert len(big["processes"]) == 200
    finally:
        stop(s)


BUSY = """
async def init(sys, args):
    while True:
        await sys.log("info", "tick")
        await sys.sleep(5)
"""


def test_the_stream_is_coalesced_to_at_most_ten_updates_a_second(served: Served, tmp_path: Path) -> None:
    served.request("POST", "/v1/submit", {"path": served.program(tmp_path, BUSY)})
    frames, elapsed = _stream(served, "kind=log", 8)
    assert elapsed >= 0.65  # 8 frames: 7 gaps of at least 100 ms
    assert frames[-1]["seq"] > frames[0]["seq"]
    assert all(e["kind"] == "log" for f in frames for e in f["events"])


def test_stream_query_is_checked(served: Served) -> None:
    assert served.request("GET", "/v1/stream?page=-1")[0] == 400
    assert served.request("GET", "/v1/stream?pid=abc")[0] == 400
    assert served.request("GET", "/v1/stream?kind=" + "k" * 100)[0] == 400


def test_audit_status_and_metrics_come_from_the_flight_recorder(tmp_path: Path) -> None:
    from agentos.audit import FlightRecorder

    from .test_approvals_api import PROGRAM, PayNeedsAPerson, _pending

    rec = FlightRecorder.in_memory(b"k" * 32)
    s = start(tmp_path, policy=PayNeedsAPerson(), audit=rec)
    try:
        s.request("POST", "/v1/submit", {"path": s.program(tmp_path, PROGRAM % str(tmp_path / "paid.txt"))})
        [req] = _pending(s)
        s.request("POST", f"/v1/approvals/{req['id']}", {"approve": True})
        end = time.monotonic() + 15
        while time.monotonic() < end and not (tmp_path / "paid.txt").exists():
            time.sleep(0.02)
        [view], _ = _stream(s, "once=1", 1)
        audit = view["audit"]
        assert audit["configured"] is True and audit["records"] >= 3 and audit["records"] == rec.seq
        text = s.request("GET", "/metrics")[1]
        assert "agentos_audit_records_total" in text and "agentos_audit_commits_total" in text
    finally:
        stop(s)
    from agentos.server.view import audit_view

    assert audit_view(None) == {"configured": False}


def test_a_daemon_outside_a_cluster_has_no_nodes_panel_data(tmp_path: Path) -> None:
    from agentos.server.view import dashboard_view

    s = start(tmp_path)
    try:
        assert s.call(lambda: dashboard_view(s.d))["nodes"] is None
    finally:
        stop(s)
