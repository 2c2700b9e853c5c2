"""The ReAct agent: think → call tools → observe → answer, built on syscalls only.

Each step is one chat read on an LLM-like device (`llm`, `local`, anything speaking
`drivers/chat.py`) offering the tools' JSON schemas. A reply with tool calls is acted on:
one call is a `read` on the tools device, several calls in one turn go out together
through `read_all` (one park, run concurrently, each metered and journaled in order).
Each result, or the error the tool raised, goes back to the model as a `tool` message.
A reply without tool calls is the answer. The last allowed step offers no tools, so the
model must answer; `max_steps` therefore bounds the number of LLM calls.

Everything the agent does is a syscall: the kernel meters every LLM and tool call (the
`policy` and `charge` events in the log) and the agent logs its steps (`react.*` events),
so a run can be followed, audited and replayed from the event log alone.

With `reflect=Reflect(...)`, an answer is judged before it is returned (see
`reflect.py`): a `ReflectVerdict` accepts it or asks for a retry with a critique, which
goes back to the model as a user turn; each attempt gets `max_steps` steps again, and
at most `max_retries` retries are made, so the run stays bounded. Every reflection is a
metered model call (`react.reflect` events); rejected answers are kept in the result and,
with `learn_to`, their critiques become lessons in a long memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..abi.errors import SyscallError, ToolError
from ..kernel.trap import Sys
from .reflect import Reflect, ReflectVerdict, learn_from_rejection, reflect_once

SYSTEM = ("You are a careful assistant that solves the user's task step by step. "
          "Call a tool when it helps; each tool result comes back to you. "
          "When you know the answer, reply with the answer only.")


@dataclass
class ReactResult:
    answer: str | None
    stop: str                      # "answer" | "step_limit" | "llm_error" | "rejected" | "reflect_error"
    steps: int                     # LLM calls made by the agent (reflections not counted)
    tool_calls: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    reflections: list[ReflectVerdict] | None = None   # None: the run did not reflect
    rejected: list[str] = field(default_factory=list)  # answers a reflection sent back
    lessons: list[str] = field(default_factory=list)   # lessons learned from rejections

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"answer": self.answer, "stop": self.stop, "steps": self.steps,
                               "tool_calls": self.tool_calls}
        if self.reflections is not None:
            out["reflections"] = [v.to_dict() for v in self.reflections]
            out["rejected"] = list(self.rejected)
            out["lessons"] = list(self.lessons)
        return out


async def react_agent(sys: Sys, task: str, tools: Sequence[str] | None = None, *,
                      llm: str = "llm", tools_device: str = "tools", max_steps: int = 6,
                      system: str = SYSTEM, max_tokens: int = 256, model: str | None = None,
                      max_observation: int = 2000, on_delta: Any = None,
                      parallel: bool = True, repeat_guard: bool = True,
                      reflect: Reflect | None = None, temperature: float = 0.0) -> ReactResult:
    """Run the ReAct loop on `task` with the named tools (None: every tool on the device).

    `llm` and `tools_device` are device names this process holds capabilities for.
    A tool error is an observation the model sees, not a crash; an LLM device error ends
    the run with `stop="llm_error"` and the message as the answer. With `repeat_guard`, a
    turn that only repeats earlier calls (same tool, same arguments) is not run and not
    added to the context, and the next step must answer (small models loop otherwise); the
    `react.repeat` event records it. `reflect` judges each answer before it is returned
    (see the module docstring).
    """
    if not isinstance(task, str) or not task.strip():
        raise ValueError("react_agent: task must be a non-empty string")
    if max_steps < 1:
        raise ValueError(f"react_agent: max_steps must be >= 1, got {max_steps}")
    if reflect is not None and not isinstance(reflect, Reflect):
        raise ValueError(f"react_agent: reflect must be a Reflect, got {type(reflect).__name__}")
    lh = await sys.open(llm, {"on_delta": on_delta} if on_delta is not None else None)
    rh: int | None = None
    if reflect is not None and reflect.judge is None:
        rh = lh if reflect.llm in (None, llm) else await sys.open(reflect.llm)
    specs: list[dict[str, Any]] = []
    th = None
    if tools is None or tools:
        th = await sys.open(tools_device)
        specs = await sys.read(th, {"op": "list"})
        if tools is not None:
            wanted = list(tools)
            have = {s["function"]["name"] for s in specs}
            missing = [t for t in wanted if t not in have]
            if missing:
                raise ValueError(f"react_agent: no tool named {', '.join(missing)} on device "
                                 f"{tools_device!r} (it has: {', '.join(sorted(have)) or 'none'})")
            specs = [s for s in specs if s["function"]["name"] in wanted]
    offered = {s["function"]["name"] for s in specs}
    messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                      {"role": "user", "content": task}]
    await sys.log("info", "react.task", task=task, tools=[s["function"]["name"] for s in specs])
    n_calls = 0
    seen: dict[str, str] = {}     # call key -> observation, for the repeat guard
    force_answer = False
    verdicts: list[ReflectVerdict] | None = [] if reflect is not None else None
    rejected: list[str] = []
    learned: list[str] = []
    retries = 0
    step = 0                      # LLM calls of the agent so far
    attempt_step = 0              # ... in the current attempt

    def result(answer: str | None, stop: str) -> ReactResult:
        return ReactResult(answer, stop, step, n_calls, messages, verdicts, rejected, learned)

    while True:
        step += 1
        attempt_step += 1
        last = attempt_step == max_steps or force_answer
        req: dict[str, Any] = {"messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        if model:
            req["model"] = model
        if specs:
            req["tools"] = specs
            req["tool_choice"] = "none" if last else "auto"
        try:
            reply = await sys.read(lh, req)
        except SyscallError as e:
            await sys.log("error", "react.llm_error", step=step, error=str(e))
            return result(f"LLM error: {e}", "llm_error")
        calls = reply.get("tool_calls") or []
        content = reply.get("content") or ""
        keys = [_call_key(c) for c in calls]
        if repeat_guard and calls and not last and all(key in seen for key in keys):
            # every call repeats an earlier one: run nothing, keep it out of the context (it
            # adds nothing the model has not seen), and make the next step answer
            await sys.log("info", "react.repeat", step=step, tools=[c["name"] for c in calls])
            force_answer = True
            continue
        messages.append({"role": "assistant", "content": content, "tool_calls": calls})
        if not calls or th is None:
            await sys.log("info", "react.answer", step=step, answer=content)
            if reflect is None or verdicts is None:
                return result(content, "answer")
            try:
                verdict = await reflect_once(sys, rh, reflect, task, content, messages)
            except SyscallError as e:  # a judge that fails or talks nonsense: say so, keep the answer
                await sys.log("error", "react.reflect_error", step=step, error=str(e))
                return result(content, "reflect_error")
            verdicts.append(verdict)
            await sys.log("info", "react.reflect", step=step, accept=verdict.accept, critique=verdict.critique)
            if verdict.accept:
                return result(content, "answer")
            rejected.append(content)
            if reflect.learn_to is not None:
                lid = await learn_from_rejection(sys, reflect.learn_to, task, verdict)
                if lid is not None:
                    learned.append(lid)
            if retries >= reflect.max_retries:
                return result(content, "rejected")
            retries += 1
            messages.append({"role": "user", "content": f"A reviewer rejected that answer: {verdict.critique}\n"
                                                        f"Try again and give a corrected answer."})
            attempt_step = 0
            force_answer = False
            continue
        if last:  # the model was offered no tools and called one anyway
            await sys.log("warn", "react.step_limit", step=step, calls=[c["name"] for c in calls])
            return result(content or None, "step_limit")
        if content:
            await sys.log("info", "react.thought", step=step, text=content)
        fresh = [c for c, key in zip(calls, keys) if key not in seen] if repeat_guard else list(calls)
        for c in fresh:
            await sys.log("info", "react.call", step=step, tool=c["name"], arguments=c.get("arguments"))
        n_calls += len(fresh)
        results = dict(zip((id(c) for c in fresh), await _run_tools(sys, th, fresh, offered, parallel)))
        for c, key in zip(calls, keys):
            if id(c) in results:
                r = results[id(c)]
                ok = not isinstance(r, BaseException)
                text = _observation(r, max_observation)
                seen[key] = text
                await sys.log("info", "react.observe", step=step, tool=c["name"], ok=ok, result=text)
            else:
                text = seen[key]
            messages.append({"role": "tool", "tool_call_id": c.get("id", ""), "name": c["name"],
                             "content": text})


async def _run_tools(sys: Sys, th: int, calls: list[dict[str, Any]], offered: set[str],
                     parallel: bool) -> list[Any]:
    """Results in call order; a call to a tool the agent was not offered never reaches the device."""
    out: list[Any] = [None] * len(calls)
    todo: list[tuple[int, dict[str, Any]]] = []
    for i, c in enumerate(calls):
        args = c.get("arguments")
        if c.get("name") not in offered:
            out[i] = ToolError(f"unknown tool {c.get('name')!r}; the tools you have are: "
                               f"{', '.join(sorted(offered))}")
        elif args is not None and not isinstance(args, dict):
            out[i] = ToolError(f"tool {c['name']!r}: arguments must be a JSON object")
        else:
            todo.append((i, {"tool": c["name"], "args": args or {}}))
    if len(todo) > 1 and parallel:
        try:
            got = await sys.read_all(th, [r for _, r in todo])  # errors come back as values, in order
        except SyscallError:
            got = None  # refused as a batch (e.g. policy): fall back to one by one, each its own answer
        if got is not None:
            for (i, _), r in zip(todo, got):
                out[i] = r
            return out
    for i, r in todo:
        try:
            out[i] = await sys.read(th, r)
        except SyscallError as e:
            out[i] = e
    return out


def _call_key(c: dict[str, Any]) -> str:
    try:
        return json.dumps([c.get("name"), c.get("arguments")], sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr((c.get("name"), c.get("arguments")))


def _observation(result: Any, limit: int) -> str:
    if isinstance(result, BaseException):
        text = f"error: {result}"
    elif isinstance(result, str):
        text = result
    else:
        try:
            text = json.dumps(result, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(result)
    return text if len(text) <= limit else text[: limit - 15] + " …[truncated]"


async def react_main(sys: Sys, args: Any) -> dict[str, Any]:
    """Process body: `args` is a dict of `react_agent`'s keyword arguments plus `task`."""
    if not isinstance(args, dict) or "task" not in args:
        raise ValueError("react_main: args must be a dict with at least 'task'")
    kw = dict(args)
    task = kw.pop("task")
    tools = kw.pop("tools", None)
    res = await react_agent(sys, task, tools, **kw)
    return res.to_dict()


__all__ = ["ReactResult", "SYSTEM", "react_agent", "react_main"]
