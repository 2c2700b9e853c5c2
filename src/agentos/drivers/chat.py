"""The chat request and reply every LLM-like driver speaks (`llm`, `local`).

One shape for both, so an agent written against one runs on the other, and the journal
records the same thing whichever answered. A request is a plain dict (it is journaled):

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str | [parts],
                   "tool_calls": [...], "tool_call_id": str}],
     "tools": [<OpenAI function spec>, ...],      # optional
     "tool_choice": "auto" | "none" | "required",  # optional
     "max_tokens": int, "temperature": float,      # optional
     "response_format": {"type": "json_schema", "json_schema": {"name": str, "schema": {...}}},
                                                   # optional: the reply's content is JSON matching it
     "model": str}                                 # optional; the driver's default otherwise

A streaming callback is not part of the request (it is not data): pass it when opening
the device, `open("llm", {"on_delta": fn})`, and it sees each text delta as it arrives.
The reply is a `ChatReply` converted to a dict by `to_dict()` for the journal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..abi.errors import DriverError, UpstreamError

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


DEFAULT_CONTEXT = 8192
"""Tokens a chat request may produce when it names no `max_tokens` and the model's own
context limit is not known: the completion part of its reservation."""


MESSAGE_FRAME = 8
"""Tokens a chat template may add around one message (role markers, separators): OpenAI's
format adds 3-4, Gemma's `<start_of_turn>role\n ... <end_of_turn>\n` 5."""
REQUEST_FRAME = 16
"""Tokens a template adds once per request (the reply's opening, a BOS token)."""
TOOLS_FRAME = 64
"""Tokens a template adds once when the request offers tools or a response schema (the
`namespace functions {...}` header OpenAI renders tool specs into, the instructions the
local driver prepends are counted by that driver itself)."""
IMAGE_TOKENS = 1_536
"""An image part's allowance: OpenAI's high-detail price for the largest image it accepts
(85 + 170 per 512-px tile, at most 8 tiles once scaled to 2048 x 768) rounded up. A model
that bills images at a multiple of that (some "mini" models do) must be given its own
bound by its driver; text never needs one."""


