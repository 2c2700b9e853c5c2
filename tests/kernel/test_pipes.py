"""Typed pipes: the kernel checks every message against the pipe's schema at send."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import BadArgument, CapError
from agentos.abi import SchemaViolation
from tests.support.boot import boot

PLAN = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array", "maxItems": 8,
            "items": {
                "type": "object",
                "properties": {"tool": {"type": "string", "pattern": "^[a-z_]+$"},
                               "args": {"type": "object"}, "why": {"type": "string", "maxLength": 200}},
                "required": ["tool", "args", "why"], "additionalProperties": False,
            },
        },
    },
    "required": ["steps"], "additionalProperties": False,
}
GOOD = {"steps": [{"tool": "add", "args": {"a": 1}, "why": "sum"}]}


async def sink(sys: Any, args: Any) -> list[Any]:
    """Receives until "stop" arrives on its plain cap; returns what reached it."""
    got = []
    while True:
        msg = await sys.recv()
        if msg.body == "stop":
            return got
        got.append(msg.body)


async def sender(sys: Any, bodies: list[Any]) -> list[Any]:
    """Sends each body through its one capability; the outcome of each send."""
    out: list[Any] = []
    for b in bodies:
        try:
            await sys.send(sys.caps[0], b)
            out.append("ok")
        except SchemaViolation as e:
            out.append(("refused", e.path, e.schema_path))
    return out


def test_valid_message_passes_and_reaches_the_receiver() -> None:
    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe(PLAN)
        await sys.send(p, GOOD)
        return (await sys.recv(timeout=0)).body

    _, res = boot(init)
    assert res.value == GOOD


def test_invalid_message_is_refused_at_the_sender_with_its_path() -> None:
    bad = {"steps": [GOOD["steps"][0], {"tool": "Wire Transfer", "args": {}, "why": "x"}]}

    async def reporter(sys: Any, bodies: list[Any]) -> None:
        out = await sender(sys, bodies)
        await sys.send(sys.caps[1], ("report", out))

    async def init(sys: Any, args: Any) -> Any:
        _, peer = await sys.spawn(sink)
        p = await sys.pipe(PLAN, peer)
        me = await sys.self_cap()
        _, s = await sys.spawn(reporter, args=[GOOD, bad, {"steps": [], "extra": 1}, "text"], caps=[p, me])
        report = (await sys.recv()).body
        await sys.send(peer, "stop")
        return report

    _, res = boot(init)
    assert res.value == ("report", [
        "ok",
        ("refused", "/steps/1/tool", "/properties/steps/items/properties/tool/pattern"),
        ("refused", "/extra", "/additionalProperties"),
        ("refused", "", "/type"),
    ])


def test_receiver_gets_only_what_matched() -> None:
    bad = {"steps": [{"tool": "x", "args": [], "why": "y"}]}

    async def init(sys: Any, args: Any) -> Any:
        got = []
        p = await sys.pipe(PLAN)
        _, s = await sys.spawn(sender, args=[bad, GOOD, 7, GOOD], caps=[p])
        await sys.waitpid(s)
        while (m := await sys.recv(timeout=0)) is not None:
            got.append(m.body)
        return got

    _, res = boot(init)
    assert res.value == [GOOD, GOOD]


def test_sender_sees_the_refusal_as_schema_violation_subclass_of_bad_argument() -> None:
    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe({"type": "integer", "maximum": 10})
        try:
            await sys.send(p, 11)
        except BadArgument as e:
            return type(e).__name__, e.path, e.schema_path, str(e)
        return "sent"

    _, res = boot(init)
    name, path, spath, text = res.value
    assert (name, path, spath) == ("SchemaViolation", "", "/maximum")
    assert "11 is more than the maximum 10" in text


def test_derived_cap_keeps_the_schema() -> None:
    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe({"type": "string"})
        d = await sys.derive(p, "send")
        a = await sys.attenuate(d, expires_in=1000)
        out = []
        for cap in (p, d, a):
            try:
                await sys.send(cap, 5)
                out.append("sent")
            except SchemaViolation:
                out.append("refused")
        info = await sys.cap_info(a)
        return out, info["kind"], len(info["schema"]), info["rights"]

    _, res = boot(init)
    assert res.value == (["refused"] * 3, "pipe", 64, "send")


def test_cap_passed_on_a_message_keeps_the_schema() -> None:
    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe({"type": "string"})
        _, s = await sys.spawn(relay)
        await sys.send(s, "here", caps=[p])
        await sys.waitpid(s)
        return [m.body for m in [await sys.recv(timeout=0), await sys.recv(timeout=0)] if m is not None]

    async def relay(sys: Any, args: Any) -> None:
        m = await sys.recv()
        try:
            await sys.send(m.caps[0], {"not": "a string"})
        except SchemaViolation:
            await sys.send(m.caps[0], "refused")

    _, res = boot(init)
    assert res.value == ["refused"]


def test_pipe_cap_cannot_add_rights_or_be_used_as_a_process_cap() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, peer = await sys.spawn(sink)
        p = await sys.pipe({"type": "string"}, peer)
        out = []
        for attempt in (lambda: sys.derive(p, "send,kill"), lambda: sys.monitor(p), lambda: sys.kill(p),
                        lambda: sys.waitpid(p), lambda: sys.pipe({"type": "integer"}, p)):
            try:
                await attempt()
                out.append("allowed")
            except CapError:
                out.append("refused")
        await sys.send(peer, "stop")
        return out

    _, res = boot(init)
    assert res.value == ["refused"] * 5


def test_revoking_the_source_cap_revokes_the_pipe() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, peer = await sys.spawn(sink)
        d = await sys.derive(peer, "send")
        p = await sys.pipe({"type": "string"}, d)
        await sys.revoke(d)
        try:
            await sys.send(p, "x")
        except CapError:
            await sys.send(peer, "stop")
            return "revoked"
        return "still works"

    _, res = boot(init)
    assert res.value == "revoked"


def test_pipe_to_an_exited_process_is_a_dead_letter_after_the_check() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, peer = await sys.spawn(sink)
        p = await sys.pipe({"type": "string"}, peer)
        await sys.send(peer, "stop")
        await sys.waitpid(peer)
        await sys.send(p, "late")  # delivered nowhere, no error (as on a plain cap)
        try:
            await sys.send(p, 3)
        except SchemaViolation:
            return "checked first"
        return "unchecked"

    _, res = boot(init)
    assert res.value == "checked first"


def _deep(n: int) -> Any:
    v: Any = {"type": "object"}
    for _ in range(n):
        v = {"items": v}
    return v


HOSTILE_SCHEMAS = {
    "ten_thousand_deep_schema": (_deep(10_000), "nested deeper than 64"),
    "twenty_thousand_value_schema": ({"enum": list(range(20_000))}, "more than 10000 values"),
    "remote_ref": ({"$ref": "https://example.org/s.json"}, "only local references"),
    "relative_file_ref": ({"$ref": "other.json#/x"}, "only local references"),
    "backreference_regex_bomb": ({"pattern": "(a+)+\\1$"}, "RE2 rejects"),
    "lookahead_pattern": ({"pattern": "(?=a)a"}, "RE2 rejects"),
    "huge_pattern": ({"pattern": "a" * 2000}, "pattern longer than 1000"),
    "nan_bound": ({"minimum": float("nan")}, "is not a JSON number"),
    "infinite_bound": ({"maximum": float("inf")}, "is not a JSON number"),
    "unenforced_format_keyword": ({"format": "email"}, "unsupported keyword 'format'"),
    "unknown_keyword": ({"dependentSchemas": {}}, "unsupported keyword"),
    "self_ref_loop": ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "never end"),
    "mutual_ref_loop": ({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}},
                         "$ref": "#/$defs/a"}, "never end"),
    "root_ref_loop": ({"allOf": [{"$ref": "#"}]}, "never end"),
    "dangling_ref": ({"$ref": "#/$defs/nope"}, "names no entry"),
    "set_value": ({"type": {1, 2}}, "not a JSON value"),
    "non_string_key": ({1: "x"}, "keys must be strings"),
    "lone_surrogate": ({"pattern": "\ud800"}, "lone surrogate"),
    "huge_title": ({"title": "x" * 300_000}, "exceeds 262144 characters"),
    "misspelt_type": ({"type": "integr"}, "type must be one of"),
    "negative_length": ({"maxLength": -1}, "non-negative integer"),
    "zero_multiple": ({"multipleOf": 0}, "multipleOf must be > 0"),
    "bool_as_number": ({"minimum": True}, "must be a number"),
    "not_a_schema": (42, "must be an object or a boolean"),
    "huge_integer": ({"maximum": 10 ** 200}, "integer too large"),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE_SCHEMAS))
def test_hostile_schema_is_refused_at_creation(attack: str) -> None:
    schema, why = HOSTILE_SCHEMAS[attack]

    async def init(sys: Any, args: Any) -> Any:
        try:
            await sys.pipe(schema)
        except BadArgument as e:
            return type(e).__name__, str(e)
        return "accepted", ""

    _, res = boot(init)
    name, text = res.value
    assert name == "BadArgument" and text.startswith("pipe: schema refused"), res.value
    assert why in text, text


def test_recursive_schema_validates_nested_messages_and_bounds_depth() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                                "additionalProperties": False}},
            "$ref": "#/$defs/node"}

    def nest(n: int) -> Any:
        v: Any = {}
        for _ in range(n):
            v = {"kids": [v]}
        return v

    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe(tree)
        out = []
        for body in (nest(5), nest(30), nest(400)):
            try:
                await sys.send(p, body)
                out.append("ok")
            except SchemaViolation as e:
                out.append(str(e))
        return out

    _, res = boot(init)
    assert res.value[:2] == ["ok", "ok"]
    assert "deeper than 128" in res.value[2]


def _send_through(schema: Any, *bodies: Any) -> list[str]:
    """Send each body through a fresh pipe with `schema`; 'sent' or the refusal's text."""
    async def init(sys: Any, args: Any) -> Any:
        p = await sys.pipe(schema)
        out = []
        for b in bodies:
            try:
                await sys.send(p, b)
                out.append("sent")
            except SchemaViolation as e:
                out.append(f"{e.schema_path} | {e}")
        return out

    _, res = boot(init)
    return res.value


