"""PROV dependencies follow what really happened: a step used and was informed by its own
process's previous step and, across processes, the sender's step behind each message it
received and the parent's step before its spawn; unrelated agents are never linked.
Agents are prov:Agents acting on behalf of their parent; activities have start and end
times; export from a SQLite store streams."""
from __future__ import annotations

import io
import tracemalloc
from typing import Any

import pytest

pyoxigraph = pytest.importorskip("pyoxigraph")

from agentos import AllowAll, Cost, Kernel  # noqa: E402
from agentos.abi.driver import Driver, DriverResult  # noqa: E402
from agentos.provenance import AOS, PROV, export, run_iri  # noqa: E402
from agentos.store import MemoryStore, open_store, record_run  # noqa: E402


class Echo(Driver):
    name = "echo"

    def read(self, h: Any, req: Any) -> DriverResult:
        return DriverResult({"echo": req}, Cost(tool_calls=1))


def load(text: str, fmt: str = "turtle") -> Any:
    g = pyoxigraph.Store()
    g.load(text.encode(), format=pyoxigraph.RdfFormat.TURTLE if fmt == "turtle" else pyoxigraph.RdfFormat.JSON_LD)
    return g


def q(g: Any, sparql: str) -> list[Any]:
    return list(g.query(f"PREFIX aos: <{AOS}> PREFIX prov: <{PROV}> " + sparql))


async def loner(sys: Any, args: Any) -> None:
    h = await sys.open("echo")
    for i in range(3):
        await sys.read(h, ("loner", i))
        await sys.sleep(1)


async def consumer(sys: Any, args: Any) -> None:
    h = await sys.open("echo")
    await sys.read(h, ("consumer", "before"))
    m = await sys.recv()
    await sys.read(h, ("consumer", "after", m.body))


async def producer_init(sys: Any, args: Any) -> None:
    h = await sys.open("echo")
    await sys.read(h, ("init", "first"))
    _, lone = await sys.spawn(loner, caps=["echo"])
    _, c = await sys.spawn(consumer, caps=["echo"])
    await sys.sleep(2)
    await sys.read(h, ("init", "before-send"))
    await sys.send(c, "go")
    await sys.read(h, ("init", "after-send"))
    await sys.waitpid(c)
    await sys.waitpid(lone)


def recorded(store: Any, name: str = "deps") -> str:
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Echo())
    rid = record_run(k, store, name)
    k.run(producer_init, grant=["echo"])
    return rid


def steps_by_request(g: Any) -> dict[str, str]:
    out = {}
    for r in q(g, "SELECT ?s ?p WHERE { ?s a prov:Activity ; aos:payload_json ?p }"):
        import json
        req = json.loads(r["p"].value)["request"]
        out["/".join(str(x) for x in req[:2])] = r["s"].value
    return out


def informed(g: Any, step: str) -> set[str]:
    return {r["a"].value for r in q(g, f"SELECT ?a WHERE {{ <{step}> prov:wasInformedBy ?a }}")}


def used(g: Any, step: str) -> set[str]:
    return {r["o"].value for r in q(g, f"SELECT ?o WHERE {{ <{step}> prov:used ?o }}")}


@pytest.mark.parametrize("fmt", ["turtle", "jsonld"])
def test_dependencies_follow_processes_and_messages(fmt: str) -> None:
    store = MemoryStore()
    rid = recorded(store)
    g = load(export((store, rid), fmt), fmt)  # type: ignore[arg-type]
    s = steps_by_request(g)
    # within a process: each step follows its own process's previous step
    assert informed(g, s["loner/1"]) == {s["loner/0"]}
    assert informed(g, s["init/after-send"]) == {s["init/before-send"]}
    # across a message: the consumer's step after recv is informed by the sender's step before the send
    assert informed(g, s["consumer/after"]) == {s["consumer/before"], s["init/before-send"]}
    assert used(g, s["consumer/after"]) == {s["consumer/before"] + "/out", s["init/before-send"] + "/out"}
    # across a spawn: a child's first step follows its parent's last step before the spawn
    assert informed(g, s["loner/0"]) == {s["init/first"]}
    # unrelated agents are never linked
    loner_steps = {v for k_, v in s.items() if k_.startswith("loner")}
    for k_, v in s.items():
        if k_.startswith("consumer"):
            assert not informed(g, v) & loner_steps


def test_agents_are_prov_agents_acting_on_behalf_of_their_parent_and_steps_have_times() -> None:
    store = MemoryStore()
    rid = recorded(store)
    g = load(export((store, rid)))  # type: ignore[arg-type]
    base = run_iri(rid)
    agents = {r["a"].value for r in q(g, "SELECT ?a WHERE { ?a a prov:Agent }")}
    assert {f"{base}/agent/1", f"{base}/agent/2", f"{base}/agent/3"} <= agents
    behalf = {(r["a"].value, r["p"].value) for r in q(g, "SELECT ?a ?p WHERE { ?a prov:actedOnBehalfOf ?p }")}
    assert behalf == {(f"{base}/agent/2", f"{base}/agent/1"), (f"{base}/agent/3", f"{base}/agent/1")}
    rows = q(g, "SELECT ?s ?a ?b WHERE { ?s a prov:Activity ; prov:startedAtTime ?a ; prov:endedAtTime ?b }")
    n = len(q(g, "SELECT ?s WHERE { ?s a prov:Activity }"))
    assert rows and len(rows) == n
    assert all(r["a"].value <= r["b"].value for r in rows)


@pytest.mark.parametrize("run_id", ['run with spaces', 'a"quote', "x>y<z", "ünï{}|\\^`", "#frag?q=1&%41"])
def test_any_run_id_gives_a_valid_iri(run_id: str) -> None:
    store = MemoryStore()
    k = Kernel(deterministic=True, policy=AllowAll())
    k.register_driver(Echo())
    rid = record_run(k, store, "odd", run_id=run_id)
    k.run(producer_init, grant=["echo"])
    for fmt in ("turtle", "jsonld"):
        g = load(export((store, rid), fmt), fmt)  # type: ignore[arg-type]
        (row,) = q(g, "SELECT ?m ?id WHERE { ?m a aos:ReplayManifest ; aos:id ?id }")
        assert row["id"].value == run_id and row["m"].value == run_iri(run_id)
        assert " " not in row["m"].value and ">" not in row["m"].value and '"' not in row["m"].value


def test_export_from_sqlite_does_not_grow_with_the_run(tmp_path) -> None:
    """Peak memory of the export at 2,000 and 8,000 steps: the journal is never loaded."""
    def peak(n: int) -> tuple[int, int]:
        path = tmp_path / f"r{n}.db"
        st = open_store(str(path))
        k = Kernel(deterministic=True, policy=AllowAll())
        k.register_driver(Echo())

        async def many(sys: Any, args: Any) -> None:
            h = await sys.open("echo")
            for i in range(n):
                await sys.read(h, {"i": i, "pad": "x" * 200})

        rid = record_run(k, st, "many")
        k.run(many, grant=["echo"])
        st.close()
        st = open_store(str(path))
        sink = _Count()
        tracemalloc.start()
        written = export((st, rid), "turtle", sink)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        st.close()
        assert written == n
        return top, sink.chars

    small, c_small = peak(2_000)
    big, c_big = peak(8_000)
    assert c_big > 3.5 * c_small
    assert big < small + 1_000_000, (small, big)


class _Count(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:  # type: ignore[override]
        self.chars += len(s)
        return len(s)
