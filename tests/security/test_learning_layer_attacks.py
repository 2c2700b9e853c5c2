"""Attacks on the learning layer, each test named for what it stops: reaching a long memory
without a capability, writing through a read-only one, lessons smuggled in by model
output, candidates spending past their budget, junk requests crashing the kernel."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agentos import AllowAll, CapError, Kernel, Quota, SyscallError
from agentos.abi.types import ExitKind
from agentos.drivers.lesson_index import Lesson, LessonError
from agentos.drivers.lessons import LongMemoryDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.distill import parse_lessons
from agentos.userland.evolve import Candidate, Contains, Task, tournament
from agentos.userland.reflect import parse_verdict
from agentos.userland.structured import ModelOutputError

from ..policy.helpers import engine


def test_a_process_without_the_capability_cannot_reach_a_long_memory():
    mem = LongMemoryDriver(clock=lambda: 1.0)
    seen = {}

    async def intruder(sys, args):
        out = []
        for attempt in (lambda: sys.open("lessons"), lambda: sys.open(args)):   # by name, by a stolen ref
            try:
                await attempt()
                out.append("opened")
            except CapError as e:
                out.append(str(e))
        try:   # passing the device on to a child needs holding it
            await sys.spawn(intruder, caps=["lessons"])
        except CapError as e:
            out.append(str(e))
        seen["out"] = out

    async def init(sys, args):
        h = await sys.open("lessons")
        await sys.write(h, {"op": "add", "lessons": [{"text": "the secret plan is in the drawer"}]})
        _, c = await sys.spawn(intruder, args=sys.caps[0])
        await sys.waitpid(c)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(mem)
    k.run(init, grant=["lessons"])
    assert len(seen["out"]) == 3 and all("opened" != o for o in seen["out"])
    assert "holds no capability for device 'lessons'" in seen["out"][0]
    assert "is not held by pid 2" in seen["out"][1]


def test_a_revoked_memory_capability_stops_working_at_once():
    mem = LongMemoryDriver(clock=lambda: 1.0)
    seen = {}

    async def user(sys, args):
        h = await sys.open(sys.caps[0])
        await sys.read(h, {"op": "stats"})
        await sys.send(sys.caps[1], "ready")
        await sys.recv()
        try:
            await sys.read(h, {"op": "recall", "query": "plan"})
        except CapError as e:
            seen["err"] = str(e)

    async def init(sys, args):
        ref = await sys.derive(sys.caps[0], "open,read")
        _, c = await sys.spawn(user, caps=[ref, await sys.self_cap()])
        await sys.recv()
        await sys.revoke(ref)
        await sys.send(c, "go")
        await sys.waitpid(c)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(mem)
    k.run(init, grant=["lessons"])
    assert "was revoked" in seen["err"]


def test_a_strict_policy_without_a_memory_rule_kills_the_writer():
    k = Kernel(deterministic=True, policy=engine("""
        kernel: {version: 1, mode: strict}
        policies:
          - {name: recall-only, action: lessons.recall, effect: allow}
        """))
    mem = LongMemoryDriver(clock=lambda: 1.0)
    k.register_driver(mem)

    async def init(sys, args):
        h = await sys.open("lessons")
        await sys.read(h, {"op": "recall", "query": "anything"})
        await sys.write(h, {"op": "add", "lessons": [{"text": "an unauthorised lesson"}]})

    res = k.run(init, grant=["lessons"])
    assert res.reason.kind is ExitKind.POLICY and len(mem.index) == 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                           max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values.map(lambda v: json.dumps(v, allow_nan=True)),
                 st.dictionaries(st.sampled_from(["text", "step", "tags", "confidence", "x"]), json_values,
                                 max_size=5).map(lambda d: json.dumps({"lessons": [d]}, allow_nan=True)),
                 st.text(max_size=80)))
def test_model_output_cannot_smuggle_a_bad_lesson_into_memory(text):
    """Whatever a model writes, parse_lessons returns lessons the memory accepts or raises the
    typed error; it never returns an empty list."""
    try:
        out = parse_lessons(text, steps=[0, 1, 2], run="r", outcome="failure")
    except ModelOutputError:
        return
    assert out
    for d in out:
        try:
            Lesson.from_input(d, 1.0)
        except LessonError as e:  # pragma: no cover - the failure this test exists to catch
            raise AssertionError(f"parse_lessons let through a lesson the memory refuses: {e}") from e


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(json_values.map(json.dumps), st.text(max_size=60)))
def test_a_judge_reply_is_never_read_as_a_silent_accept(text):
    try:
        v = parse_verdict(text)
    except ModelOutputError:
        return
    data = json.loads(text)
    assert v.accept == (data["verdict"] == "accept")


def test_deeply_nested_model_output_is_refused_not_a_crash():
    for text in ("[" * 50_000 + "]" * 50_000, '{"lessons": ' + "[" * 50_000 + "]" * 50_000 + "}"):
        with pytest.raises(ModelOutputError, match="nests too deeply"):
            parse_lessons(text)


def test_a_candidate_cannot_spend_past_its_budget_and_the_books_balance():
    from agentos.drivers.chat import prompt_bound

    def greedy(req):
        from agentos.drivers.chat import ChatReply

        # as much as the call may cost: every reservation is used in full
        return ChatReply("395", prompt_tokens=prompt_bound(req), completion_tokens=req["max_tokens"])

    async def body(sys, args):
        before = await sys.budget()
        ranked = await tournament(sys, [Candidate("spend it all", "spender")], Contains(),
                                  [Task("a", "395"), Task("b", "395"), Task("c", "395")],
                                  quota=Quota(tokens=500))
        after = await sys.budget()
        return before.remaining["tokens"], after.remaining["tokens"], ranked[0]

    k = Kernel(deterministic=True, policy=AllowAll())
    script = ScriptedChat([greedy] * 10)
    k.register_driver(script)
    before, after, s = k.run(body, grant=["llm"], quota=Quota(tokens=10_000)).value
    assert s.status == "overrun" and s.fitness == -math.inf
    assert s.detail.startswith("quota(tokens) after ")
    charged = [e.data[1] for e in k.events.events(kind="charge") if e.pid == s.pid]
    assert sum(charged) <= 500 and before - after == sum(charged)   # the books balance
    assert len(script.requests) == len(charged)   # the call that could not be paid for never ran


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(json_values, st.dictionaries(st.sampled_from(["op", "lessons", "query", "k", "ids",
                                                                       "tags", "touch", "id"]),
                                                      json_values, max_size=4)), min_size=1, max_size=6))
def test_junk_requests_to_the_memory_are_typed_errors_and_the_kernel_goes_on(reqs):
    mem = LongMemoryDriver(clock=lambda: 1.0)

    async def init(sys, args):
        h = await sys.open("lessons")
        kinds = []
        for r in reqs:
            for op in (sys.read, sys.write):
                try:
                    await op(h, r)
                    kinds.append("ok")
                except SyscallError as e:
                    kinds.append(type(e).__name__)
        stats = await sys.read(h, {"op": "stats"})
        return kinds, stats["count"]

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(mem)
    res = k.run(init, grant=["lessons"])
    assert res.reason.normal, res.reason
    kinds, count = res.value
    assert set(kinds) <= {"ok", "DriverError"} and count == len(mem.index) <= 1000
