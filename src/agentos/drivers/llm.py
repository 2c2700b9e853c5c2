"""The `llm` driver: any OpenAI-compatible chat endpoint, through the `openai` SDK.

A read is one chat completion: the request and reply shapes are `drivers.chat`'s (the
`local` driver speaks the same), the cost is the reported usage in tokens plus its USD
price from a `PriceTable`. Open params may carry `on_delta`, a callback that sees each
text delta as it streams; it is observational only (the syscall still returns one reply,
so metering and the journal do not change). It may be sync or async; one that raises is
switched off for the rest of that call. If a stream breaks and the call is retried, the
deltas of the new attempt follow those already seen; `read_all` streams interleave.

What the driver adds on top of the SDK, and why:
- a `PriorityGate` per device bounds concurrent requests; waiters go by the caller's
  process priority (from the `DriverHost` the kernel hands it at registration), then FIFO;
- its own retries (the SDK's are off) for 429, 408/409, 5xx, timeouts and lost
  connections, with capped exponential backoff that honours Retry-After; the delays and
  the sleep function are configurable, so tests check the schedule without waiting;
- `timeout` bounds the whole call (every attempt and the backoff between them), not each
  socket read: an endpoint that drips one byte at a time ends in `DriverTimeout`;
- the reply is held to the chat contract (`chat.check_reply`): content a string or null,
  tool-call names strings, arguments JSON, token counts non-negative integers; a reply
  that breaks it is an `UpstreamError` and is never charged as reported;
- errors become `abi.errors` types raised into the calling process (`RateLimited`,
  `UpstreamError`, `BadRequest`, `DriverTimeout`), never an exception in the kernel;
- when the caller is killed the kernel cancels the read's task; the cancellation reaches
  the HTTP request (the SDK closes the connection) and frees the gate slot.

Invariants: a reply is charged exactly `prompt + completion` tokens and the price table's
USD for them; if the endpoint reports no usage (some servers omit it when streaming) the
usage is unknown, and the call is charged its reservation (`bound`), never a guess below
it. An answer that breaks the reply contract is an `UpstreamError` marked
`usage_unknown`, which the kernel charges at the full reservation too.
One `AsyncOpenAI` client per event loop (an HTTP pool is bound to the loop it was made in).
"""
from __future__ import annotations

import asyncio
import inspect
import math
import logging
import os
import random
import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from ..abi.driver import Driver, DriverHost, DriverResult
from ..abi.errors import BadRequest, DriverError, DriverTimeout, RateLimited, UpstreamError
from ..abi.types import Cost
from .chat import (
    DEFAULT_CONTEXT, ChatReply, ToolCall, bad_reply, check_reply, check_request, completion_bound, prompt_bound,
    reply_arguments, reply_count, reply_text,
)
from .chat import parse_arguments, to_openai_messages, to_openai_tools
from .llm_sched import PriorityGate, caller_priority
from .prices import PriceTable, price_table

log = logging.getLogger("agentos.drivers.llm")

OPEN_PARAMS = ("on_delta", "model", "temperature", "max_tokens")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (0-based): min(cap, base * factor**n), less up to `jitter` of it.
    A server's Retry-After wins when given (still capped)."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.cap, max(0.0, retry_after))
        d = min(self.cap, self.base * self.factor ** attempt)
        return d * (1.0 - self.jitter * rng.random()) if self.jitter else d


@dataclass(slots=True)
class LLMHandle:
    pid: int
    on_delta: Callable[[str], Any] | None
    defaults: dict[str, Any]


