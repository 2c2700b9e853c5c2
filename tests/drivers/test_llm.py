"""The `llm` driver against a real scripted OpenAI-compatible HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("openai")

from agentos import AllowAll, Decision, DriverError, Journal, Kernel, PolicyDenied, Quota
from agentos.abi.errors import BadRequest, DriverTimeout, RateLimited, UpstreamError
from agentos.abi.types import USD_SCALE
from agentos.drivers.chat import Price, parse_arguments, to_openai_messages
from agentos.drivers.llm import Backoff, LLMDriver
from tests.support.openai_server import Fail, OpenAIServer, Raw, Reply

PRICES = {"test-model": (2.5, 10.0), "big-*": (15.0, 60.0)}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server() -> Any:
    with OpenAIServer(api_key="sk-test") as srv:
        yield srv


@pytest.fixture()
def srv(server: OpenAIServer) -> OpenAIServer:
    server.reset()
    return server


class Sleeps:
    """A sleep that records the delays and returns at once (backoff without waiting)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, d: float) -> None:
        self.delays.append(d)


def driver(srv: OpenAIServer, **kw: Any) -> LLMDriver:
    opts: dict[str, Any] = dict(base_url=srv.base_url, api_key="sk-test", model="test-model", prices=PRICES,
                                backoff=Backoff(base=0.25, factor=2, cap=4.0, jitter=0), sleep=Sleeps())
    opts.update(kw)
    return LLMDriver(**opts)


def run(d: LLMDriver, init: Any, **kw: Any) -> tuple[Kernel, Any]:
    k = Kernel(**{"deterministic": True, "policy": kw.pop("policy", AllowAll()), **kw.pop("config", {})})
    k.register_driver(d)
    res = k.run(init, grant=[d.name], **kw)
    return k, res


def test_chat_reply_and_cost_exact_to_price_table(srv: OpenAIServer) -> None:
    srv.script(Reply("hello", usage=(1234, 567)), Reply("again", usage=(1000, 1), model="big-2025"))
    d = driver(srv)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        a = await sys.read(h, {"messages": USER})
        # (the reservation is the prompt estimate plus max_tokens: it must cover what the
        # endpoint reports, or the call is an overrun and the caller is killed)
        b = await sys.read(h, {"messages": USER, "model": "big-x", "max_tokens": 1500, "temperature": 0})
        return a, b, (await sys.budget()).used

    k, res = run(d, init)
    a, b, used = res.value
    assert a == {"content": "hello", "tool_calls": [], "finish_reason": "stop",
                 "usage": {"prompt_tokens": 1234, "completion_tokens": 567}, "model": "test-model"}
    assert b["model"] == "big-2025" and b["content"] == "again"
    usd_a = (1234 * 2.5 + 567 * 10.0) / 1e6
    usd_b = (1000 * 15.0 + 1 * 60.0) / 1e6      # the model that answered, by its prefix
    assert used["tokens"] == 1234 + 567 + 1001
    assert round(used["usd"] * USD_SCALE) == round(usd_a * USD_SCALE) + round(usd_b * USD_SCALE)
    charges = [e.data for e in k.events.events() if e.kind == "charge"]
    assert charges == [(1, 1801, 0, 8755000), (2, 1001, 0, 15060000)]  # op 0 is the open
    sent = [e["body"] for e in srv.log]
    assert sent[0]["model"] == "test-model" and sent[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert sent[1]["max_tokens"] == 1500 and sent[1]["temperature"] == 0 and sent[1]["model"] == "big-x"
    assert srv.log[0]["headers"]["authorization"] == "Bearer sk-test"


def test_tool_calls_round_trip(srv: OpenAIServer) -> None:
    srv.script(Reply(tool_calls=[("call_1", "add", {"a": 2, "b": 3}), ("call_2", "neg", "not json")]),
               Reply("5"))
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},
             {"name": "neg", "description": "negate", "parameters": {"type": "object"}}]

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        r = await sys.read(h, {"messages": USER, "tools": tools, "tool_choice": "auto"})
        msgs = USER + [{"role": "assistant", "content": None, "tool_calls": r["tool_calls"]},
                       {"role": "tool", "tool_call_id": "call_1", "content": {"sum": 5}},
                       {"role": "tool", "tool_call_id": "call_2", "content": "err"}]
        r2 = await sys.read(h, {"messages": msgs, "tools": tools})
        return r, r2

    _, res = run(driver(srv), init)
    r, r2 = res.value
    assert r["finish_reason"] == "tool_calls"
    assert r["tool_calls"] == [{"id": "call_1", "name": "add", "arguments": {"a": 2, "b": 3}},
                               {"id": "call_2", "name": "neg", "arguments": {"_raw": "not json"}}]
    assert r2["content"] == "5"
    first, second = srv.log[0]["body"], srv.log[1]["body"]
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "neg"]
    assert first["tool_choice"] == "auto"
    wire = second["messages"]
    assert wire[1]["tool_calls"][0] == {"id": "call_1", "type": "function",
                                        "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    assert wire[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sum": 5}'}


