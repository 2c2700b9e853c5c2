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
- errors become `abi.errors` types raised into the calling process (`RateLimited`,
  `UpstreamError`, `BadRequest`, `DriverTimeout`), never an exception in the kernel;
- when the caller is killed the kernel cancels the read's task; the cancellation reaches
  the HTTP request (the SDK closes the connection) and frees the gate slot.

Invariants: a reply is charged exactly `prompt + completion` tokens and the price table's
USD for them; if the endpoint reports no usage (some servers omit it when streaming) the
driver estimates it (4 characters a token) rather than letting the call go uncharged.
One `AsyncOpenAI` client per event loop (an HTTP pool is bound to the loop it was made in).
"""
from __future__ import annotations

import asyncio
import inspect
import json
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
    DEFAULT_CONTEXT, ChatReply, ToolCall, check_request, completion_bound, parse_arguments, prompt_bound,
    to_openai_messages, to_openai_tools,
)
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
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
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
        """The prompt estimate plus `max_tokens` (else the context limit), priced at the
        table's rate. A model with no price, asked for by a caller whose budget limits usd,
        is refused: its dollars could not be bounded."""
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
        return self._chat(handle, kwargs)

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

    async def _chat(self, handle: LLMHandle, kwargs: dict[str, Any]) -> DriverResult:
        lookup = self.priority_of or (self.host.priority if self.host is not None else None)
        async with self.gate.slot(caller_priority(lookup, handle.pid)):
            reply = await self._with_retries(handle, kwargs)
        cost = Cost(tokens=reply.total_tokens,
                    usd=self.prices.cost((reply.model, kwargs["model"]), reply.prompt_tokens,
                                         reply.completion_tokens))
        return DriverResult(reply.to_dict(), cost)

    async def _with_retries(self, handle: LLMHandle, kwargs: dict[str, Any]) -> ChatReply:
        import openai

        attempt = 0
        while True:
            self.calls += 1
            try:
                if handle.on_delta is not None:
                    return await self._stream(kwargs, handle.on_delta)
                return await self._once(kwargs)
            except openai.APIStatusError as e:
                status = e.status_code
                if status not in RETRY_STATUS and status < 500:
                    raise _typed_status(self.name, e, self.api_key is None) from None
                err: DriverError = _typed_status(self.name, e, False)
                retry_after = _retry_after(e.response.headers)
            except openai.APITimeoutError:
                err = DriverTimeout(f"{self.name}: no answer within {self.timeout:g}s "
                                    f"(after {attempt + 1} attempt(s))")
                retry_after = None
            except openai.APIConnectionError as e:
                err = UpstreamError(f"{self.name}: cannot reach {self.base_url or 'the endpoint'}: "
                                    f"{e.__cause__ or e}")
                retry_after = None
            except openai.OpenAIError as e:
                raise UpstreamError(f"{self.name}: {type(e).__name__}: {e}") from None
            except (ValueError, TypeError, AttributeError, KeyError) as e:  # a body that is not a completion
                raise UpstreamError(f"{self.name}: the endpoint's answer is not a chat completion "
                                    f"({type(e).__name__}: {str(e)[:200]})") from None
            if attempt >= self.max_retries:
                raise err
            delay = self.backoff.delay(attempt, self._rng, retry_after)
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
            raise UpstreamError(f"{self.name}: the endpoint answered with no choices")
        choice = resp.choices[0]
        msg = choice.message
        calls: list[ToolCall] = []
        for tc in msg.tool_calls or ():
            fn = getattr(tc, "function", None)
            if fn is not None:
                calls.append(ToolCall(tc.id or f"call_{len(calls)}", fn.name, parse_arguments(fn.arguments)))
        content = msg.content or ""
        usage = resp.usage
        if usage is not None:
            p, c = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            p, c = _estimate(kwargs, content, calls)
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
                        text.append(delta.content)
                        if cb is not None:
                            cb = await _notify(cb, delta.content, self.name)
                    for tcd in delta.tool_calls or ():
                        slot = acc.setdefault(tcd.index, {"id": "", "name": "", "args": ""})
                        if tcd.id:
                            slot["id"] = tcd.id
                        fn = tcd.function
                        if fn is not None:
                            if fn.name:
                                slot["name"] += fn.name
                            if fn.arguments:
                                slot["args"] += fn.arguments
        calls = [ToolCall(s["id"] or f"call_{i}", s["name"], parse_arguments(s["args"]))
                 for i, s in sorted(acc.items())]
        content = "".join(text)
        if usage is not None:
            p, c = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            p, c = _estimate(kwargs, content, calls)
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


def _estimate(kwargs: dict[str, Any], content: str, calls: list[ToolCall]) -> tuple[int, int]:
    prompt = len(json.dumps(kwargs["messages"], default=str)) + len(json.dumps(kwargs.get("tools", [])))
    out = len(content) + sum(len(json.dumps(c.arguments)) + len(c.name) for c in calls)
    return max(1, prompt // 4), max(1, out // 4) if (content or calls) else 0


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