def prompt_bound(req: dict[str, Any]) -> int:
    """An upper bound on a request's prompt tokens, for the reservation made before the call.

    One token per UTF-8 byte of everything sent, as JSON (messages, tools, response format),
    plus a frame per message and per request. Why that is a true bound for the tokenizers
    agentos talks to: a byte-level BPE (OpenAI's cl100k/o200k, Llama 3, Qwen) turns text
    into byte sequences of at least one byte each, and a SentencePiece model with byte
    fallback and no NFKC normalization (Gemma, the local model; Llama 2, Mistral) gives each
    piece at least one character and an unknown character at most its UTF-8 bytes; so
    neither gives more tokens than the text has bytes, whatever the text (emoji, CJK,
    combining marks, whitespace runs, control characters). The JSON form only adds bytes
    (quotes, keys, escapes), which pays for the template's role names and the tool-spec
    rendering. Images are not text: each image part adds `IMAGE_TOKENS`. A tokenizer that
    normalizes with NFKC (T5-style) can expand one character into many (U+FDFA is 18) and
    is not covered; no shipped driver uses one. A reply reporting more prompt tokens than
    this overruns its reservation: charged as far as the budget can pay, then a quota kill.
    """
    import json

    try:
        sent = json.dumps([req.get("messages"), req.get("tools"), req.get("response_format")],
                          ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        sent = str(req)
    msgs = req.get("messages")
    n = len(msgs) if isinstance(msgs, list) else 1
    extra = TOOLS_FRAME if req.get("tools") or req.get("response_format") else 0
    return len(sent.encode("utf-8", "surrogatepass")) + MESSAGE_FRAME * n + REQUEST_FRAME + extra \
        + IMAGE_TOKENS * _images(msgs)


def _images(msgs: Any) -> int:
    """How many image parts the messages carry."""
    n = 0
    if isinstance(msgs, list):
        for m in msgs:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                n += sum(1 for p in content if isinstance(p, dict) and p.get("type") in ("image", "image_url"))
    return n


def completion_bound(req: dict[str, Any], defaults: dict[str, Any] | None = None,
                     context: int = DEFAULT_CONTEXT) -> int:
    """The request's `max_tokens` (or the handle's default: the endpoint stops there), else
    the context limit. Not the smaller of the two: `context` may be a guess
    (`DEFAULT_CONTEXT`) below the model's real one, and an endpoint honours `max_tokens`."""
    v = req.get("max_tokens", (defaults or {}).get("max_tokens"))
    if type(v) is int and v > 0:
        return v
    return context


MAX_REPLY_TOKENS = 1 << 40
"""No single reply reports more tokens than this (a count past it is an endpoint's bug)."""


def _shown(v: Any) -> str:
    try:
        r = repr(v)
    except Exception:
        r = f"a {type(v).__name__}"
    return r if len(r) <= 60 else r[:60] + "..."


def bad_reply(message: str) -> UpstreamError:
    """An answer that breaks the chat contract. The endpoint got the request and did
    something with it that cannot be measured from this answer, so its usage is unknown:
    the kernel charges the call's full reservation (never what the answer claims)."""
    e = UpstreamError(message)
    e.usage_unknown = True
    return e


def reply_count(device: str, what: str, v: Any) -> int:
    """A token count from a reply: a non-negative int (None, an absent count, is 0)."""
    if v is None:
        return 0
    if type(v) is not int:
        raise bad_reply(f"{device}: the endpoint reported {what} as {type(v).__name__} "
                            f"{_shown(v)}; a token count is a non-negative integer")
    if not 0 <= v <= MAX_REPLY_TOKENS:
        raise bad_reply(f"{device}: the endpoint reported {what} = {_shown(v)}; "
                            f"a token count is a non-negative integer")
    return v


def reply_text(device: str, what: str, v: Any) -> str:
    """Reply content: a string, or null (read as empty)."""
    if v is None:
        return ""
    if type(v) is not str:
        raise bad_reply(f"{device}: the endpoint's {what} is {type(v).__name__} {_shown(v)}, "
                            f"not a string or null")
    return v


def reply_arguments(device: str, raw: Any) -> dict[str, Any]:
    """Tool-call arguments: JSON text or an object. Text that does not parse is kept as
    {'_raw': text} (models emit junk; the agent decides), any other type is refused."""
    if raw is not None and not isinstance(raw, (str, dict)):
        raise bad_reply(f"{device}: tool-call arguments are {type(raw).__name__} {_shown(raw)}, "
                            f"not JSON text")
    return parse_arguments(raw)


def check_reply(reply: Any, device: str) -> ChatReply:
    """Hold a reply to the chat contract before it reaches an agent or the accounts:
    content a string, tool calls with string ids and non-empty string names and dict
    arguments, finish_reason and model strings, token counts non-negative integers.
    A reply that breaks it is an `UpstreamError` (a `DriverError`) naming the field."""
    if not isinstance(reply, ChatReply):
        raise bad_reply(f"{device}: a reply must be a ChatReply, got {type(reply).__name__}")
    reply_text(device, "content", reply.content)
    for i, tc in enumerate(reply.tool_calls):
        if not isinstance(tc, ToolCall):
            raise bad_reply(f"{device}: tool call {i} is {type(tc).__name__}, not a ToolCall")
        if type(tc.name) is not str or not tc.name:
            raise bad_reply(f"{device}: tool call {i} has name {_shown(tc.name)}; a name is a non-empty string")
        if type(tc.id) is not str:
            raise bad_reply(f"{device}: tool call {i} has id {_shown(tc.id)}; an id is a string")
        if type(tc.arguments) is not dict:
            raise bad_reply(f"{device}: tool call {i}'s arguments are {type(tc.arguments).__name__}, "
                                f"not a JSON object")
    if type(reply.finish_reason) is not str:
        raise bad_reply(f"{device}: finish_reason {_shown(reply.finish_reason)} is not a string")
    if type(reply.model) is not str:
        raise bad_reply(f"{device}: model {_shown(reply.model)} is not a string")
    reply_count(device, "prompt_tokens", reply.prompt_tokens)
    reply_count(device, "completion_tokens", reply.completion_tokens)
    return reply


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


# -- the OpenAI wire form -------------------------------------------------------------
# Both LLM drivers send OpenAI-style messages (llama-cpp-python takes the same form), so
# the conversion from the agentos request lives here, once.

REQUEST_KEYS = ("messages", "tools", "tool_choice", "max_tokens", "temperature", "model", "response_format")
_IMAGE_MIME = ("image/png", "image/jpeg", "image/gif", "image/webp")


def check_request(req: Any, device: str) -> dict[str, Any]:
    """`validate_request` plus the optional keys' types; an unknown key is an error (a typo
    in `max_tokens` must not silently lift a limit)."""
    validate_request(req, device)
    extra = sorted(k for k in req if k not in REQUEST_KEYS)
    if extra:
        raise DriverError(f"{device}: unknown request key(s) {extra}; a chat request has {list(REQUEST_KEYS)}")
    tc = req.get("tool_choice")
    if tc is not None and tc not in ("auto", "none", "required") and not isinstance(tc, dict):
        raise DriverError(f"{device}: tool_choice must be 'auto', 'none', 'required' or a dict, got {tc!r}")
    mt = req.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt <= 0):
        raise DriverError(f"{device}: max_tokens must be a positive int, got {mt!r}")
    t = req.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 2):
        raise DriverError(f"{device}: temperature must be a number in 0..2, got {t!r}")
    m = req.get("model")
    if m is not None and (not isinstance(m, str) or not m):
        raise DriverError(f"{device}: model must be a non-empty string, got {m!r}")
    rf = req.get("response_format")
    if rf is not None:
        check_response_format(rf, device)
    return req