@pytest.mark.live_only(reason="streaming deltas reach the program through a callback the driver calls, "
                              "outside the journal: observational by design, so a replay has none")
def test_streaming_deltas_are_observational(srv: OpenAIServer) -> None:
    srv.script(Reply(chunks=["Hel", "lo, ", "wor", "ld"], usage=(20, 4)),
               Reply(tool_calls=[("c9", "lookup", {"q": "a fairly long query string"})], usage=(30, 9)),
               Reply("no usage here", usage=None))
    seen: list[str] = []

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm", {"on_delta": seen.append})
        a = await sys.read(h, {"messages": USER})
        b = await sys.read(h, {"messages": USER, "tools": [{"name": "lookup", "parameters": {}}]})
        c = await sys.read(h, {"messages": USER})
        return a, b, c, (await sys.budget()).used["tokens"]

    _, res = run(driver(srv), init)
    a, b, c, tokens = res.value
    assert seen[:4] == ["Hel", "lo, ", "wor", "ld"] and a["content"] == "Hello, world"
    assert a["usage"] == {"prompt_tokens": 20, "completion_tokens": 4}
    assert b["tool_calls"] == [{"id": "c9", "name": "lookup", "arguments": {"q": "a fairly long query string"}}]
    assert "".join(seen[4:]) == "no usage here" and c["content"] == "no usage here"
    # usage missing from the stream: estimated, never free
    assert c["usage"]["prompt_tokens"] > 0 and c["usage"]["completion_tokens"] > 0
    assert tokens == 24 + 39 + c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"]
    assert all(e["body"]["stream"] is True for e in srv.log)
    assert srv.log[0]["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.live_only(reason="the observer is a callback the driver calls, outside the journal: "
                              "observational by design, so a replay never calls it")
def test_a_raising_observer_does_not_fail_the_call(srv: OpenAIServer) -> None:
    srv.script(Reply(chunks=["a", "b", "c"]))
    calls: list[str] = []

    def bad(t: str) -> None:
        calls.append(t)
        raise RuntimeError("observer bug")

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm", {"on_delta": bad})
        return (await sys.read(h, {"messages": USER}))["content"]

    _, res = run(driver(srv), init)
    assert res.value == "abc" and calls == ["a"]


def test_retries_with_backoff_then_success(srv: OpenAIServer) -> None:
    srv.script(Fail(429), Fail(500), Fail(503), Reply("finally"))
    sleeps = Sleeps()
    d = driver(srv, sleep=sleeps, max_retries=3)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        return await sys.read(h, {"messages": USER})

    _, res = run(d, init)
    assert res.value["content"] == "finally"
    assert sleeps.delays == [0.25, 0.5, 1.0]
    assert [e["status"] for e in srv.log] == [429, 500, 503, 200] and d.retries == 3


