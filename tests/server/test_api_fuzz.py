"""Fuzzing the control API: any JSON body, odd paths and query strings get a typed 4xx
(or a 2xx where the request was valid), never a 500, and the kernel keeps running."""
from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Served, start, stop

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20)
bodies = st.dictionaries(st.sampled_from(["path", "args", "quota", "name", "priority", "signal", "approve", "x"]),
                         json_values, max_size=5) | json_values


import pytest  # noqa: E402


@pytest.mark.slow
def test_random_bodies_never_break_the_daemon(tmp_path: Path) -> None:
    s: Served = start(tmp_path)
    prog = s.program(tmp_path, "async def init(sys, args):\n    while True:\n        await sys.sleep(50)\n")
    pid = s.request("POST", "/v1/submit", {"path": prog})[1]["pid"]
    try:
        @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(body=bodies, route=st.sampled_from(["/v1/submit", f"/v1/procs/{pid}/signal", "/v1/approvals/x"]))
        def check(body, route):  # type: ignore[no-untyped-def]
            if isinstance(body, dict) and route == "/v1/submit" and "path" in body:
                body["path"] = str(body["path"]) + ".nope"  # never a real program
            if isinstance(body, dict) and body.get("signal") in ("KILL", "kill", "TERM", "term"):
                body["signal"] = "CONT"
            status, got = s.request("POST", route, raw=json.dumps(body).encode())
            assert 200 <= status < 500, (status, got)
            if status >= 400:
                assert isinstance(got, dict) and isinstance(got.get("error"), str) and "\n" not in got["error"]
        check()

        @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(q=st.text(max_size=40))
        def query(q):  # type: ignore[no-untyped-def]
            from urllib.parse import quote

            for path in (f"/v1/events?after={quote(q)}", f"/v1/stream?once=1&page={quote(q)}&q={quote(q)}",
                         f"/v1/procs/{quote(q, safe='')}/budget"):
                status, _ = s.request("GET", path)
                assert status < 500, path
        query()
        assert pid in {r["pid"] for r in s.request("GET", "/v1/ps")[1]["processes"]}
    finally:
        stop(s)
