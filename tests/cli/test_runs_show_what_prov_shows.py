"""`agentctl runs --json` and `agentctl export prov` of the same recorded run show the same
cost, per process and in total, whatever ended the calls (a refusal, an overrun, a tool
that raised after acting)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentos.cli.main import app

pyoxigraph = pytest.importorskip("pyoxigraph")
runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})

PROGRAM = textwrap.dedent('''
    from agentos import Cost, Driver, DriverError, DriverResult, Quota
    from agentos.drivers import ToolsDriver, tool

    @tool()
    def act(n: int) -> int:
        """Acts."""
        return n

    @tool()
    def act_then_raise(n: int) -> int:
        """Acts, then raises."""
        raise RuntimeError("after the effect")

    class Meter(Driver):
        name = "meter"
        def bound(self, op, handle, req):
            return Cost(tokens=100, usd=0.001)
        def read(self, handle, req):
            return DriverResult(req, Cost(tokens=5000 if req == "over" else 40, usd=0.0004))

    def setup(kernel):
        kernel.register_driver(ToolsDriver([act, act_then_raise]))
        kernel.register_driver(Meter())

    GRANT = ["tools", "meter"]
    QUOTA = Quota(tokens=100_000, tool_calls=50, usd=5.0)

    async def worker(sys, plan):
        h, m = await sys.open("tools"), await sys.open("meter")
        for what in plan:
            try:
                if what.startswith("act"):
                    await sys.read(h, {"tool": what, "args": {"n": 1}})
                else:
                    await sys.read(m, what)
            except DriverError:
                pass

    async def init(sys, args):
        plans = [(["act", "ok", "ok", "ok"], Quota(tokens=150, tool_calls=5)),
                 (["act_then_raise", "act"], Quota(tool_calls=5)),
                 (["ok", "over", "ok"], Quota(tokens=600))]
        for plan, q in plans:
            _, c = await sys.spawn(worker, args=plan, caps=["tools", "meter"], quota=q)
            await sys.waitpid(c)
''')


def test_runs_json_and_the_prov_export_agree_for_every_process(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    env = {"AGENTOS_HOME": str(tmp_path / "home")}
    res = runner.invoke(app, ["run", str(prog), "--allow-all", "--no-narrate"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["runs", "--json"], env=env)
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    out = tmp_path / "run.ttl"
    res = runner.invoke(app, ["export", "prov", row["run"], "-o", str(out)], env=env)
    assert res.exit_code == 0, res.output
    g = pyoxigraph.Store()
    g.load(out.read_bytes(), format=pyoxigraph.RdfFormat.TURTLE)
    prov: dict[str, list[int]] = {}
    for r in g.query("PREFIX aos: <https://agentos.dev/ns/prov#> PREFIX prov: <http://www.w3.org/ns/prov#> "
                     "SELECT ?pid ?tok ?calls ?usd WHERE { ?s aos:step_tokens ?tok ; aos:step_tool_calls ?calls ; "
                     "aos:step_cost_usd ?usd ; prov:wasAssociatedWith ?a . ?a aos:process_id ?pid }"):
        a = prov.setdefault(r["pid"].value, [0, 0, 0])
        a[0] += int(r["tok"].value)
        a[1] += int(r["calls"].value)
        a[2] += round(float(r["usd"].value) * 1e9)
    listed = {pid: [p["tokens"], p["tool_calls"], p["usd_nano"]] for pid, p in row["processes"].items()}
    assert listed == prov
    # each figure is also what it must be: 1 call + 2 x 40 (the third does not fit); 2 calls;
    # 40 + the 560 left of 600 (an overrun, charged as far as the budget could pay)
    assert sorted(listed.values()) == sorted([[80, 1, 800_000], [0, 2, 0], [600, 0, 800_000]])
    assert (row["tokens"], row["tool_calls"]) == (680, 3)
