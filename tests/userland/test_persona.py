"""Personas: validation, a versioned registry on a VFS mount, and instantiate → exact caps and budget."""
from __future__ import annotations

import dataclasses

import pytest

from agentos import AllowAll, CapError, Kernel, Quota
from agentos.drivers.chat import ChatReply
from agentos.drivers.kv import KVDriver
from agentos.drivers.scripted import ScriptedChat, call
from agentos.drivers.tools import ToolsDriver, tool
from agentos.store import MemoryStore
from agentos.userland.persona import (
    Persona, PersonaError, PersonaRegistry, instantiate, mount_personas, persona_store,
)
from agentos.vfs import AccessDenied


@tool(effect="read_only")
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(effect="read_only")
def secret() -> str:
    """A tool the persona is not offered."""
    return "s3cret"


CALC = Persona("calc", "You add numbers with the add tool.", tools=("add",), max_steps=3,
               quota=Quota(tokens=5000, tool_calls=3))


def kernel(*drivers, personas=None):
    k = Kernel(deterministic=True, policy=AllowAll())
    for d in drivers:
        k.register_driver(d)
    dev = mount_personas(k, personas)
    return k, dev


@pytest.mark.parametrize("kw,needle", [
    ({"name": "Bad Name"}, "persona name must match"),
    ({"name": "x" * 65}, "persona name must match"),
    ({"version": 0}, "version must be an int >= 1"),
    ({"version": True}, "version must be an int >= 1"),
    ({"system": "  "}, "system must be a non-empty string"),
    ({"system": "x" * 20_001}, "system must be a non-empty string"),
    ({"system": "bad \ud800"}, "not valid Unicode"),
    ({"tools": "add"}, "tools must be a list"),
    ({"tools": ["a b"]}, "not a valid name"),
    ({"devices": ["../etc"]}, None),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_steps": 10**6}, "max_steps"),
    ({"quota": {"tokens": 5}}, "quota must be a Quota"),
    ({"policy_class": "root"}, "policy_class must be one of"),
    ({"llm": ""}, "llm must be a device name"),
])
def test_a_persona_that_does_not_hold_together_is_refused(kw, needle):
    base = {"name": "ok", "system": "You help."}
    if needle is None:  # a device name with dots and slashes is still just a name (vfs:/x is one)
        Persona(**{**base, **kw})
        return
    with pytest.raises(PersonaError, match=needle):
        Persona(**{**base, **kw})


def test_round_trip_through_a_dict():
    assert Persona.from_dict(CALC.to_dict()) == CALC
    with pytest.raises(PersonaError, match="unknown persona field"):
        Persona.from_dict({**CALC.to_dict(), "root": True})
    with pytest.raises(PersonaError, match="persona quota"):
        Persona.from_dict({**CALC.to_dict(), "quota": {"tokens": -5}})


def test_registry_versions_are_immutable_and_publish_only_adds_changes():
    k, dev = kernel()

    async def init(sys, args):
        reg = PersonaRegistry(sys)
        a = await reg.publish(CALC)
        same = await reg.publish(dataclasses.replace(CALC, version=7))        # same content: no new version
        b = await reg.publish(dataclasses.replace(CALC, system="You add carefully."))
        try:
            await reg.put(dataclasses.replace(CALC, system="overwrite v1"))
        except PersonaError as e:
            refused = str(e)
        return (a.version, same.version, b.version, refused, await reg.versions("calc"),
                (await reg.get("calc")).system, (await reg.get("calc", 1)).system,
                [p.label for p in await reg.list()], await reg.names())

    out = k.run(init, grant=[dev]).value
    assert out[:3] == (1, 1, 2) and "already exists with other content" in out[3]
    assert out[4] == [1, 2] and out[5] == "You add carefully." and out[6] == CALC.system
    assert out[7] == ["calc@2"] and out[8] == ["calc"]


