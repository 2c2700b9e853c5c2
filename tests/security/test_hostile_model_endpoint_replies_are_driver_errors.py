"""A model endpoint that lies (negative or fractional token counts, content that is not a
string, tool-call names that are not strings, arguments that are not JSON) gives the caller
a DriverError and credits nothing; one that drips a byte every 250 ms cannot outlast the
driver's timeout, which bounds the whole call. The endpoint is a real HTTP server on
127.0.0.1; effects are counted there and in the caller's budget."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytest.importorskip("openai")

from agentos import AllowAll, DriverError, Kernel, Quota
from agentos.abi.errors import DriverTimeout
from agentos.drivers.chat import ChatReply, ToolCall, check_reply
from agentos.drivers.llm import LLMDriver
from tests.support.openai_server import OpenAIServer, Raw, Reply

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Any:
    with OpenAIServer(api_key="sk-test") as srv:
        yield srv


@pytest.fixture()
def srv(server: OpenAIServer) -> OpenAIServer:
    server.reset()
    return server


def completion(message: dict[str, Any], usage: Any = None) -> bytes:
    out: dict[str, Any] = {"id": "c1", "object": "chat.completion", "created": 0, "model": "test-model",
                           "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                        "finish_reason": "stop"}]}
    if usage is not None:
        out["usage"] = usage
    return json.dumps(out).encode()


def call(srv: OpenAIServer, **kw: Any) -> tuple[Any, Any, float]:
    d = LLMDriver(base_url=srv.base_url, api_key="sk-test", model="test-model",
                  prices={"test-model": (1.0, 1.0)}, max_retries=0, **kw)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        try:
            out: Any = await sys.read(h, {"messages": USER})
        except DriverError as e:
            out = (type(e).__name__, str(e))
        return out, (await sys.budget()).remaining["tokens"]

    k = Kernel(policy=AllowAll())
    k.register_driver(d)
    t0 = time.monotonic()
    res = k.run(init, grant=["llm"], quota=Quota(tokens=10_000, usd=1.0))
    return res.value[0], res.value[1], time.monotonic() - t0


HOSTILE = {
    "negative_prompt_tokens": completion({"content": "hi"}, {"prompt_tokens": -1_000_000, "completion_tokens": 5,
                                                              "total_tokens": -999_995}),
    "fractional_tokens": completion({"content": "hi"}, {"prompt_tokens": 2.5, "completion_tokens": 1,
                                                        "total_tokens": 3.5}),
    "content_is_a_number": completion({"content": 42}, {"prompt_tokens": 1, "completion_tokens": 1,
                                                        "total_tokens": 2}),
    "content_is_an_object": completion({"content": {"x": 1}}, {"prompt_tokens": 1, "completion_tokens": 1,
                                                               "total_tokens": 2}),
    "tool_call_name_is_a_number": completion(
        {"content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": 7, "arguments": "{}"}}]},
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
    "tool_call_arguments_are_a_number": completion(
        {"content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": 5}}]},
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
}


def reservation() -> int:
    """What a call of `call()` sets aside: the prompt bound plus the default context."""
    from agentos.drivers.chat import DEFAULT_CONTEXT, prompt_bound

    return prompt_bound({"messages": USER}) + DEFAULT_CONTEXT


HOSTILE["no_choices"] = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "test-model",
                                    "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0}}).encode()
HOSTILE["not_a_completion"] = b'{"hello": "world"}'


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_hostile_reply_is_a_driver_error_charged_its_full_reservation(srv: OpenAIServer, attack: str) -> None:
    """The endpoint got the request and answered outside the contract: what it used is
    unknown, so the call costs its whole reservation, never what the answer claims."""
    srv.script(Raw(HOSTILE[attack]))
    out, remaining, _ = call(srv)
    assert isinstance(out, tuple) and out[0] in ("UpstreamError", "DriverError"), out
    assert remaining == 10_000 - reservation()  # never credited, never free
    assert len(srv.log) == 1


def test_a_reply_without_usage_is_charged_its_full_reservation(srv: OpenAIServer) -> None:
    srv.script(Raw(completion({"content": "hi"})))  # no "usage" at all
    out, remaining, _ = call(srv)
    assert out["content"] == "hi"
    assert out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"] == reservation()
    assert remaining == 10_000 - reservation()


def test_honest_reply_is_charged(srv: OpenAIServer) -> None:
    srv.script(Reply("fine", usage=(10, 5)))
    out, remaining, _ = call(srv)
    assert out["content"] == "fine" and remaining == 10_000 - 15


def test_dripping_endpoint_cannot_outlast_the_timeout(srv: OpenAIServer) -> None:
    body = completion({"content": "x" * 200}, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    srv.script(Raw(body, drip=0.25))  # ~60 s to send it all
    out, remaining, took = call(srv, timeout=1.0)
    assert out[0] == "DriverTimeout", out
    assert took < 4.0, took


@pytest.mark.parametrize("reply", [
    ChatReply(42),  # type: ignore[arg-type]
    ChatReply("x", [ToolCall("a", 7, {})]),  # type: ignore[arg-type]
    ChatReply("x", [ToolCall("a", "", {})]),
    ChatReply("x", [ToolCall("a", "f", "not a dict")]),  # type: ignore[arg-type]
    ChatReply("x", prompt_tokens=-1),
    ChatReply("x", completion_tokens=1.5),  # type: ignore[arg-type]
    ChatReply("x", prompt_tokens=True),
    ChatReply("x", model=None),  # type: ignore[arg-type]
], ids=repr)
def test_the_reply_contract_refuses(reply: ChatReply) -> None:
    with pytest.raises(DriverError):
        check_reply(reply, "llm")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, 0, "5", True])
def test_timeout_must_be_positive_and_finite(bad: Any) -> None:
    with pytest.raises(ValueError):
        LLMDriver(base_url="http://127.0.0.1:9/v1", api_key="k", timeout=bad)


def test_a_call_queued_behind_a_hung_one_cannot_outlast_its_own_timeout(srv: OpenAIServer) -> None:
    """`timeout` bounds the whole call, the wait for a request slot included: with one slot
    held by a dripping endpoint, a second caller ends at its own deadline, not the first's
    plus its own, and is charged nothing (its request was never sent)."""
    body = completion({"content": "x" * 200}, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    srv.script(Raw(body, drip=0.25), Raw(body, drip=0.25))
    d = LLMDriver(base_url=srv.base_url, api_key="sk-test", model="test-model", prices={"test-model": (1.0, 1.0)},
                  max_retries=0, timeout=1.0, max_concurrent=1)

    async def caller(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        try:
            await sys.read(h, {"messages": USER})
        except DriverError as e:
            return type(e).__name__, "no request slot" in str(e), (await sys.budget()).remaining["tokens"]

    async def init(sys: Any, args: Any) -> Any:
        _, a = await sys.spawn(caller, caps=["llm"], quota=Quota(tokens=10_000, usd=1.0))
        _, b = await sys.spawn(caller, caps=["llm"], quota=Quota(tokens=10_000, usd=1.0))
        await sys.waitpid(a)
        await sys.waitpid(b)

    k = Kernel(policy=AllowAll())
    k.register_driver(d)
    t0 = time.monotonic()
    k.run(init, grant=["llm"], quota=Quota(tokens=100_000, usd=10.0))
    took = time.monotonic() - t0
    results = [e.data for e in k.events.events() if e.kind == "exit" and e.pid in (2, 3)]
    assert results == ["normal", "normal"]
    assert took < 1.8, took                     # not 2 s: the queued call kept its own deadline
    assert len(srv.log) == 1                    # the second request never went out
    charged = {e.pid: e.data[1] for e in k.events.events() if e.kind == "charge"}
    assert charged == {2: reservation()}        # the first: sent, usage unknown; the second: nothing


def test_a_call_whose_dollar_bound_does_not_fit_never_reaches_the_endpoint(srv: OpenAIServer) -> None:
    """The reservation is priced at the table's rate: prompt bound plus the default
    context at $1 per million tokens is about $0.008, which a $0.001 budget cannot hold."""
    srv.script(Reply("fine", usage=(10, 5)))
    d = LLMDriver(base_url=srv.base_url, api_key="sk-test", model="test-model",
                  prices={"test-model": (1.0, 1.0)}, max_retries=0)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        await sys.read(h, {"messages": USER})
        return "sent"

    k = Kernel(policy=AllowAll())
    k.register_driver(d)
    res = k.run(init, grant=["llm"], quota=Quota(usd=0.001))
    assert str(res.reason) == "quota(usd)"
    assert srv.log == [] and d.calls == 0