def test_half_million_item_body_is_refused_by_the_step_budget() -> None:
    [out] = _send_through({"type": "array", "items": {"type": "integer"}}, list(range(500_000)))
    assert "more than 100000 steps" in out


def test_ten_megabyte_string_against_a_pattern_is_refused_by_the_step_budget() -> None:
    [out] = _send_through({"type": "string", "pattern": "^(a|aa)+$"}, "a" * 10_000_000 + "b")
    assert "more than 100000 steps" in out


def test_catastrophic_backtracking_body_is_matched_in_linear_time() -> None:
    # ^(a|aa)+$ on a long run of a's ending in b is exponential for a backtracking engine
    out = _send_through({"type": "string", "pattern": "^(a|aa)+$"}, "a" * 5000 + "b", "a" * 5000)
    assert out[1] == "sent"
    assert out[0].startswith("/pattern | ") and out[0].endswith('does not match "^(a|aa)+$"'), out[0]


def test_exponential_anyof_body_is_cut_off() -> None:
    branchy = {"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}},
                         {"type": "integer"}]}
    body: Any = "leaf"
    for _ in range(40):
        body = [body]
    [out] = _send_through(branchy, body)  # 2^40 paths for a naive search
    assert "more than 100000 steps" in out or "deeper than 128" in out


def test_nan_infinity_and_bool_are_not_numbers() -> None:
    assert [o.split(" | ")[0] for o in _send_through({"type": "number"}, float("nan"), float("-inf"), True, 1.5)] \
        == ["/type", "/type", "/type", "sent"]


def test_long_keys_do_not_blow_up_the_refusal() -> None:
    [out] = _send_through({"additionalProperties": False}, {"k" * 100_000: 1})
    assert len(out) < 1000 and "..." in out


def test_a_send_on_a_plain_cap_is_untouched_by_pipes() -> None:
    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        await sys.pipe({"type": "string"})
        await sys.send(me, 5)  # the plain cap carries no schema
        return (await sys.recv()).body

    _, res = boot(init)
    assert res.value == 5