def test_registry_needs_the_mount_capability_and_persists_in_a_store():
    store = MemoryStore()

    async def writer(sys, args):
        await PersonaRegistry(sys).publish(CALC)

    async def stranger(sys, args):
        try:
            await PersonaRegistry(sys).list()
        except AccessDenied as e:
            return str(e)

    async def init(sys, args):
        await writer(sys, args)
        _, c = await sys.spawn(stranger_wrap)
        await sys.waitpid(c)

    got = {}

    async def stranger_wrap(sys, args):
        got["err"] = await stranger(sys, args)

    k, dev = kernel(personas=persona_store(store))
    k.run(init, grant=[dev])
    assert "holds no capability" in got["err"]

    async def reader(sys, args):
        return (await PersonaRegistry(sys).get("calc")).to_dict()

    k2, dev2 = kernel(personas=persona_store(store))
    assert k2.run(reader, grant=[dev2]).value == CALC.to_dict()     # a new kernel, the same registry


def test_instantiate_starts_exactly_the_persona_with_its_caps_and_budget():
    chat = ScriptedChat([ChatReply("", [call("add", {"a": 2, "b": 3})]), "5"])
    k, _ = kernel(chat, ToolsDriver([add, secret]), KVDriver())

    async def init(sys, args):
        sp = await instantiate(sys, CALC, "What is 2 + 3?")
        pid, cap = await sys.spawn(sp.image, **sp.options())
        reason = await sys.waitpid(cap)
        return pid, str(reason), sp.caps, sp.quota, sp.name

    pid, reason, caps, quota, name = k.run(init, grant=["llm", "tools", "kv"]).value
    assert reason == "normal" and caps == ("llm", "tools") and quota == CALC.quota and name == "calc@1"
    spawn = next(e for e in k.events.events(kind="spawn") if e.pid == pid)
    assert spawn.data[1] == "calc@1" and spawn.data[2] == CALC.quota     # its own budget, carved at spawn
    assert chat.requests[0]["messages"][0]["content"] == CALC.system
    assert [t["function"]["name"] for t in chat.requests[0]["tools"]] == ["add"]   # only its tools
    charges = [e for e in k.events.events(kind="charge") if e.pid == pid]
    assert sum(c.data[2] for c in charges) == 1 and sum(c.data[1] for c in charges) > 0


def test_a_read_only_persona_gets_device_copies_without_write():
    async def probe(sys, args):
        """Stands in for a persona body: what do its capabilities allow?"""
        h = await sys.open("kv")
        await sys.read(h, {"op": "get", "key": "x"})
        try:
            await sys.write(h, {"op": "set", "key": "x", "value": 1})
            return "wrote"
        except CapError as e:
            return str(e)

    got = {}

    async def wrap(sys, args):
        got["v"] = await probe(sys, args)

    async def init(sys, args):
        ro = Persona("reader", "You read.", devices=("kv",), policy_class="read_only", quota=Quota(tokens=10))
        sp = await instantiate(sys, ro, "look")
        infos = [await sys.cap_info(c) for c in sp.caps]
        _, c = await sys.spawn(wrap, **{k2: v for k2, v in sp.options().items() if k2 != "args"})
        await sys.waitpid(c)
        try:
            await instantiate(sys, dataclasses.replace(ro, devices=("nope",)), "x")
        except Exception as e:  # the caller holds no such device: nothing to derive from
            missing = f"{type(e).__name__}: {e}"
        return infos, missing

    k, _ = kernel(ScriptedChat([]), KVDriver())
    infos, missing = k.run(init, grant=["llm", "kv"]).value
    assert [(i["target"], i["rights"]) for i in infos] == [("llm", "open,read"), ("kv", "open,read")]
    assert "lacks the write right" in got["v"]
    assert "no capability for device 'nope'" in missing


def test_instantiate_needs_a_persona_and_a_task():
    async def init(sys, args):
        out = []
        try:
            await instantiate(sys, {"name": "calc"})  # type: ignore[arg-type]
        except PersonaError as e:
            out.append(str(e))
        sp = await instantiate(sys, CALC)            # no task: the persona process refuses to start work
        _, c = await sys.spawn(sp.image, **sp.options())
        out.append(str(await sys.waitpid(c)))
        return out

    k, _ = kernel(ScriptedChat([]), ToolsDriver([add]))
    a, b = k.run(init, grant=["llm", "tools"]).value
    assert "needs a Persona" in a and "no task to work on" in b
