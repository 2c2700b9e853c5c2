"""Benchmark of the embedded model: load time, prompt and generation speed, and the cost
of grammar-constrained decoding (our argmax-first check vs masking all 262k tokens a step).

`run(quick)` returns rows for bench/run.py; `python bench/bench_local.py` prints them.
Skipped (one row saying why) where the 'local' extra is not installed.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

TASK = "Use the calculator to compute 17 * 23 + 4."
CALC = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic.",
                                         "parameters": {"type": "object", "properties": {
                                             "expression": {"type": "string"}}, "required": ["expression"]}}}



def run(quick: bool = True) -> list[dict[str, Any]]:
    try:
        import llama_cpp  # noqa: F401

        from agentos.drivers.local import LocalDriver, default_model_path

        default_model_path()
    except Exception as e:  # the extra is optional
        return [{"name": "local.skipped", "ops_per_s": 0.0, "notes": f"local model unavailable: {e}"}]
    from agentos.drivers.local_prompt import render, reply_schema

    rows: list[dict[str, Any]] = []
    d = LocalDriver(max_tokens=256)
    load = d.load()
    threads = d.n_threads
    rows.append({"name": "local.load", "seconds": round(load, 3), "ops_per_s": round(1 / load, 3),
                 "notes": f"gemma3-270m Q4_K_M, mmap load, {threads} thread(s)"})
    h = d.open(0, None)
    n_free = 32 if quick else 128

    async def chat(req: dict[str, Any]) -> dict[str, Any]:
        return (await d.read(h, req)).value

    # free text: prompt and generation speed
    long_prompt = "Summarise: " + " ".join(f"item {i} is fine." for i in range(60 if quick else 200))
    d.stats.per_call.clear()
    asyncio.run(chat({"messages": [{"role": "user", "content": long_prompt}], "max_tokens": n_free}))
    p_tok, g_tok, p_s, g_s = d.stats.per_call[-1]
    rows.append({"name": "local.prompt_eval", "tokens": p_tok, "ops_per_s": round(p_tok / p_s, 1),
                 "notes": f"tokens/s evaluating a {p_tok}-token prompt (cache cleared first)"})
    rows.append({"name": "local.generate", "tokens": g_tok, "ops_per_s": round(max(g_tok - 1, 1) / g_s, 1),
                 "notes": "tokens/s, greedy, free text"})

    # grammar-constrained: ours (argmax first, mask only on refusal) vs the full-vocabulary mask
    req = {"messages": [{"role": "user", "content": TASK}], "tools": [CALC], "tool_choice": "auto",
           "max_tokens": 64}
    masks0 = d.stats.full_masks
    t0 = time.perf_counter()
    reply = asyncio.run(chat(req))
    ours_s = time.perf_counter() - t0
    ours_tok = reply["usage"]["completion_tokens"]
    ours_gen = max(ours_tok - 1, 1) / d.stats.per_call[-1][3]
    rows.append({"name": "local.grammar_call", "tokens": ours_tok, "seconds": round(ours_s, 3),
                 "ops_per_s": round(ours_gen, 1),
                 "notes": f"tokens/s generating one tool call under the JSON grammar (argmax checked "
                          f"first); {d.stats.full_masks - masks0} of {ours_tok} steps needed the full mask"})
    from llama_cpp import LlamaGrammar

    llm = d._llm
    prompt = render(req["messages"], req["tools"], "auto")
    toks = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    grammar = LlamaGrammar.from_json_schema(json.dumps(reply_schema(req["tools"], "auto")), verbose=False)
    llm.reset()
    t0 = time.perf_counter()
    n = 0
    t_first = t0
    for _tok in llm.generate(toks, temp=0.0, grammar=grammar, reset=True):
        n += 1
        if n == 1:
            t_first = time.perf_counter()
        if n >= ours_tok:
            break
    naive_s = time.perf_counter() - t0
    naive_gen = max(n - 1, 1) / (time.perf_counter() - t_first)
    llm.reset()
    rows.append({"name": "local.grammar_call_full_mask", "tokens": n, "seconds": round(naive_s, 3),
                 "ops_per_s": round(naive_gen, 1),
                 "notes": f"tokens/s for the same call masking all {llm.n_vocab()} tokens every step "
                          f"(llama-cpp-python's generate): {ours_gen / naive_gen:.1f}x slower than ours"})
    # a ReAct-like second turn: same prefix plus a tool result; KV prefix reuse on vs off
    turn1 = {"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 4}
    turn2 = {"messages": [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "ok"},
                          {"role": "user", "content": "And item 3?"}], "max_tokens": 4}
    for reuse in (False, True):
        d.prefix_cache = reuse
        asyncio.run(chat(turn1))
        asyncio.run(chat(turn2))
        p_tok, _g, p_s, _gs = d.stats.per_call[-1]
        rows.append({"name": f"local.second_turn_prefix_{'reuse' if reuse else 'fresh'}", "tokens": p_tok,
                     "seconds": round(p_s, 3), "ops_per_s": round(1 / p_s, 2),
                     "notes": "time to first token of a follow-up turn " +
                              ("reusing the KV cache of the shared prefix (prefix_cache=True)" if reuse else
                               "evaluating the whole prompt again (the default: a reply depends on its "
                               "request alone)")})
    d.prefix_cache = False
    d.shutdown()
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--full" not in sys.argv):
        print(row)
