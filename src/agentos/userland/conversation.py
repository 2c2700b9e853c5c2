"""A multi-turn chat agent whose context window is the kernel's paged memory.

Every turn is a segment: the user's line and the model's reply are `remember`ed, the
system prompt is pinned. The process's `mem` quota is its context budget; past it the
kernel's pager evicts the oldest turns (leaving a summary segment) to swap. Before each
turn the agent `recall`s the turns most relevant to the new line, which pages them back
in, so a fact from long ago comes back exactly when it matters. The prompt is built from
what is resident: pinned system prompt, summaries, then the turns in order.

Protocol: send `{"say": text}` with a reply capability as `caps[0]`; the answer comes
back as `{"reply": text, "turn": n, "context": [segment ids]}` with the same `corr`.
`{"op": "stop"}` or SIGTERM ends the conversation normally.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..abi.errors import SyscallError
from ..abi.types import Down, Segment, SegmentKind, Signal, SignalMessage
from ..kernel.trap import Sys

SYSTEM = "You are a helpful assistant in a conversation. Answer briefly."
_PREFIX = {"user": "user: ", "assistant": "assistant: "}


@dataclass
class ConversationConfig:
    llm: str = "llm"
    system: str = SYSTEM
    recall_k: int = 3
    max_tokens: int = 200
    model: str | None = None
    name: str | None = None            # register under this name
    max_turns: int | None = None       # end normally after this many turns

    @staticmethod
    def of(args: Any) -> "ConversationConfig":
        if args is None:
            return ConversationConfig()
        if isinstance(args, ConversationConfig):
            return args
        if isinstance(args, dict):
            try:
                return ConversationConfig(**args)
            except TypeError as e:
                raise ValueError(f"conversation_agent: bad args: {e}") from None
        raise ValueError(f"conversation_agent: args must be a dict or ConversationConfig, "
                         f"got {type(args).__name__}")


def segment_message(seg: Segment) -> dict[str, Any] | None:
    """A resident segment as a chat message (None for segments that are not turns)."""
    body = seg.body if isinstance(seg.body, str) else str(seg.body)
    if seg.kind is SegmentKind.SUMMARY:
        return {"role": "system", "content": f"Earlier in this conversation: {body}"}
    for role, prefix in _PREFIX.items():
        if body.startswith(prefix):
            return {"role": role, "content": body[len(prefix):]}
    return None


async def conversation_turn(sys: Sys, handle: int, cfg: ConversationConfig, system_id: int,
                            text: str) -> tuple[str, list[int]]:
    """One turn: recall, remember the line, build the prompt from memory, ask, remember."""
    recalled = await sys.recall(text, cfg.recall_k) if cfg.recall_k > 0 else []
    await sys.remember(_PREFIX["user"] + text)
    resident = {s.id: s for s in await sys.working_set()}
    for s in recalled:  # a recalled segment the pager could not page in still informs this turn
        resident.setdefault(s.id, s)
    messages: list[dict[str, Any]] = [{"role": "system", "content": cfg.system}]
    used: list[int] = []
    for sid in sorted(resident):
        seg = resident[sid]
        if sid == system_id:
            continue
        m = segment_message(seg)
        if m is not None:
            messages.append(m)
            used.append(sid)
    req: dict[str, Any] = {"messages": messages, "max_tokens": cfg.max_tokens, "temperature": 0.0}
    if cfg.model:
        req["model"] = cfg.model
    reply = await sys.read(handle, req)
    answer = (reply.get("content") or "").strip()
    await sys.remember(_PREFIX["assistant"] + answer)
    return answer, used


async def conversation_agent(sys: Sys, args: Any) -> dict[str, Any]:
    """Process body: serve turns until told to stop. Returns the number of turns served."""
    cfg = ConversationConfig.of(args)
    if cfg.name:
        await sys.register(cfg.name)
    handle = await sys.open(cfg.llm)
    system_id = await sys.remember(cfg.system, pin=True)
    turns = 0
    while cfg.max_turns is None or turns < cfg.max_turns:
        msg = await sys.recv()
        if msg is None:   # only a recv with a timeout returns None
            continue
        body = msg.body
        if isinstance(body, SignalMessage):
            if body.signal is Signal.SIGTERM:
                break
            continue
        if isinstance(body, Down):
            continue
        if isinstance(body, dict) and body.get("op") == "stop":
            break
        if not isinstance(body, dict) or not isinstance(body.get("say"), str):
            if msg.caps:
                await sys.send(msg.caps[0], {"error": "expected {'say': text} or {'op': 'stop'}"},
                               corr=msg.corr)
            continue
        turns += 1
        try:
            answer, used = await conversation_turn(sys, handle, cfg, system_id, body["say"])
            out: dict[str, Any] = {"reply": answer, "turn": turns, "context": used}
        except SyscallError as e:
            out = {"error": str(e), "turn": turns}
        if msg.caps:
            await sys.send(msg.caps[0], out, corr=msg.corr)
    return {"turns": turns}


__all__ = ["ConversationConfig", "conversation_agent", "conversation_turn", "segment_message"]
