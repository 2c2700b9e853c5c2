"""The local model's prompt, grammar schema and reply parsing: pure functions, no model."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from agentos import DriverError
from agentos.drivers.local_prompt import ANSWER, parse_reply, render, reply_schema, tool_names, tool_signature

CALC = {"type": "function", "function": {"name": "calc", "description": "Do arithmetic.", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"],
    "additionalProperties": False}}}
READ = {"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["path"]}}}


def test_render_merges_system_into_the_first_user_turn_and_opens_a_model_turn():
    p = render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], None)
    assert p == "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\n"


def test_render_shows_tools_calls_and_results_in_the_grammar_s_own_shape():
    msgs = [{"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "calc",
                                                                  "arguments": {"expression": "2+2"}}]},
            {"role": "tool", "tool_call_id": "c1", "name": "calc", "content": "4"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "and 3+3?"}]
    p = render(msgs, [CALC, READ])
    assert "- calc(expression: string): Do arithmetic." in p
    assert "- read_file(path: string, limit: integer?)" in p
    assert '<start_of_turn>model\n{"action": "calc", "arguments": {"expression": "2+2"}}<end_of_turn>' in p
    assert "<start_of_turn>user\ncalc returned:\n4<end_of_turn>" in p
    assert f'{{"action": "{ANSWER}", "answer": "4"}}' in p
    assert p.endswith("<start_of_turn>model\n")


def test_render_accepts_openai_shaped_tool_calls_and_names_image_parts():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "tool_calls": [{"id": "x", "type": "function",
                                                  "function": {"name": "calc", "arguments": '{"expression": "1"}'}}]}]
    p = render(msgs, [CALC])
    assert '{"action": "calc", "arguments": {"expression": "1"}}' in p
    assert "[image_url omitted" in p


def test_schema_puts_the_choice_first_and_constrains_arguments_per_tool():
    s = reply_schema([CALC, READ], "auto", answer_chars=50)
    variants = s["anyOf"]
    assert [v["properties"]["action"]["const"] for v in variants] == ["calc", "read_file", ANSWER]
    assert variants[0]["properties"]["arguments"] == CALC["function"]["parameters"]
    assert all(list(v["properties"])[0] == "action" for v in variants)
    assert variants[2]["properties"]["answer"]["maxLength"] == 50
    assert reply_schema([CALC], "required") == variants[0] | {}  # one tool, must call it
    assert reply_schema([CALC, READ], "none")["properties"]["action"]["const"] == ANSWER
    assert reply_schema(None, "auto") is None


def test_a_tool_named_like_the_answer_action_is_refused():
    bad = {"type": "function", "function": {"name": ANSWER, "parameters": {"type": "object"}}}
    with pytest.raises(DriverError, match="may not be named"):
        reply_schema([bad], "auto")


def test_tool_names_rejects_malformed_specs():
    assert tool_names([CALC, READ]) == ["calc", "read_file"]
    with pytest.raises(DriverError, match="tool 1"):
        tool_names([CALC, {"function": {"description": "no name"}}])


def test_parse_reply():
    r = parse_reply('{"action": "calc", "arguments": {"expression": "1+1"}}', True, "stop", "call_7")
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].to_dict() == {
        "id": "call_7", "name": "calc", "arguments": {"expression": "1+1"}}
    r = parse_reply(f'{{"action": "{ANSWER}", "answer": "two"}}', True, "stop", "c")
    assert (r.content, r.tool_calls) == ("two", [])
    cut = parse_reply('{"action": "final_answer", "answer": "tw', True, "length", "c")
    assert cut.finish_reason == "length" and cut.content.startswith("{")
    assert parse_reply("  plain text ", False, "stop", "c").content == "plain text"


@given(st.text(max_size=60), st.dictionaries(st.sampled_from(["a", "b", "path"]), st.integers() | st.text(max_size=10)))
def test_every_reply_the_grammar_allows_parses_back(answer, args):
    """What the model emits under the schema round-trips into a ChatReply."""
    call = json.dumps({"action": "calc", "arguments": args})
    assert parse_reply(call, True, "stop", "c").tool_calls[0].arguments == args
    ans = json.dumps({"action": ANSWER, "answer": answer})
    assert parse_reply(ans, True, "stop", "c").content == answer


def test_signature_without_parameters():
    assert tool_signature({"function": {"name": "now"}}) == "- now()"
