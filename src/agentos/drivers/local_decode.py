"""Greedy decoding under a grammar, fast: check the argmax first, mask the vocabulary only if needed.

Gemma's vocabulary has 262k tokens. Applying a grammar to every one of them costs far
more than the model's forward pass on a CPU, so this loop does what llama.cpp's own
sampler does: take the highest-logit token, ask the grammar about that one token, and
only when it is refused mask the whole vocabulary and take the best allowed token. The
result is exactly greedy decoding under the grammar (the highest-logit allowed token at
every step), at close to the speed of unconstrained decoding.

Invariants: runs on one thread at a time per model (the caller serializes); the grammar
sampler is freed on every exit path; `should_stop` is polled once per token.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Callable, Iterator


class GrammarState:
    """A llama.cpp grammar sampler for one generation."""

    def __init__(self, llm: Any, gbnf: str) -> None:
        import llama_cpp as C  # type: ignore[import-not-found, import-untyped, unused-ignore]

        self._C = C
        self._n_vocab = llm.n_vocab()
        self.ptr = C.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"), b"root")
        if not self.ptr:
            raise ValueError("llama.cpp refused the grammar")
        self._one = (C.llama_token_data * 1)()
        self._one_arr = C.llama_token_data_array(self._one, 1, -1, False)
        self._full: Any = None
        self.full_masks = 0

    def allows(self, tok: int, logit: float) -> bool:
        one = self._one
        one[0].id = tok  # type: ignore[assignment]
        one[0].logit = logit
        one[0].p = 0.0
        self._one_arr.data = self._one
        self._one_arr.size = 1
        self._one_arr.selected = -1
        self._one_arr.sorted = False
        self._C.llama_sampler_apply(self.ptr, ctypes.byref(self._one_arr))
        return self._one_arr.size > 0 and not math.isinf(self._one_arr.data[0].logit)

    def best_allowed(self, logits: Any) -> int:
        """Mask the whole vocabulary and take the highest allowed logit."""
        import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

        C = self._C
        n = self._n_vocab
        if self._full is None:
            self._full = (C.llama_token_data * n)()
            self._view = np.frombuffer(self._full, dtype=np.dtype(
                [("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True))
        view = self._view
        view["id"] = np.arange(n, dtype=np.int32)
        view["logit"] = logits
        view["p"] = 0.0
        arr = C.llama_token_data_array(self._full, n, -1, False)
        C.llama_sampler_apply(self.ptr, ctypes.byref(arr))
        self.full_masks += 1
        if arr.size != n:  # a sampler that compacts: read what it left
            kept = [(arr.data[i].logit, arr.data[i].id) for i in range(arr.size)]
            best = max(kept, key=lambda t: (t[0], -t[1]))
            if math.isinf(best[0]):
                raise ValueError("the grammar allows no token here")
            return int(best[1])
        masked = view["logit"]
        tok = int(masked.argmax())
        if math.isinf(float(masked[tok])):
            raise ValueError("the grammar allows no token here")
        return tok

    def accept(self, tok: int) -> None:
        self._C.llama_sampler_accept(self.ptr, tok)

    def close(self) -> None:
        if self.ptr:
            self._C.llama_sampler_free(self.ptr)
            self.ptr = None


def common_prefix(a: Any, b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and int(a[i]) == b[i]:
        i += 1
    return i


def greedy_tokens(llm: Any, prompt: list[int], *, grammar: GrammarState | None, stop_ids: set[int],
                  max_tokens: int, should_stop: Callable[[], bool], reuse_prefix: bool,
                  repeat_penalty: float = 1.0, penalty_last_n: int = 64) -> Iterator[int]:
    """Yield generated token ids (not the stop token). Evaluates the prompt first.

    `repeat_penalty` > 1 lowers the logits of tokens generated in the last `penalty_last_n`
    steps (divided when positive, multiplied when negative, as llama.cpp does) before the
    argmax: still deterministic, and it stops a small model's runaway "44444…".

    With `reuse_prefix` the KV cache keeps whatever prefix the previous request shared with
    this one; otherwise the cache is cleared and the whole prompt evaluated afresh.
    """
    import llama_cpp as C  # type: ignore[import-not-found, import-untyped, unused-ignore]
    import numpy as np  # type: ignore[import-not-found, import-untyped, unused-ignore]

    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx
    keep = 0
    if reuse_prefix and llm.n_tokens:
        keep = min(common_prefix(llm.input_ids[: llm.n_tokens], prompt), len(prompt) - 1)
    llm.n_tokens = keep
    llm.eval(prompt[keep:])
    produced = 0
    recent: list[int] = []
    while produced < max_tokens:
        if should_stop():
            return
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        if repeat_penalty != 1.0 and recent:
            ids = np.fromiter(set(recent), dtype=np.int64)
            vals = logits[ids]
            logits[ids] = np.where(vals > 0, vals / repeat_penalty, vals * repeat_penalty)
        tok = int(logits.argmax())
        if grammar is not None:
            if not grammar.allows(tok, float(logits[tok])):
                tok = grammar.best_allowed(logits)
            grammar.accept(tok)
        if tok in stop_ids:
            return
        yield tok
        produced += 1
        if repeat_penalty != 1.0:
            recent.append(tok)
            if len(recent) > penalty_last_n:
                del recent[0]
        if produced < max_tokens:
            llm.eval([tok])


__all__ = ["GrammarState", "common_prefix", "greedy_tokens"]