def test_retry_after_is_honoured_and_capped(srv: OpenAIServer) -> None:
    srv.script(Fail(429, retry_after=3), Fail(429, retry_after_ms=120), Fail(429, retry_after=999), Reply("ok"))
    sleeps = Sleeps()

    async def init(sys: Any, args: Any) -> Any:
        return await sys.read(await sys.open("llm"), {"messages": USER})

    run(driver(srv, sleep=sleeps), init)
    assert sleeps.delays == [3.0, 0.12, 4.0]


def test_jitter_stays_within_bounds(srv: OpenAIServer) -> None:
    b = Backoff(base=1.0, factor=2.0, cap=8.0, jitter=0.5)
    import random

    rng = random.Random(1)
    for attempt in range(6):
        d = b.delay(attempt, rng)
        full = min(8.0, 2.0 ** attempt)
        assert full * 0.5 <= d <= full


@pytest.mark.parametrize("fails,err", [([Fail(429)] * 3, RateLimited), ([Fail(500)] * 3, UpstreamError)])
def test_retries_exhausted_raise_typed_error_in_the_process(srv: OpenAIServer, fails: list[Fail], err: type) -> None:
    srv.script(*fails)
    sleeps = Sleeps()

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        try:
            await sys.read(h, {"messages": USER})
        except DriverError as e:
            return type(e).__name__, str(e), (await sys.budget()).used["tokens"]

    _, res = run(driver(srv, sleep=sleeps, max_retries=2), init)
    name, msg, tokens = res.value
    assert name == err.__name__ and "HTTP" in msg and tokens == 0
    assert len(srv.log) == 3 and len(sleeps.delays) == 2


def test_client_errors_are_not_retried(srv: OpenAIServer) -> None:
    srv.script(Fail(400, "context length exceeded"))
    d = driver(srv)

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        try:
            await sys.read(h, {"messages": USER})
        except BadRequest as e:
            return str(e)

    _, res = run(d, init)
    assert "HTTP 400" in res.value and "context length exceeded" in res.value
    assert len(srv.log) == 1 and d.retries == 0


