"""Typed pipes: the kernel checks every message against the pipe's schema at send."""
from __future__ import annotations

from typing import Any

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


def test_hostile_schemas_are_refused_at_creation() -> None:
    deep: Any = {"type": "object"}
    for _ in range(10_000):
        deep = {"items": deep}
    wide = {"enum": list(range(20_000))}
    hostile = [
        ("deep", deep), ("wide", wide), ("remote_ref", {"$ref": "https://example.org/s.json"}),
        ("regex_bomb", {"pattern": "(a+)+\\1$"}), ("lookahead", {"pattern": "(?=a)a"}),
        ("nan", {"minimum": float("nan")}), ("unknown_keyword", {"format": "email"}),
        ("self_ref_loop", {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
        ("mutual_ref_loop", {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}},
                             "$ref": "#/$defs/a"}),
        ("dangling_ref", {"$ref": "#/$defs/nope"}), ("not_json", {"type": {1, 2}}),
        ("non_string_key", {1: "x"}), ("surrogate", {"pattern": "\ud800"}), ("huge_string", {"title": "x" * 300_000}),
        ("bad_type", {"type": "integr"}), ("negative_length", {"maxLength": -1}), ("zero_multiple", {"multipleOf": 0}),
        ("not_a_schema", 42),
    ]

    async def init(sys: Any, args: Any) -> Any:
        out = {}
        for name, schema in hostile:
            try:
                await sys.pipe(schema)
                out[name] = "accepted"
            except BadArgument as e:
                out[name] = str(e)
        return out

    _, res = boot(init)
    for name, _ in hostile:
        assert res.value[name].startswith("pipe: schema refused"), (name, res.value[name])
    assert "nested deeper than 64" in res.value["deep"]
    assert "only local references" in res.value["remote_ref"]
    assert "RE2 rejects" in res.value["regex_bomb"]
    assert "never end" in res.value["self_ref_loop"] and "never end" in res.value["mutual_ref_loop"]


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


def test_hostile_bodies_are_bounded() -> None:
    async def init(sys: Any, args: Any) -> Any:
        out = {}
        p = await sys.pipe({"type": "array", "items": {"type": "integer"}})
        try:
            await sys.send(p, list(range(500_000)))
            out["huge_array"] = "sent"
        except SchemaViolation as e:
            out["huge_array"] = str(e)
        s = await sys.pipe({"type": "string", "pattern": "^(a|aa)+$"})
        try:
            await sys.send(s, "a" * 10_000_000 + "b")
            out["huge_string"] = "sent"
        except SchemaViolation as e:
            out["huge_string"] = str(e)
        try:
            await sys.send(s, "a" * 5000 + "b")  # exponential for a backtracking engine
            out["regex_bomb_body"] = "sent"
        except SchemaViolation as e:
            out["regex_bomb_body"] = e.schema_path
        branchy = {"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}},
                             {"type": "integer"}]}
        b = await sys.pipe(branchy)
        body: Any = "leaf"
        for _ in range(40):
            body = [body]
        try:
            await sys.send(b, body)  # 2^40 paths by naive search
            out["branchy"] = "sent"
        except SchemaViolation as e:
            out["branchy"] = str(e)
        n = await sys.pipe({"type": "number"})
        for name, v in (("nan", float("nan")), ("inf", float("inf")), ("bool", True)):
            try:
                await sys.send(n, v)
                out[name] = "sent"
            except SchemaViolation:
                out[name] = "refused"
        return out

    _, res = boot(init)
    v = res.value
    assert "more than 100000 steps" in v["huge_array"]
    assert "more than 100000 steps" in v["huge_string"]
    assert v["regex_bomb_body"] == "/pattern"
    assert "steps" in v["branchy"] or "deeper than" in v["branchy"]
    assert (v["nan"], v["inf"], v["bool"]) == ("refused", "refused", "refused")


def test_a_send_on_a_plain_cap_is_untouched_by_pipes() -> None:
    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        await sys.pipe({"type": "string"})
        await sys.send(me, 5)  # the plain cap carries no schema
        return (await sys.recv()).body

    _, res = boot(init)
    assert res.value == 5