class LLMDriver(Driver):
    """Requests: a `drivers.chat` request dict. Replies: `ChatReply.to_dict()`."""

    name = "llm"

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None,
                 model: str = "gpt-4o-mini", prices: PriceTable | Mapping[str, Any] | None = None,
                 max_concurrent: int | None = 8, timeout: float = 60.0, max_retries: int = 3,
                 backoff: Backoff | None = None, sleep: Callable[[float], Awaitable[Any]] | None = None,
                 priority_of: Callable[[int], int] | None = None, stream_usage: bool = True,
                 headers: Mapping[str, str] | None = None, seed: int | None = None,
                 name: str = "llm", context: int = DEFAULT_CONTEXT) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if type(context) is not int or not 0 < context <= 1 << 32:
            raise ValueError(f"context must be a positive number of tokens, got {context!r}")
        self.name = name
        self.base_url = base_url
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.model = model
        self.prices = price_table(prices)
        self.context = context  # completion bound of a request without max_tokens
        self.gate = PriorityGate(max_concurrent)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self._sleep = sleep or asyncio.sleep
        self.priority_of = priority_of
        self.stream_usage = stream_usage
        self.headers = dict(headers or {})
        self._rng = random.Random(seed)
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
        self.retries = 0       # retried attempts, for metrics and tests
        self.calls = 0         # HTTP attempts made

    # -- ABI --------------------------------------------------------------------------
    def on_register(self, host: DriverHost) -> None:
        super().on_register(host)
        self.name = host.name

    def open(self, owner: int, params: Any) -> LLMHandle:
        params = params or {}
        if not isinstance(params, dict):
            raise DriverError(f"{self.name}: open params are a dict with keys {list(OPEN_PARAMS)}")
        extra = sorted(k for k in params if k not in OPEN_PARAMS)
        if extra:
            raise DriverError(f"{self.name}: unknown open param(s) {extra}; valid: {list(OPEN_PARAMS)}")
        on_delta = params.get("on_delta")
        if on_delta is not None and not callable(on_delta):
            raise DriverError(f"{self.name}: on_delta must be callable, got {type(on_delta).__name__}")
        defaults = {k: params[k] for k in ("model", "temperature", "max_tokens") if k in params}
        if defaults:
            check_request({"messages": [{"role": "user", "content": ""}], **defaults}, self.name)
        model = defaults.get("model") or self.model
        if (self.prices.lookup(model) is None and self.host is not None
                and self.host.limited(owner, "usd")):
            raise DriverError(f"{self.name}: model {model!r} has no price in this device's table, so "
                              f"a usd budget cannot bound its calls (add a price, or drop the usd limit)")
        return LLMHandle(owner, on_delta, defaults)

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        """`<device>.chat`, with a summary a policy can constrain (model, limits, tools)."""
        if op != "read" or not isinstance(req, dict):
            return (f"{self.name}.{op}", {})
        d = handle.defaults if isinstance(handle, LLMHandle) else {}
        tools = req.get("tools") or []
        return (f"{self.name}.chat", {
            "model": req.get("model") or d.get("model") or self.model,
            "max_tokens": req.get("max_tokens", d.get("max_tokens")),
            "temperature": req.get("temperature", d.get("temperature")),
            "tools": [_tool_name(t) for t in tools] if isinstance(tools, list) else [],
            "messages": len(req.get("messages") or ()),
        })

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """The prompt bound (`chat.prompt_bound`: one token per byte sent, an upper bound)
        plus `max_tokens` (else the context limit), priced at the table's rate. A model with
        no price, asked for by a caller whose budget limits usd, is refused: its dollars
        could not be bounded."""
        if op != "read" or not isinstance(req, dict) or not isinstance(handle, LLMHandle):
            return Cost()
        check_request(req, self.name)
        prompt = prompt_bound(req)
        completion = completion_bound(req, handle.defaults, self.context)
        model = req.get("model") or handle.defaults.get("model") or self.model
        price = self.prices.lookup(model) if isinstance(model, str) else None
        if price is None:
            if self.host is not None and self.host.limited(handle.pid, "usd"):
                raise DriverError(f"{self.name}: model {model!r} has no price in this device's table, "
                                  f"so a usd budget cannot bound its calls (add a price, or drop the "
                                  f"usd limit)")
            return Cost(tokens=prompt + completion)
        return Cost(tokens=prompt + completion, usd=price.cost(prompt, completion))

    def read(self, handle: LLMHandle, req: Any) -> Awaitable[DriverResult]:
        check_request(req, self.name)
        kwargs = self._kwargs(handle, req)  # malformed input fails here, before any I/O
        if self.prices.strict:
            self.prices.cost((kwargs["model"],), 0, 0)
        return self._chat(handle, kwargs, req)

    # -- the call ------------------------------------------------------------------------
    def _kwargs(self, handle: LLMHandle, req: dict[str, Any]) -> dict[str, Any]:
        d = handle.defaults
        kw: dict[str, Any] = {"model": req.get("model") or d.get("model") or self.model,
                              "messages": to_openai_messages(req["messages"], self.name)}
        if req.get("tools"):
            kw["tools"] = to_openai_tools(req["tools"], self.name)
            if req.get("tool_choice") is not None:
                kw["tool_choice"] = req["tool_choice"]
        for key in ("max_tokens", "temperature"):
            v = req.get(key, d.get(key))
            if v is not None:
                kw[key] = v
        rf = req.get("response_format")
        if rf is not None:  # structured output: the endpoint decodes to the schema
            if rf.get("type") == "json_schema":
                js = rf["json_schema"]
                rf = {"type": "json_schema", "json_schema": {"name": js.get("name", "reply"), "schema": js["schema"],
                                                             **({"strict": js["strict"]} if "strict" in js else {})}}
            kw["response_format"] = rf
        return kw

    async def _chat(self, handle: LLMHandle, kwargs: dict[str, Any], req: dict[str, Any]) -> DriverResult:
        lookup = self.priority_of or (self.host.priority if self.host is not None else None)
        # `timeout` bounds the whole call from here: the wait for a slot counts too
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            await asyncio.wait_for(self.gate.acquire(caller_priority(lookup, handle.pid)), self.timeout)
        except asyncio.TimeoutError:
            err = DriverTimeout(f"{self.name}: no request slot within {self.timeout:g}s "
                                f"({self.gate.limit} calls in flight); nothing was sent")
            err.usage_unknown = False
            raise err from None
        try:
            reply = await self._with_retries(handle, kwargs, deadline)
        finally:
            self.gate.release()
        if reply.prompt_tokens == _UNREPORTED:
            # the endpoint reported no usage (some servers omit it when streaming): unknown,
            # so the call costs what was reserved for it, never a guess below that
            reply.prompt_tokens = prompt_bound(req)
            reply.completion_tokens = completion_bound(req, handle.defaults, self.context)
        check_reply(reply, self.name)
        cost = Cost(tokens=reply.total_tokens,
                    usd=self.prices.cost((reply.model, kwargs["model"]), reply.prompt_tokens,
                                         reply.completion_tokens))
        return DriverResult(reply.to_dict(), cost)

    async def _with_retries(self, handle: LLMHandle, kwargs: dict[str, Any], deadline: float) -> ChatReply:
        import openai

        # `timeout` bounds the whole call, retries and backoff included, not each socket
        # read: an endpoint that drips a byte at a time cannot keep a caller waiting longer
        loop = asyncio.get_running_loop()
        attempt = 0
        served = False
        while True:
            self.calls += 1
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                if handle.on_delta is not None:
                    return await asyncio.wait_for(self._stream(kwargs, handle.on_delta), left)
                return await asyncio.wait_for(self._once(kwargs), left)
            except asyncio.TimeoutError:
                raise DriverTimeout(f"{self.name}: no answer within {self.timeout:g}s for the whole call "
                                    f"(after {attempt + 1} attempt(s))") from None
            except openai.APIStatusError as e:
                status = e.status_code
                if status not in RETRY_STATUS and status < 500:
                    refused = _typed_status(self.name, e, self.api_key is None)
                    refused.usage_unknown = served
                    raise refused from None
                err: DriverError = _typed_status(self.name, e, False)
                retry_after = _retry_after(e.response.headers)
            except openai.APITimeoutError:
                err = DriverTimeout(f"{self.name}: no answer within {self.timeout:g}s "
                                    f"(after {attempt + 1} attempt(s))")
                retry_after = None
            except openai.APIConnectionError as e:
                err = UpstreamError(f"{self.name}: cannot reach {self.base_url or 'the endpoint'}: "
                                    f"{e.__cause__ or e}")
                # a connection that failed after the request went out may have been served
                err.usage_unknown = not _never_sent(e)
                retry_after = None
            except openai.OpenAIError as e:
                raise bad_reply(f"{self.name}: {type(e).__name__}: {e}") from None
            except (ValueError, TypeError, AttributeError, KeyError) as e:  # a body that is not a completion
                raise bad_reply(f"{self.name}: the endpoint's answer is not a chat completion "
                                f"({type(e).__name__}: {str(e)[:200]})") from None
            served = served or err.usage_unknown  # an earlier attempt may have been served
            delay = self.backoff.delay(attempt, self._rng, retry_after)
            if attempt >= self.max_retries or loop.time() + delay >= deadline:
                err.usage_unknown = served
                raise err
            attempt += 1
            self.retries += 1
            log.info("%s: retry %d in %.3fs after %s", self.name, attempt, delay, err)
            await self._sleep(delay)

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        c = self._clients.get(loop)
        if c is None:
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            # our own HTTP pool: the SDK's default one schedules its close on whatever loop
            # runs when it is collected, which fails once its own loop is gone
            c = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "no-key-configured",
                            timeout=self.timeout, max_retries=0, default_headers=self.headers or None,
                            http_client=DefaultAsyncHttpxClient(timeout=self.timeout))
            self._clients[loop] = c
        return c

    async def _once(self, kwargs: dict[str, Any]) -> ChatReply:
        resp = await self._client().chat.completions.create(**kwargs)
        if not resp.choices:
            raise bad_reply(f"{self.name}: the endpoint answered with no choices")
        choice = resp.choices[0]
        msg = choice.message
        calls: list[ToolCall] = []
        d = self.name
        for tc in msg.tool_calls or ():
            fn = getattr(tc, "function", None)
            if fn is not None:
                calls.append(ToolCall(tc.id or f"call_{len(calls)}", reply_text(d, "tool-call name", fn.name),
                                      reply_arguments(d, fn.arguments)))
        content = reply_text(d, "content", msg.content)
        usage = resp.usage
        if usage is not None:
            p = reply_count(d, "prompt_tokens", usage.prompt_tokens)
            c = reply_count(d, "completion_tokens", usage.completion_tokens)
        else:
            p = c = _UNREPORTED
        return ChatReply(content, calls, choice.finish_reason or "stop", p, c, resp.model or kwargs["model"])

    async def _stream(self, kwargs: dict[str, Any], on_delta: Callable[[str], Any]) -> ChatReply:
        extra: dict[str, Any] = {"stream": True}
        if self.stream_usage:
            extra["stream_options"] = {"include_usage": True}
        stream = await self._client().chat.completions.create(**kwargs, **extra)
        text: list[str] = []
        acc: dict[int, dict[str, str]] = {}
        finish = "stop"
        model = ""
        usage = None
        cb: Callable[[str], Any] | None = on_delta
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    if ch.finish_reason:
                        finish = ch.finish_reason
                    delta = ch.delta
                    if delta is None:
                        continue
                    if delta.content:
                        piece = reply_text(self.name, "content", delta.content)
                        text.append(piece)
                        if cb is not None:
                            cb = await _notify(cb, piece, self.name)
                    for tcd in delta.tool_calls or ():
                        slot = acc.setdefault(tcd.index, {"id": "", "name": "", "args": ""})
                        if tcd.id:
                            slot["id"] = tcd.id
                        fn = tcd.function
                        if fn is not None:
                            if fn.name:
                                slot["name"] += reply_text(self.name, "tool-call name", fn.name)
                            if fn.arguments:
                                slot["args"] += reply_text(self.name, "tool-call arguments", fn.arguments)
        calls = [ToolCall(s["id"] or f"call_{i}", s["name"], parse_arguments(s["args"]))
                 for i, s in sorted(acc.items())]
        content = "".join(text)
        if usage is not None:
            p = reply_count(self.name, "prompt_tokens", usage.prompt_tokens)
            c = reply_count(self.name, "completion_tokens", usage.completion_tokens)
        else:
            p = c = _UNREPORTED
        return ChatReply(content, calls, finish, p, c, model or kwargs["model"])

    async def aclose(self) -> None:
        """Close this loop's HTTP client (others go with their loops)."""
        c = self._clients.pop(asyncio.get_running_loop(), None)
        if c is not None:
            await c.close()


