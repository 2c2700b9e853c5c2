"""Promptsmith on the scripted chat device: forge, refine, forge from memory, and bad replies."""
from __future__ import annotations

import json

import pytest

from agentos import AllowAll, Kernel
from agentos.drivers.lessons import LongMemoryDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.long_memory import Lesson, LongMemory
from agentos.userland.promptsmith import ForgeBrief, forge_from_memory, forge_prompt, refine_prompt
from agentos.userland.structured import ModelOutputError

BRIEF = ForgeBrief("a math assistant", "answer arithmetic questions exactly", ("be brief",), ("calculator",),
                   (("2+2", "4"),))


def prompt(text):
    return json.dumps({"prompt": text})


def run(replies, body, *drivers):
    k = Kernel(deterministic=True, policy=AllowAll())
    chat = ScriptedChat(replies)
    k.register_driver(chat)
    for d in drivers:
        k.register_driver(d)
    res = k.run(body, grant=["llm", *[d.name for d in drivers]])
    return k, chat, res


def test_forge_and_refine_ask_for_json_and_are_metered():
    async def body(sys, args):
        a = await forge_prompt(sys, BRIEF)
        b = await refine_prompt(sys, a.prompt, "It guessed 17*23 instead of using the calculator.")
        return a.prompt, b.prompt

    k, chat, res = run([prompt("You are a math assistant. Use the calculator."),
                        prompt("You are a math assistant. Always use the calculator.")], body)
    assert res.value == ("You are a math assistant. Use the calculator.",
                         "You are a math assistant. Always use the calculator.")
    first = chat.requests[0]
    assert first["response_format"]["json_schema"]["schema"]["properties"]["prompt"]["maxLength"] == 600
    shown = first["messages"][1]["content"]
    for part in ("Role: a math assistant", "- be brief", "Tools: calculator", "Example 1: input '2+2'"):
        assert part in shown
    assert "guessed 17*23" in chat.requests[1]["messages"][1]["content"]
    assert len(list(k.events.events(kind="charge"))) == 2


def test_forge_from_memory_folds_in_recalled_lessons_even_when_the_model_drops_them():
    mem = LongMemoryDriver(clock=lambda: 1.0)

    async def body(sys, args):
        m = await LongMemory.open(sys)
        await m.add([Lesson("Use the calculator for every arithmetic question."),
                     Lesson("Greet the user in French.")])
        f = await forge_from_memory(sys, BRIEF, m, k=1)
        return f.prompt, f.lessons

    k, chat, res = run([prompt("You are a math assistant.")], body, mem)
    text, ids = res.value
    assert text == ("You are a math assistant.\n\nLessons from earlier runs:\n"
                    "- Use the calculator for every arithmetic question.")
    assert len(ids) == 1 and mem.index.lessons[ids[0]].uses == 1
    assert "- Use the calculator for every arithmetic question." in chat.requests[0]["messages"][1]["content"]


def test_a_lesson_the_model_kept_is_not_repeated():
    mem = LongMemoryDriver(clock=lambda: 1.0)

    async def body(sys, args):
        m = await LongMemory.open(sys)
        await m.add([Lesson("Use the calculator.")])
        return (await forge_from_memory(sys, BRIEF, "lessons")).prompt

    _, _, res = run([prompt("You are a math assistant. Use the calculator.")], body, mem)
    assert res.value == "You are a math assistant. Use the calculator."


@pytest.mark.parametrize("reply,needle", [
    ("You are great.", "not JSON"),
    (prompt("short"), "is too short"),
    (json.dumps({"prompt": "x" * 700}), "fails maxLength 600"),
    (json.dumps({"text": "You are a math assistant."}), "'prompt' is a required property"),
])
def test_bad_replies_are_model_output_errors(reply, needle):
    async def body(sys, args):
        try:
            await forge_prompt(sys, BRIEF)
        except ModelOutputError as e:
            return str(e)

    _, _, res = run([reply], body)
    assert needle in res.value


@pytest.mark.parametrize("kw", [{"role": ""}, {"goal": 5}, {"constraints": "be brief"},
                                {"examples": [("only input",)]}, {"tools": ["x"] * 40}])
def test_a_brief_is_checked(kw):
    base = {"role": "r", "goal": "g"}
    with pytest.raises(ValueError):
        ForgeBrief(**{**base, **kw})