def check_response_format(rf: Any, device: str) -> dict[str, Any]:
    """`{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "json_schema":
    {"name": str, "schema": {...}}}` (OpenAI's forms); anything else is a `DriverError`."""
    if not isinstance(rf, dict):
        raise DriverError(f"{device}: response_format must be a dict, got {type(rf).__name__}")
    kind = rf.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise DriverError(f"{device}: response_format type must be text, json_object or json_schema, got {kind!r:.40}")
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
            raise DriverError(f"{device}: response_format json_schema needs {{'json_schema': {{'name', 'schema': {{...}}}}}}")
        name = js.get("name", "reply")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise DriverError(f"{device}: response_format json_schema name must be a short string")
    return rf


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """`{"type": "image", "data": b64|bytes, "mime": ...}` or `{"type": "image", "url": ...}`
    → the OpenAI `image_url` part (inline data becomes a data: URL)."""
    import base64

    if "url" in part:
        url = part["url"]
        if not isinstance(url, str) or not url:
            raise DriverError(f"{where}: an image part's url must be a non-empty string")
    else:
        data, mime = part.get("data"), part.get("mime", "image/png")
        if mime not in _IMAGE_MIME:
            raise DriverError(f"{where}: image mime {mime!r} is not one of {_IMAGE_MIME}")
        if isinstance(data, (bytes, bytearray)):
            data = base64.b64encode(bytes(data)).decode("ascii")
        if not isinstance(data, str) or not data:
            raise DriverError(f"{where}: an image part needs 'url' or 'data' (base64 text or bytes)")
        url = f"data:{mime};base64,{data}"
    out: dict[str, Any] = {"url": url}
    if "detail" in part:
        out["detail"] = part["detail"]
    return {"type": "image_url", "image_url": out}


def _content(content: Any, role: str, where: str) -> Any:
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise DriverError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")
    parts = []
    for j, p in enumerate(content):
        w = f"{where} part {j}"
        if isinstance(p, str):
            parts.append({"type": "text", "text": p})
            continue
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            if not isinstance(p.get("text"), str):
                raise DriverError(f"{w}: a text part needs 'text' (a string)")
            parts.append({"type": "text", "text": p["text"]})
        elif kind in ("image", "image_url"):
            if role != "user":
                raise DriverError(f"{w}: image parts are allowed only on user turns, not {role!r}")
            parts.append(dict(p) if kind == "image_url" else _image_part(p, w))
        else:
            raise DriverError(f"{w}: unknown part type {kind!r} (text, image, image_url)")
    return parts


def _wire_tool_call(tc: Any, where: str) -> dict[str, Any]:
    if not isinstance(tc, dict):
        raise DriverError(f"{where}: a tool call is a dict, got {type(tc).__name__}")
    if "function" in tc:  # already in the OpenAI form
        return tc
    name, args = tc.get("name"), tc.get("arguments", {})
    if not isinstance(name, str) or not name:
        raise DriverError(f"{where}: a tool call needs a 'name'")
    return {"id": str(tc.get("id", "")), "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def to_openai_messages(messages: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """The request's messages in the OpenAI chat form: tool calls as `function` objects with
    JSON-text arguments, tool results as text, images as `image_url` parts (user turns only)."""
    out = []
    for i, m in enumerate(messages):
        role = m["role"]
        where = f"{device}: message {i}"
        w: dict[str, Any] = {"role": role}
        if role == "tool":
            c = m.get("content")
            w["content"] = c if isinstance(c, str) else json.dumps(c, default=str)
            if not isinstance(m.get("tool_call_id"), str):
                raise DriverError(f"{where}: a tool message needs 'tool_call_id' (the call it answers)")
            w["tool_call_id"] = m["tool_call_id"]
        else:
            w["content"] = _content(m.get("content"), role, where)
            if role == "assistant" and m.get("tool_calls"):
                w["tool_calls"] = [_wire_tool_call(tc, f"{where} tool call {j}")
                                   for j, tc in enumerate(m["tool_calls"])]
                if w["content"] is None:
                    w["content"] = ""
            elif w["content"] is None:
                raise DriverError(f"{where}: a {role} message needs 'content'")
        if m.get("name"):
            w["name"] = m["name"]
        out.append(w)
    return out


def to_openai_tools(tools: list[Any], device: str) -> list[dict[str, Any]]:
    """Accept OpenAI function specs or bare `{"name", "description", "parameters"}`."""
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise DriverError(f"{device}: tool {i} must be a dict (an OpenAI function spec)")
        if t.get("type") == "function" and isinstance(t.get("function"), dict):
            fn = t["function"]
        elif "name" in t:
            fn = {k: t[k] for k in ("name", "description", "parameters") if k in t}
        else:
            raise DriverError(f"{device}: tool {i} is neither {{'type': 'function', 'function': ...}} "
                              f"nor {{'name', 'parameters'}}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise DriverError(f"{device}: tool {i} needs a name")
        out.append({"type": "function", "function": fn})
    return out
