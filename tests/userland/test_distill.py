"""Distillation on the scripted chat device: digests, the lesson schema, strict parsing, learn."""
from __future__ import annotations

import json

import pytest

from agentos import AllowAll, Kernel
from agentos.drivers.lessons import LongMemoryDriver
from agentos.drivers.runs import RunsDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.store import MemoryStore, record_run
from agentos.userland.distill import Distiller, learn, parse_lessons, report_outcome, unlearned_runs
from agentos.userland.structured import ModelOutputError


def lessons_json(*items):
    return json.dumps({"lessons": list(items)})


GOOD = {"text": "Use the add tool instead of guessing sums.", "step": 1, "confidence": "high", "tags": ["Math"]}


@pytest.mark.parametrize("text,needle", [
    ("[]", "must be an object with a 'lessons' list"),
    ('{"lesson": []}', "must be an object with a 'lessons' list"),
    ('{"lessons": []}', "holds no lessons"),
    (lessons_json(GOOD, GOOD, GOOD, GOOD), "4 lessons, at most 3"),
    ('{"lessons": [], "note": 1}', "unexpected key"),
    (lessons_json("just text"), r"lessons\[0\] must be an object"),
    (lessons_json({**GOOD, "text": "short"}), r"lessons\[0\].text is too short"),
    (lessons_json({**GOOD, "text": "x" * 301}), "too long"),
    (lessons_json({**GOOD, "text": "!!!! ???? ...."}), "has no words"),
    (lessons_json({**GOOD, "text": "bad \ud800 surrogate text"}), "not valid Unicode"),
    (lessons_json({**GOOD, "step": 99}), "step 99 is not a step of the run shown"),
    (lessons_json({**GOOD, "step": True}), "non-negative integer"),
    (lessons_json({**GOOD, "step": -1}), "non-negative integer"),
    (lessons_json({**GOOD, "confidence": "total"}), "confidence must be one of"),
    (lessons_json({**GOOD, "tags": "math"}), "tags must be a list"),
    (lessons_json({**GOOD, "tags": [""]}), "too short"),
    (lessons_json({**GOOD, "why": "because"}), "unexpected key"),
    ("not json at all", "not JSON"),
])
def test_parse_lessons_is_strict_and_names_what_is_wrong(text, needle):
    with pytest.raises(ModelOutputError, match=needle):
        parse_lessons(text, steps=[0, 1, 2], run="r1", outcome="failure", max_lessons=3)


def test_parse_lessons_builds_lesson_inputs():
    out = parse_lessons(lessons_json(GOOD, {"text": "Answer with the number only.", "step": 2,
                                            "confidence": "low"}), steps=[0, 1, 2], run="r1", outcome="failure")
    assert out == [{"text": GOOD["text"], "tags": ["math"], "source_run": "r1", "source_step": 1,
                    "outcome": "failure", "score": 0.9},
                   {"text": "Answer with the number only.", "tags": [], "source_run": "r1", "source_step": 2,
                    "outcome": "failure", "score": 0.3}]


def failed_run(store, name="task"):
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat(["41"]))
    rid = record_run(k, store, name)

    async def init(sys, args):
        h = await sys.open("llm")
        r = await sys.read(h, {"messages": [{"role": "user", "content": "What is 2 + 40?"}]})
        await report_outcome(sys, False, f"answered {r['content']!r}, expected 42")

    k.run(init, grant=["llm"])
    return rid


def learner(store, replies, memory=None):
    k = Kernel(deterministic=True, policy=AllowAll())
    chat = ScriptedChat(replies)
    mem = memory or LongMemoryDriver(clock=lambda: 5000.0)
    for d in (chat, mem, RunsDriver(store)):
        k.register_driver(d)
    return k, chat, mem


def test_learn_distils_a_failed_run_into_stored_lessons_with_their_source_step():
    store = MemoryStore()
    rid = failed_run(store)
    k, chat, mem = learner(store, [lessons_json({**GOOD, "step": 1})])

    async def init(sys, args):
        before = await unlearned_runs(sys, "task")
        res = await learn(sys, rid, distiller=Distiller(max_lessons=2))
        after = await unlearned_runs(sys, "task")
        return before, [l.to_dict() for l in res.stored.added], res.outcome, after

    before, added, outcome, after = k.run(init, grant=["llm", "lessons", "runs"]).value
    assert before == [rid] and after == [] and outcome == "failure"
    assert [(l["text"], l["source_run"], l["source_step"], l["outcome"]) for l in added] == \
        [(GOOD["text"], rid, 1, "failure")]
    req = chat.requests[0]
    schema = req["response_format"]["json_schema"]["schema"]
    item = schema["properties"]["lessons"]["items"]
    assert item["properties"]["step"]["enum"] == [0, 1]        # only the steps it was shown
    assert schema["properties"]["lessons"]["maxItems"] == 2
    shown = req["messages"][1]["content"]
    assert "FAILED: answered '41', expected 42" in shown and "[1] response: model answered: 41" in shown
    charges = [e for e in k.events.events(kind="charge")]
    assert len(charges) == 1 and charges[0].data[1] > 0          # the distillation was metered


def test_a_malformed_distillation_stores_nothing():
    store = MemoryStore()
    rid = failed_run(store)
    k, chat, mem = learner(store, [lessons_json({**GOOD, "step": 7})])

    async def init(sys, args):
        try:
            await learn(sys, rid)
        except ModelOutputError as e:
            return str(e)

    err = k.run(init, grant=["llm", "lessons", "runs"]).value
    assert "lessons[0].step 7 is not a step of the run shown" in err
    assert len(mem.index) == 0


def test_distiller_settings_are_checked():
    with pytest.raises(ValueError):
        Distiller(max_lessons=0)
