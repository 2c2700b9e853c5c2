"""The chat request and reply every LLM-like driver speaks (`llm`, `local`).

One shape for both, so an agent written against one runs on the other, and the journal
records the same thing whichever answered. A request is a plain dict (it is journaled):

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str | [parts],
                   "tool_calls": [...], "tool_call_id": str}],
     "tools": [<OpenAI function spec>, ...],      # optional
     "tool_choice": "auto" | "none" | "required",  # optional
     "max_tokens": int, "temperature": float,      # optional
     "model": str}                                 # optional; the driver's default otherwise

A streaming callback is not part of the request (it is not data): pass it when opening
the device, `open("llm", {"on_delta": fn})`, and it sees each text delta as it arrives.
The reply is a `ChatReply` converted to a dict by `to_dict()` for the journal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..abi.errors import DriverError

ROLES = ("system", "user", "assistant", "tool")


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class ChatReply:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"content": self.content, "tool_calls": [t.to_dict() for t in self.tool_calls],
                "finish_reason": self.finish_reason,
                "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
                "model": self.model}


def validate_request(req: Any, device: str) -> dict[str, Any]:
    """Check the request's shape; a malformed one is a `DriverError` that says what is wrong."""
    if not isinstance(req, dict):
        raise DriverError(f"{device}: a chat request is a dict with 'messages', got {type(req).__name__}")
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DriverError(f"{device}: 'messages' must be a non-empty list")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DriverError(f"{device}: message {i} needs a role in {ROLES}, got {m!r:.80}")
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise DriverError(f"{device}: 'tools' must be a list of function specs")
    return req


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments arrive as JSON text; a model may emit junk, which becomes {'_raw': text}."""
    if isinstance(raw, dict):
        return raw
    try:
        out = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {"_raw": raw}
    return out if isinstance(out, dict) else {"_value": out}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000
