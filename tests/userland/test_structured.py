"""Structured model output: JSON under a schema, parsed strictly, never a silent empty result."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from agentos import AllowAll, Kernel, SyscallError
from agentos.drivers.scripted import ScriptedChat
from agentos.userland.structured import ModelOutputError, ask_json, device_ref, parse_json

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}},
          "required": ["n"], "additionalProperties": False}


@pytest.mark.parametrize("text,needle", [
    (None, "no text content"),
    ("", "empty"),
    ("   ", "empty"),
    ("not json", "not JSON: Expecting value"),
    ('{"n": 1', "not JSON"),
    ('{"n": 11}', "n: fails maximum 10 (11 is greater than the maximum"),
    ('{"n": "1"}', "is not of type 'integer'"),
    ('{"n": 1, "m": 2}', "Additional properties"),
    ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ("1" * 5000, "not usable JSON"),
    ("x" * (1 << 21), "over the"),
])
def test_malformed_replies_are_errors_that_say_what_was_wrong(text, needle):
    with pytest.raises(ModelOutputError, match=re.escape(needle)):
        parse_json(text, SCHEMA, what="count")


def test_a_cut_off_reply_says_so_and_fences_are_tolerated():
    with pytest.raises(ModelOutputError, match="cut off at max_tokens"):
        parse_json('{"n": ', SCHEMA, what="count", truncated=True)
    assert parse_json('```json\n{"n": 3}\n```', SCHEMA, what="count") == {"n": 3}
    assert issubclass(ModelOutputError, SyscallError)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=200))
def test_property_any_text_parses_or_raises_the_typed_error(text):
    try:
        out = parse_json(text, SCHEMA, what="count")
    except ModelOutputError:
        return
    assert isinstance(out, dict) and set(out) == {"n"}


def test_ask_json_sends_the_schema_as_response_format():
    chat = ScriptedChat(['{"n": 4}', "no json here"])

    async def init(sys, args):
        h = await sys.open("llm")
        value, reply = await ask_json(sys, h, [{"role": "user", "content": "count"}], SCHEMA, name="count",
                                      max_tokens=20)
        try:
            await ask_json(sys, h, [{"role": "user", "content": "again"}], SCHEMA, name="count")
        except ModelOutputError as e:
            return value, str(e)

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(chat)
    value, err = k.run(init, grant=["llm"]).value
    assert value == {"n": 4} and "count: the reply is not JSON" in err
    rf = chat.requests[0]["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "count", "schema": SCHEMA}}
    assert chat.requests[0]["max_tokens"] == 20
    assert len([e for e in k.events.events(kind="charge")]) == 2      # both calls were metered


def test_device_ref_finds_the_start_capability_of_init_and_children():
    async def child(sys, args):
        return await device_ref(sys, "llm") in sys.caps

    async def init(sys, args):
        ref = await device_ref(sys, "llm")
        try:
            await device_ref(sys, "nope")
        except SyscallError as e:
            err = str(e)
        _, c = await sys.spawn(child, caps=["llm"])
        await sys.waitpid(c)
        return ref in sys.caps, err, json.dumps(await sys.cap_info(ref))

    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(ScriptedChat([]))
    ok, err, info = k.run(init, grant=["llm"]).value
    assert ok and "no capability for device 'nope'" in err and '"target": "llm"' in info
