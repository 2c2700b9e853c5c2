"""Structured model output: ask for JSON under a schema, and parse the reply strictly.

Every model call whose answer a program must parse (lessons, prompts, mutations,
verdicts) goes through `ask_json`: the request carries `response_format` with the JSON
schema, so the embedded model decodes under a grammar compiled from it and an
OpenAI-compatible endpoint returns structured output. The reply is still checked here,
because not every endpoint honours the schema: a reply that is not JSON, is cut off at
`max_tokens`, nests absurdly deep or does not match the schema raises `ModelOutputError`
naming what was wrong. A bad reply is never turned into an empty result.

Schemas given to `ask_json` should bound every string (`maxLength`) and array
(`maxItems`), so a small model cannot talk until `max_tokens` runs out.
"""
from __future__ import annotations

import json
from typing import Any

from ..abi.errors import SyscallError
from ..kernel.trap import Sys

MAX_REPLY = 1 << 20


class ModelOutputError(SyscallError):
    """A model's reply was not the JSON that was asked for; the message says how."""


def json_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` of a chat request asking for JSON matching `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _strip_fence(text: str) -> str:
    t = text.strip()
    if t.startswith("```") and t.endswith("```") and len(t) >= 6:
        t = t[3:-3]
        if t.startswith("json"):
            t = t[4:]
    return t.strip()


def parse_json(text: Any, schema: dict[str, Any] | None, *, what: str, truncated: bool = False) -> Any:
    """`text` as JSON matching `schema`, or `ModelOutputError` saying what is wrong."""
    if not isinstance(text, str):
        raise ModelOutputError(f"{what}: the reply has no text content (got {type(text).__name__})")
    if len(text) > MAX_REPLY:
        raise ModelOutputError(f"{what}: the reply is {len(text)} characters, over the {MAX_REPLY} limit")
    body = _strip_fence(text)
    if not body:
        raise ModelOutputError(f"{what}: the reply is empty")
    try:
        data = json.loads(body)
    except RecursionError:
        raise ModelOutputError(f"{what}: the reply nests too deeply to parse") from None
    except json.JSONDecodeError as e:
        cut = " (it was cut off at max_tokens)" if truncated else ""
        raise ModelOutputError(f"{what}: the reply is not JSON{cut}: {e.msg} at character {e.pos}: "
                               f"{body[max(0, e.pos - 30): e.pos + 30]!r}") from None
    except ValueError as e:  # e.g. a number too long to convert
        raise ModelOutputError(f"{what}: the reply is not usable JSON: {str(e)[:200]}") from None
    if schema is not None:
        check_schema(data, schema, what)
    return data


def check_schema(data: Any, schema: dict[str, Any], what: str) -> None:
    from jsonschema import validators  # lazy: `import agentos` stays light

    cls = validators.validator_for(schema)
    try:
        errors = sorted(cls(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    except RecursionError:
        raise ModelOutputError(f"{what}: the reply nests too deeply to check") from None
    if errors:
        detail = "; ".join(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: fails "
                           f"{e.validator} {str(e.validator_value)[:60]} ({_short(e.message)})" for e in errors[:3])
        raise ModelOutputError(f"{what}: the reply does not match the schema: {detail}")


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n // 2] + " … " + text[-n // 2:]


async def ask_json(sys: Sys, handle: int, messages: list[dict[str, Any]], schema: dict[str, Any], *,
                   name: str, max_tokens: int = 256, model: str | None = None,
                   temperature: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """One metered, journaled chat read asking for JSON; returns (parsed value, raw reply)."""
    req: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                           "response_format": json_format(name, schema)}
    if model:
        req["model"] = model
    reply = await sys.read(handle, req)
    if not isinstance(reply, dict):
        raise ModelOutputError(f"{name}: the device answered {type(reply).__name__}, not a chat reply")
    value = parse_json(reply.get("content"), schema, what=name, truncated=reply.get("finish_reason") == "length")
    return value, reply


def bounded_text(v: Any, what: str, *, lo: int = 1, hi: int = 4000) -> str:
    """A model-written string, stripped, of sane length and valid Unicode."""
    if not isinstance(v, str):
        raise ModelOutputError(f"{what} must be a string, got {type(v).__name__}")
    s = v.strip()
    if len(s) < lo:
        raise ModelOutputError(f"{what} is too short ({len(s)} characters, at least {lo})")
    if len(s) > hi:
        raise ModelOutputError(f"{what} is too long ({len(s)} characters, at most {hi})")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ModelOutputError(f"{what} is not valid Unicode (a lone surrogate)") from None
    if "\x00" in s:
        raise ModelOutputError(f"{what} contains a NUL character")
    return s


async def device_ref(sys: Sys, device: str) -> int:
    """The capability ref behind a device name among the caps this process was started with
    (what `derive` and `spawn(caps=...)` take when a narrower copy is wanted)."""
    for ref in sys.caps:
        try:
            info = await sys.cap_info(ref)
        except SyscallError:
            continue
        if info.get("kind") == "device" and info.get("target") == device:
            return ref
    raise SyscallError(f"no capability for device {device!r} among this process's start capabilities")


__all__ = ["ModelOutputError", "ask_json", "bounded_text", "check_schema", "device_ref", "json_format",
           "parse_json"]
