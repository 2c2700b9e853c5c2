"""Prompt and grammar for the embedded model: chat requests → Gemma turns, tools → JSON schema.

A small local model does not pick tools reliably on its own, so when a request offers
tools its whole reply is generated under a grammar compiled from one JSON schema: either
`{"action": <one of the offered names>, "arguments": <that tool's parameter schema>}` or
`{"action": "final_answer", "answer": <text>}`. The decision comes first, as the value of
`action` (a choice among names, which a small model makes far better than a choice
between two key shapes), and the arguments are then constrained by the schema of the tool
actually chosen. The reply is therefore always
valid JSON naming a real tool with arguments of the right shape; whether it is the
*right* call is up to the model. Pure functions, no model needed (tests run them alone).
"""
from __future__ import annotations

import json
from typing import Any

from ..abi.errors import DriverError
from .chat import ChatReply, ToolCall

BOS = "<bos>"
START, END = "<start_of_turn>", "<end_of_turn>"

ANSWER = "final_answer"   # the action that ends a turn with text instead of a tool call

TOOL_INSTRUCTIONS = (
    "You have these tools:\n{tools}\n"
    "Reply with one JSON object. To use a tool: "
    '{{"action": "<tool name>", "arguments": {{...}}}}. The tool\'s result comes back to you. '
    'When the results give you the answer: {{"action": "final_answer", "answer": "<answer>"}}.'
)

RESULT_TURN = "{name} returned:\n{content}"
FINAL_INSTRUCTION = "Now give the final answer to the task, in a few words, using the tool results."


def _text(content: Any) -> str:
    """Message content as text; image and other non-text parts are named, not dropped silently."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                out.append(f"[{part.get('type', 'part')} omitted: this model reads text only]")
            else:
                out.append(str(part))
        return "\n".join(out)
    return str(content)


def tool_signature(spec: dict[str, Any]) -> str:
    """`name(a: integer, b: string?) - description` for the tool list in the prompt."""
    fn = spec.get("function", spec)
    params = fn.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or ())
    args = ", ".join(f"{k}: {v.get('type', 'any') if isinstance(v, dict) else 'any'}{'' if k in required else '?'}"
                     for k, v in props.items())
    desc = fn.get("description") or ""
    return f"- {fn['name']}({args})" + (f": {desc}" if desc else "")


def tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    names = []
    for i, t in enumerate(tools or ()):
        fn = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DriverError(f"tool {i} is not an OpenAI function spec with a name: {t!r:.80}")
        names.append(fn["name"])
    return names


def _call_dicts(m: dict[str, Any]) -> list[dict[str, Any]]:
    """An assistant message's tool calls, in our shape or OpenAI's."""
    out = []
    for c in m.get("tool_calls") or ():
        if "function" in c:  # OpenAI shape: arguments as JSON text
            fn = c["function"]
            args = fn.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args or "{}")
                except ValueError:
                    args = {"_raw": args}
            out.append({"action": fn.get("name"), "arguments": args or {}})
        else:
            out.append({"action": c.get("name"), "arguments": c.get("arguments") or {}})
    return out


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
           tool_choice: str | None = "auto") -> str:
    """The Gemma chat transcript, ending with an open model turn.

    Gemma has no system role: system text opens the first user turn. Tool results become
    user turns ("calc returned:\n35"); the model's own tool calls are shown as the JSON it
    would have produced, so the transcript and the grammar agree.
    """
    system = "\n\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    offered = tools and tool_choice != "none"
    if offered:
        sigs = "\n".join(tool_signature(t) for t in tools or ())
        system = (system + "\n\n" if system else "") + TOOL_INSTRUCTIONS.format(tools=sigs)
    elif tools and tool_choice == "none":
        system = (system + "\n\n" if system else "") + \
            FINAL_INSTRUCTION
    turns: list[tuple[str, str]] = []   # (role, text) with role user|model, merged when repeated

    def push(role: str, text: str) -> None:
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n" + text)
        else:
            turns.append((role, text))

    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "user":
            push("user", _text(m.get("content")))
        elif role == "assistant":
            calls = _call_dicts(m)
            if calls:
                push("model", "\n".join(json.dumps(c, ensure_ascii=False) for c in calls))
            elif tools:
                push("model", json.dumps({"action": ANSWER, "answer": _text(m.get("content"))},
                                         ensure_ascii=False))
            else:
                push("model", _text(m.get("content")))
        elif role == "tool":
            name = m.get("name") or m.get("tool_call_id") or "tool"
            push("user", RESULT_TURN.format(name=name, content=_text(m.get("content"))))
    if not turns or turns[0][0] != "user":
        turns.insert(0, ("user", ""))
    if system:
        turns[0] = ("user", system + ("\n\n" + turns[0][1] if turns[0][1] else ""))
    if turns[-1][0] == "model":   # continue after the model's own last turn: a new user turn is not implied
        turns.append(("user", "Continue."))
    out = [BOS]
    for role, text in turns:
        out.append(f"{START}{role}\n{text}{END}\n")
    out.append(f"{START}model\n")
    return "".join(out)


def reply_schema(tools: list[dict[str, Any]] | None, tool_choice: str | None,
                 answer_chars: int | None = None) -> dict[str, Any] | None:
    """The JSON schema every reply must match, or None for free text (no tools offered)."""
    if not tools:
        return None
    answer: dict[str, Any] = {"type": "string"}
    if answer_chars:
        answer["maxLength"] = answer_chars
    answer_obj = {"type": "object", "properties": {"action": {"const": ANSWER}, "answer": answer},
                  "required": ["action", "answer"], "additionalProperties": False}
    if tool_choice == "none":
        return answer_obj
    variants = []
    for t in tools:
        fn = t.get("function", t)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if fn["name"] == ANSWER:
            raise DriverError(f"a tool may not be named {ANSWER!r}: the local model uses it to answer")
        variants.append({"type": "object",
                         "properties": {"action": {"const": fn["name"]}, "arguments": params},
                         "required": ["action", "arguments"], "additionalProperties": False})
    if tool_choice != "required":
        variants.append(answer_obj)
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def parse_reply(text: str, tools_offered: bool, finish_reason: str, call_id: str) -> ChatReply:
    """Generated text → ChatReply. Under a grammar the text is one JSON object; if generation
    was cut short (max_tokens) it may not parse, and the raw text is returned as content."""
    text = text.strip()
    if not tools_offered:
        return ChatReply(text, [], finish_reason)
    try:
        obj = json.loads(text)
    except ValueError:
        return ChatReply(text, [], "length" if finish_reason == "length" else finish_reason)
    if isinstance(obj, dict) and obj.get("action") not in (None, ANSWER):
        args = obj.get("arguments")
        return ChatReply("", [ToolCall(call_id, str(obj["action"]), args if isinstance(args, dict) else {})],
                         "tool_calls")
    if isinstance(obj, dict) and "answer" in obj:
        return ChatReply(str(obj["answer"]), [], finish_reason)
    return ChatReply(text, [], finish_reason)


__all__ = ["parse_reply", "render", "reply_schema", "tool_names", "tool_signature"]