async def _notify(cb: Callable[[str], Any], text: str, device: str) -> Callable[[str], Any] | None:
    """Run the observer; one that raises is switched off for the rest of the call, never
    failing the syscall it watches."""
    try:
        out = cb(text)
        if inspect.isawaitable(out):
            await out
        return cb
    except Exception as e:
        log.warning("%s: on_delta raised %s: %s; no more deltas for this call", device, type(e).__name__, e)
        return None


def _tool_name(t: Any) -> str:
    if isinstance(t, dict):
        fn = t["function"] if isinstance(t.get("function"), dict) else t
        return str(fn.get("name", "?"))
    return "?"


_UNREPORTED = -1
"""The usage of a reply that reported none (no endpoint can send a negative count: the
reply contract refuses one), replaced by the call's reservation in `_chat`."""


def _never_sent(e: BaseException) -> bool:
    """Whether a connection error happened before the request could reach the endpoint
    (connect refused or timed out), so it consumed nothing."""
    cause = e.__cause__ or e.__context__
    # httpx's classes, by name: the SDK's transport is httpx, but a test double may not be
    return type(cause).__name__ in ("ConnectError", "ConnectTimeout")


def _retry_after(headers: Any) -> float | None:
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        s = headers.get("retry-after")
        if s is not None:
            return float(s)
    except (TypeError, ValueError):  # an HTTP date or junk: fall back to our own backoff
        return None
    return None


def _typed_status(device: str, e: Any, no_key: bool) -> DriverError:
    status = e.status_code
    detail = _error_message(e)
    if status == 429:
        return RateLimited(f"{device}: rate limited (HTTP 429): {detail}")
    if status >= 500 or status in RETRY_STATUS:
        return UpstreamError(f"{device}: endpoint failed (HTTP {status}): {detail}")
    hint = ""
    if status in (401, 403) and no_key:
        hint = " (no API key was configured: pass api_key= or set OPENAI_API_KEY)"
    return BadRequest(f"{device}: request refused (HTTP {status}): {detail}{hint}")


def _error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(e, "message", e))


__all__ = ["Backoff", "LLMDriver", "LLMHandle"]
