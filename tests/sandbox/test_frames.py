"""The frame parser: strict JSON objects of a known type, bounded in depth, never recursing."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.sandbox.frames import MAX_DEPTH, FrameError, depth, parse_frame


def test_valid_frames_parse() -> None:
    assert parse_frame(b'{"t":"hello","pid":3}') == {"t": "hello", "pid": 3}
    msg = parse_frame(json.dumps({"t": "call", "name": "send", "args": [1, {"a": "\ud800"}], "kw": {}}).encode())
    assert msg["args"][1]["a"] == "\ud800"


@pytest.mark.parametrize("line,why", [
    (b"", "not JSON"), (b"null", "not an object"), (b'"x"', "not an object"), (b"[]", "not an object"),
    (b'{"t":1}', "unknown type"), (b'{"t":"call","name":""}', "without a syscall name"),
    (b'{"t":"call","name":"' + b"x" * 100 + b'"}', "without a syscall name"),
    (b'{"t":"call","name":"pid","args":{}}', "args is not a list"),
    (b'{"t":"exit","v":NaN}', "NaN is not JSON"), (b'{"t":"exit","v":Infinity}', "Infinity is not JSON"),
    (b'{"t":"exit"}\xff', "not UTF-8"), (b'{"t":"exit","v":' + b"1" * 5000 + b"}", "not JSON"),
    (b'{"t":"exit","v":' + b"[" * 70 + b"]" * 70 + b"}", f"more than {MAX_DEPTH} deep"),
    (b'{"t":"exit","v":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "too deep"),
])
def test_malformed_frames_raise_frame_error(line: bytes, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        parse_frame(line)


def test_depth_is_measured_without_recursion() -> None:
    v: list = []
    for _ in range(100_000):
        v = [v]
    assert depth(v, limit=MAX_DEPTH) == MAX_DEPTH + 1
    assert depth({"a": [1, {"b": []}]}) == 4 and depth(5) == 0
    assert depth([[]] * 10_000) == 2


def test_many_brackets_inside_strings_do_not_count() -> None:
    line = json.dumps({"t": "call", "name": "log", "args": ["[" * 10_000 + "{" * 10_000], "kw": {}}).encode()
    assert parse_frame(line)["args"][0].startswith("[[[")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_frame_or_a_frame_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except FrameError:
        pass
