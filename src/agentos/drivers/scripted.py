"""A chat device that answers from a script: deterministic tests of agents, no model.

It speaks the same request and reply as `llm` and `local` (see `chat.py`), validates each
request the same way, reports token usage (so the kernel meters it exactly like a real
model) and records every request it saw. A script entry is a `ChatReply`, a reply dict,
a string (a plain answer), or a function of the request returning one of those, so a
test can answer from what is actually in the context.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Union

from ..abi.driver import Driver, DriverResult
from ..abi.errors import DriverError
from ..abi.types import Cost, Pid
from .chat import (
    ChatReply, Price, ToolCall, completion_bound, parse_arguments, prompt_bound, validate_request,
)

Entry = Union[ChatReply, dict, str, Callable[[dict[str, Any]], Any]]


def call(name: str, arguments: dict[str, Any] | None = None, id: str | None = None) -> ToolCall:
    """Shorthand for a scripted tool call."""
    return ToolCall(id or f"call_{name}", name, arguments or {})


def reply_from(value: Any, req: dict[str, Any]) -> ChatReply:
    """Turn a script entry into a `ChatReply`; prompt tokens are estimated from the request."""
    if callable(value) and not isinstance(value, (ChatReply, dict, str)):
        value = value(req)
    if isinstance(value, str):
        out = ChatReply(value)
    elif isinstance(value, ChatReply):
        out = ChatReply(value.content, list(value.tool_calls), value.finish_reason,
                        value.prompt_tokens, value.completion_tokens, value.model)
    elif isinstance(value, dict):
        calls = [ToolCall(c.get("id") or f"call_{i}", c["name"], parse_arguments(c.get("arguments")))
                 for i, c in enumerate(value.get("tool_calls") or [])]
        out = ChatReply(value.get("content") or "", calls,
                        value.get("finish_reason") or ("tool_calls" if calls else "stop"))
    else:
        raise DriverError(f"scripted: cannot turn {type(value).__name__} into a chat reply")
    if out.tool_calls and out.finish_reason == "stop":
        out.finish_reason = "tool_calls"
    if not out.prompt_tokens:
        out.prompt_tokens = sum(len(str(m.get("content") or "")) // 4 + 4 for m in req["messages"])
    if not out.completion_tokens:
        out.completion_tokens = len(out.content) // 4 + 1 + 8 * len(out.tool_calls)
    out.model = out.model or "scripted"
    return out


class ScriptedChat(Driver):
    """Replies in order from `script`; running out is a `DriverError` that says so."""

    def __init__(self, script: list[Entry], *, name: str = "llm", price: Price | None = None) -> None:
        self.name = name
        self.script = list(script)
        self.price = price
        self.requests: list[dict[str, Any]] = []
        self._next = 0

    def open(self, owner: Pid, params: Any) -> Any:
        if self.price is None and self.host is not None and self.host.limited(owner, "usd"):
            # as a model endpoint would: an unpriced model cannot be bounded by a usd budget
            raise DriverError(f"{self.name}: this scripted model has no price, so a usd budget cannot "
                              f"bound its calls (give it price=..., or drop the usd limit)")
        on_delta = (params or {}).get("on_delta") if isinstance(params, dict) else None
        return {"owner": owner, "on_delta": on_delta}

    def action(self, op: str, handle: Any, req: Any) -> tuple[str, Any]:
        return (f"{self.name}.chat", {"model": (req or {}).get("model") if isinstance(req, dict) else None})

    def bound(self, op: str, handle: Any, req: Any) -> Cost:
        """As a model endpoint: the prompt bound plus `max_tokens` (else the default
        context), priced at this device's rate. A script entry that reports more overruns."""
        if not isinstance(req, dict):
            return Cost()
        validate_request(req, self.name)
        prompt, completion = prompt_bound(req), completion_bound(req)
        return Cost(tokens=prompt + completion, usd=self.price.cost(prompt, completion) if self.price else 0.0)

    def read(self, handle: Any, req: Any) -> DriverResult:
        validate_request(req, self.name)
        self.requests.append(req)
        if self._next >= len(self.script):
            raise DriverError(f"{self.name}: the script has no reply left for request "
                              f"{len(self.requests)} (it holds {len(self.script)})")
        entry = self.script[self._next]
        self._next += 1
        out = reply_from(entry, req)
        if handle.get("on_delta") and out.content:
            for piece in re.findall(r"\s*\S+|\s+", out.content):
                handle["on_delta"](piece)
        usd = self.price.cost(out.prompt_tokens, out.completion_tokens) if self.price else 0.0
        return DriverResult(out.to_dict(), Cost(tokens=out.total_tokens, usd=usd))

    def write(self, handle: Any, data: Any) -> DriverResult:
        return self.read(handle, data)


__all__ = ["ScriptedChat", "call", "reply_from"]