def test_missing_key_gets_a_hint(srv: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    d = driver(srv, api_key=None)

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.read(await sys.open("llm"), {"messages": USER})
        except BadRequest as e:
            return str(e)

    assert "OPENAI_API_KEY" in run(d, init)[1].value
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    srv.script(Reply("keyed"))

    async def init2(sys: Any, args: Any) -> Any:
        return (await sys.read(await sys.open("llm"), {"messages": USER}))["content"]

    assert run(driver(srv, api_key=None), init2)[1].value == "keyed"


def test_timeout_is_a_typed_error(srv: OpenAIServer) -> None:
    srv.script(Reply("too late", delay=3.0))

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.read(await sys.open("llm"), {"messages": USER})
        except DriverTimeout as e:
            return str(e)

    t0 = time.monotonic()
    _, res = run(driver(srv, timeout=0.3, max_retries=0), init)
    assert "no answer within 0.3s" in res.value and time.monotonic() - t0 < 2.5


@pytest.mark.live_only(reason="real time: the program waits in wall time for the outside world (the server, the model) before it kills, which a virtual clock cannot do while I/O is in flight")
@pytest.mark.parametrize("stream", [False, True])
def test_kill_cancels_the_http_request(srv: OpenAIServer, stream: bool) -> None:
    if stream:
        srv.script(Reply("x" * 400, chunk_delay=0.05))
    else:
        srv.script(Reply("slow", delay=10.0))
    d = driver(srv, max_concurrent=1)
    srv_ = srv

    async def caller(sys: Any, args: Any) -> Any:
        h = await sys.open("llm", {"on_delta": (lambda t: None)} if stream else None)
        return await sys.read(h, {"messages": USER})

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(caller, caps=["llm"])
        for _ in range(1000):               # until the request has reached the server
            if srv_.log:
                break
            await sys.sleep(5)
        await sys.kill(cap)
        reason = str(await sys.waitpid(cap))
        for _ in range(600):                # the kernel is still running: the hang-up came from the kill
            if srv_.log[0]["aborted"]:
                return reason, True
            await sys.sleep(5)
        return reason, False

    t0 = time.monotonic()
    _, res = run(d, init, config={"deterministic": False})
    reason, aborted = res.value
    assert reason.startswith("killed")
    assert aborted, "the server never saw the hang-up while the kernel ran"
    assert time.monotonic() - t0 < 5.0
    assert d.gate.in_use == 0                # the slot was released


def test_image_parts_on_user_turns(srv: OpenAIServer) -> None:
    srv.script(Reply("a cat"))

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        msgs = [{"role": "user", "content": ["what is this?",
                                             {"type": "image", "data": b"\x89PNG..", "mime": "image/png"},
                                             {"type": "image", "url": "https://example.org/c.jpg", "detail": "low"}]}]
        r = await sys.read(h, {"messages": msgs})
        try:
            await sys.read(h, {"messages": [{"role": "system", "content": [{"type": "image", "url": "x"}]}]})
        except DriverError as e:
            return r["content"], str(e)

    _, res = run(driver(srv), init)
    assert res.value[0] == "a cat" and "only on user turns" in res.value[1]
    parts = srv.log[0]["body"]["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "what is this?"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORy4u"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.org/c.jpg", "detail": "low"}}
    assert len(srv.log) == 1                 # the bad request never left the machine


def test_response_format_reaches_the_endpoint(srv: OpenAIServer) -> None:
    """Structured output: the JSON schema a program asks for goes out as OpenAI's response_format."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    srv.script(Reply('{"n": 3}'), Reply('{"a": 1}'))

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        a = await sys.read(h, {"messages": USER, "response_format": {
            "type": "json_schema", "json_schema": {"name": "count", "schema": schema, "strict": True}}})
        b = await sys.read(h, {"messages": USER, "response_format": {"type": "json_object"}})
        return a["content"], b["content"]

    _, res = run(driver(srv), init)
    assert res.value == ('{"n": 3}', '{"a": 1}')
    assert srv.log[0]["body"]["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "count", "schema": schema, "strict": True}}
    assert srv.log[1]["body"]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("req,needle", [
    ("hello", "a chat request is a dict"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "needs a role"),
    ({"messages": USER, "max_tokns": 5}, "unknown request key"),
    ({"messages": USER, "max_tokens": -1}, "max_tokens must be a positive int"),
    ({"messages": USER, "temperature": 7}, "temperature"),
    ({"messages": USER, "tool_choice": "maybe"}, "tool_choice"),
    ({"messages": USER, "tools": [{"nope": 1}]}, "tool 0"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ({"messages": USER, "response_format": "json"}, "response_format must be a dict"),
    ({"messages": USER, "response_format": {"type": "yaml"}}, "response_format type"),
    ({"messages": USER, "response_format": {"type": "json_schema"}}, "needs {'json_schema'"),
])
def test_bad_requests_are_typed_errors_and_the_kernel_keeps_running(srv: OpenAIServer, req: Any, needle: str) -> None:
    async def bad(sys: Any, args: Any) -> Any:
        await sys.read(await sys.open("llm"), req)

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(bad, caps=["llm"])
        reason = str(await sys.waitpid(cap))
        return reason, (await sys.read(await sys.open("llm"), {"messages": USER}))["content"]

    _, res = run(driver(srv), init)
    reason, content = res.value
    assert reason.startswith("fault(DriverError") and needle in reason
    assert content == "echo: hi" and len(srv.log) == 1


def test_open_params_are_checked(srv: OpenAIServer) -> None:
    async def init(sys: Any, args: Any) -> Any:
        out = []
        for p in ({"on_delta": 3}, {"stream": True}, "x", {"max_tokens": 0}):
            try:
                await sys.open("llm", p)
            except DriverError as e:
                out.append(str(e))
        h = await sys.open("llm", {"model": "big-1", "max_tokens": 7})
        await sys.read(h, {"messages": USER})
        return out

    _, res = run(driver(srv), init)
    assert len(res.value) == 4
    assert srv.log[0]["body"]["model"] == "big-1" and srv.log[0]["body"]["max_tokens"] == 7


def test_a_call_whose_bound_does_not_fit_never_reaches_the_endpoint(srv: OpenAIServer) -> None:
    """Reserve, act, settle: each call sets aside its prompt estimate plus max_tokens; once
    that no longer fits, the process is killed before the request is sent (counted at the
    endpoint), and the books show exactly what the two calls that ran used."""
    from agentos.drivers.chat import prompt_bound

    req = {"messages": USER, "max_tokens": 10}
    bound = prompt_bound(req) + 10
    srv.script(*[Reply(f"r{i}", usage=(20, 10)) for i in range(5)])

    async def spender(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        while True:
            await sys.read(h, req)

    async def init(sys: Any, args: Any) -> Any:
        # room for two reservations (each call then settles at 30), not for a third
        _, cap = await sys.spawn(spender, caps=["llm"], quota=Quota(tokens=bound + 45))
        return str(await sys.waitpid(cap))

    k, res = run(driver(srv), init)
    assert res.value == "quota(tokens)"
    assert sum(e.data[1] for e in k.events.events() if e.kind == "charge") == 60
    assert len(srv.log) == 2
    assert [e.data[0] for e in k.events.events() if e.kind == "quota"] == ["tokens"]


def test_a_reply_reporting_more_than_its_reservation_is_an_overrun_kill(srv: OpenAIServer) -> None:
    srv.script(Reply("a", usage=(60, 5000)))

    async def greedy(sys: Any, args: Any) -> Any:
        h = await sys.open("llm")
        await sys.read(h, {"messages": USER, "max_tokens": 10})
        return "survived"

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(greedy, caps=["llm"], quota=Quota(tokens=100_000))
        return str(await sys.waitpid(cap))

    k, res = run(driver(srv), init)
    assert res.value == "quota(tokens)"
    charged = [e.data[1] for e in k.events.events() if e.kind == "charge"]
    assert charged == [5060]  # charged in full, then killed
    assert [e.data[0] for e in k.events.events() if e.kind == "overrun"] == ["tokens"]


def test_action_is_device_chat_for_policy(srv: OpenAIServer) -> None:
    seen: list[tuple[str, Any]] = []

    class DenyBig:
        def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Decision:
            seen.append((action, args))
            if args.get("model", "").startswith("big"):
                return Decision(False, "no-big-models", "too expensive", effect="raise")
            return Decision(True, "ok")

    async def init(sys: Any, args: Any) -> Any:
        h = await sys.open("brain")
        await sys.read(h, {"messages": USER, "tools": [{"name": "add", "parameters": {}}]})
        try:
            await sys.read(h, {"messages": USER, "model": "big-1"})
        except PolicyDenied as e:
            return e.rule

    d = driver(srv, name="brain")
    _, res = run(d, init, policy=DenyBig())
    assert res.value == "no-big-models"
    assert seen[0] == ("brain.chat", {"model": "test-model", "max_tokens": None, "temperature": None,
                                      "tools": ["add"], "messages": 1})
    assert len(srv.log) == 1                 # the denied call never reached the endpoint


def test_replay_answers_from_the_journal(srv: OpenAIServer) -> None:
    srv.script(Reply("recorded", usage=(7, 3)))
    journal = Journal()

    async def init(sys: Any, args: Any) -> Any:
        r = await sys.read(await sys.open("llm"), {"messages": USER})
        return r["content"], (await sys.budget()).used["tokens"]

    _, live = run(driver(srv), init, config={"journal": journal, "deterministic": True})
    n = len(srv.log)
    _, again = run(driver(srv), init, config={"journal": journal, "deterministic": True, "mode": "replay"})
    assert live.value == again.value == ("recorded", 10)
    assert len(srv.log) == n                 # replay made no call


def test_price_table_validation_and_strict_mode(srv: OpenAIServer) -> None:
    from agentos.drivers.prices import PriceTable

    t = PriceTable({"a": Price(1, 2), "gpt-*": {"prompt": 3, "completion": 4}, "*": (5, 6)})
    assert t.lookup("a") == Price(1, 2) and t.lookup("gpt-x") == Price(3, 4) and t.lookup("zzz") == Price(5, 6)
    with pytest.raises(ValueError):
        PriceTable({"a": (-1, 2)})
    with pytest.raises(ValueError):
        PriceTable({"a": "cheap"})

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.read(await sys.open("llm"), {"messages": USER, "model": "unpriced"})
        except DriverError as e:
            return str(e)

    _, res = run(driver(srv, prices=PriceTable({"test-model": (1, 1)}, strict=True)), init)
    assert "no price for model 'unpriced'" in res.value and not srv.log


def test_importing_the_drivers_pulls_no_optional_library() -> None:
    import subprocess
    import sys

    code = ("import sys, agentos, agentos.drivers; "
            "bad = [m for m in ('openai', 'mcp', 'httpx2', 'anyio') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)


@settings(max_examples=80, deadline=None)
@given(args=st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=4),
       n_turns=st.integers(1, 4))
def test_property_tool_calls_survive_the_wire(args: dict[str, Any], n_turns: int) -> None:
    """An assistant tool call in agentos form goes out as OpenAI JSON text and parses back
    to the same arguments; roles and order are kept."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "s"}]
    for i in range(n_turns):
        msgs += [{"role": "user", "content": f"u{i}"},
                 {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{i}", "name": "f", "arguments": args}]},
                 {"role": "tool", "tool_call_id": f"c{i}", "content": args}]
    wire = to_openai_messages(msgs, "llm")
    assert [m["role"] for m in wire] == [m["role"] for m in msgs]
    for w in wire:
        if w["role"] == "assistant":
            assert parse_arguments(w["tool_calls"][0]["function"]["arguments"]) == args
        if w["role"] == "tool":
            assert json.loads(w["content"]) == args


@pytest.mark.parametrize("raw", [Raw(b"{not json"), Raw(b'{"choices": []}'), Raw(b"<html>oops</html>", 502, "text/html"),
                                 Raw(b"data: {broken\n\n", 200, "text/event-stream")])
def test_a_broken_endpoint_is_a_typed_error_not_a_crash(srv: OpenAIServer, raw: Raw) -> None:
    srv.script(raw, raw, raw, raw)
    seen: list[str] = []

    async def victim(sys: Any, args: Any) -> Any:
        try:
            await sys.read(await sys.open("llm"), {"messages": USER})
        except DriverError as e:
            seen.append(f"{type(e).__name__}: {e}")
            return
        seen.append("no error")

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(victim, caps=["llm"])
        await sys.waitpid(cap)
        return "kernel still fine"

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(driver(srv, max_retries=1))
    res = k.run(init, grant=["llm"])
    assert res.value == "kernel still fine"
    exits = [e.data for e in k.events.events() if e.kind == "exit" and e.pid == 2]
    assert exits == ["normal"]
    assert len(seen) == 1 and seen[0].startswith("UpstreamError: llm: "), seen


def test_an_unreachable_endpoint_is_retried_then_an_upstream_error() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                 # nothing listens there now
    sleeps = Sleeps()
    d = LLMDriver(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=2, sleep=sleeps,
                  backoff=Backoff(base=0.1, jitter=0))

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.read(await sys.open("llm"), {"messages": USER})
        except UpstreamError as e:
            return str(e)

    _, res = run(d, init)
    assert "cannot reach" in res.value and sleeps.delays == [0.1, 0.2] and d.calls == 3
