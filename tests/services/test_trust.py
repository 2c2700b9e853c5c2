"""Inter-agent trust: kernel-held identities and attestations, scores fed by the kernel's
own evidence and by capped peer reports, `min_trust` at the chokepoint, and SIGTRUST."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos import AllowAll, Kernel
from agentos.abi.errors import AttestationError, BadArgument, CapError, SchemaViolation, SyscallError, TrustDenied
from agentos.abi.types import ExitKind, Signal
from agentos.policy import PolicyEngine
from agentos.services import verify_attestation

HEAD = 'kernel: {version: "1.0", mode: strict}\n'


def policy(body: str) -> PolicyEngine:
    return PolicyEngine.from_text(HEAD + body, path="security.yaml")


def run(init: Any, pol: Any = None, seed: int = 0, **kw: Any) -> tuple[Kernel, Any]:
    k = Kernel(deterministic=True, seed=seed, policy=pol if pol is not None else AllowAll())
    return k, k.run(init, **kw)


async def idle(sys: Any, args: Any) -> None:
    await sys.recv()


async def attest_self(sys: Any, args: Any) -> Any:
    return await sys.attest()


# -- identities and attestations ---------------------------------------------------------

def test_an_attestation_names_image_persona_parent_node_pid_and_issue_time() -> None:
    async def child(sys: Any, args: Any) -> Any:
        await sys.sleep(5)
        att = await sys.attest()
        await sys.send(sys.caps[0], att)

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        persona = {"name": "researcher", "version": 3, "system": "be careful"}
        pid, _ = await sys.spawn(child, args={"persona": persona}, caps=[me])
        att = (await sys.recv()).body
        return pid, att, await sys.verify(att)

    k, res = run(init)
    pid, att, claims = res.value
    assert claims == verify_attestation(att, k.trust.node_public_key())
    assert (claims["pid"], claims["parent"], claims["node"], claims["image"]) == (pid, 1, "local", "child")
    assert claims["issued_at"] == 5.0 and claims["image_ref"].endswith(":test_an_attestation_names_image_persona_"
                                                                        "parent_node_pid_and_issue_time.<locals>.child")
    assert claims["persona"]["name"] == "researcher" and claims["persona"]["version"] == 3
    assert len(claims["persona"]["digest"]) == 64


def test_keys_are_derived_from_the_seed_so_a_seeded_kernel_attests_byte_identically() -> None:
    _, a = run(attest_self, seed=7)
    _, b = run(attest_self, seed=7)
    _, c = run(attest_self, seed=8)
    assert a.value == b.value
    assert a.value["key"] != c.value["key"] and a.value["sig"] != c.value["sig"]


def _forge(att: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An attestation with `changes`, certified and signed by keys the attacker made."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agentos.services.trust import _cert_bytes, _claims_bytes, _public_raw

    node = Ed25519PrivateKey.from_private_bytes(b"n" * 32)  # fixed: the replay forges the same
    proc = Ed25519PrivateKey.from_private_bytes(b"p" * 32)
    out = {**att, **changes, "key": _public_raw(proc).hex()}
    out["cert"] = node.sign(_cert_bytes(out["node"], out["pid"], out["incarnation"], out["key"])).hex()
    out["sig"] = proc.sign(_claims_bytes(out)).hex()
    return out


def test_a_forged_attestation_is_refused() -> None:
    async def init(sys: Any, args: Any) -> Any:
        mine = await sys.attest()
        forged = _forge(mine, image="trusted-admin")
        try:
            await sys.verify(forged)
        except AttestationError as e:
            return e.reason, str(e), forged
        return "accepted", "", forged

    k, res = run(init)
    reason, message, forged = res.value
    assert reason == "forged" and "not certified" in message
    with pytest.raises(AttestationError) as err:
        verify_attestation(forged, k.trust.node_public_key())
    assert err.value.reason == "forged"


def test_a_tampered_attestation_is_refused() -> None:
    async def init(sys: Any, args: Any) -> Any:
        att = await sys.attest()
        out = []
        for change in ({"image": "admin"}, {"parent": 0 if att["parent"] else 5}, {"issued_at": 99.0},
                       {"pid": att["pid"] + 1}, {"sig": "0" * 128}, {"cert": "f" * 128}):
            try:
                await sys.verify({**att, **change})
                out.append("accepted")
            except AttestationError as e:
                out.append(e.reason)
        return out

    _, res = run(init)
    # a changed claim breaks the process key's signature; a changed pid or cert, the node's
    assert res.value == ["tampered", "tampered", "tampered", "forged", "tampered", "forged"]


def test_hostile_attestation_values_are_typed_errors() -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]

    async def init(sys: Any, args: Any) -> Any:
        att = await sys.attest()
        hostile = [None, "att", 5, [att], {**att, "extra": 1}, {k: v for k, v in att.items() if k != "sig"},
                   {**att, "issued_at": float("nan")}, {**att, "issued_at": float("inf")},
                   {**att, "pid": -1}, {**att, "pid": True}, {**att, "image": "\ud800"},
                   {**att, "image": "x" * 5_000_000}, {**att, "persona": deep}, {**att, "node": "../../etc"},
                   {**att, "key": "zz" * 32}, {**att, "v": 2}]
        out = []
        for h in hostile:
            try:
                await sys.verify(h)
                out.append("accepted")
            except AttestationError as e:
                out.append(e.reason)
        return out

    _, res = run(init)
    assert res.value == ["malformed"] * 16


class _Hostile:
    """A value whose comparisons and hash raise: none of its code may run in the kernel."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("hostile __ne__")

    def __hash__(self) -> int:
        raise RuntimeError("hostile __hash__")


class _LateHashKey(str):
    """A str key that hashes once (to get into the dict), then raises."""

    calls = 0

    def __hash__(self) -> int:
        type(self).calls += 1
        if type(self).calls > 1:
            raise RuntimeError("hostile __hash__")
        return str.__hash__(self)


def test_an_attestation_with_hostile_objects_or_huge_numbers_is_malformed_not_a_kernel_bug() -> None:
    async def init(sys: Any, args: Any) -> Any:
        att = await sys.attest()
        late = {k: v for k, v in att.items() if k != "sig"}
        _LateHashKey.calls = 0
        late[_LateHashKey("sig")] = att["sig"]
        persona_key = {**att, "persona": {"name": "p", "version": 1}}
        _LateHashKey.calls = 0
        persona_key["persona"][_LateHashKey("digest")] = "0" * 64
        hostile = [{**att, "v": _Hostile()}, {**att, "issued_at": 10 ** 400}, {**att, "issued_at": -(10 ** 400)},
                   {**att, "persona": {"name": "p", "version": 1, "digest": _Hostile()}}, late]
        out = []
        for h in hostile:
            try:
                await sys.verify(h)
                out.append("accepted")
            except AttestationError as e:
                out.append(e.reason)
        _LateHashKey.calls = 1
        try:
            await sys.verify(persona_key)
            out.append("accepted")
        except AttestationError as e:
            out.append(e.reason)
        return out

    _, res = run(init)
    assert res.value == ["malformed"] * 6


async def claims_editor(sys: Any, args: Any) -> Any:
    """Verify its own attestation, edit the claims it got back and the attestation it was
    given, and hand an untouched copy to its parent."""
    att = await sys.attest()
    clean = {**att, "persona": dict(att["persona"])}
    claims = await sys.verify({**att, "persona": dict(att["persona"])})
    claims["persona"]["name"] = "root"
    att["persona"]["name"] = "root"
    att["image"] = "root-image"
    await sys.send(sys.caps[0], clean)
    await sys.recv(match=lambda m: m.body == "bye")


def test_editing_verified_claims_or_an_attestation_forges_nothing_the_kernel_answers_later() -> None:
    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        pid, cap = await sys.spawn(claims_editor, args={"persona": {"name": "helper", "version": 1}}, caps=[me])
        att = (await sys.recv()).body
        claims = await sys.verify(att)  # the same bytes the editor verified: the kernel's memo answers
        await sys.send(cap, "bye")
        await sys.waitpid(cap)
        return pid, att["persona"]["name"], claims["persona"]["name"]

    k = Kernel(deterministic=True, policy=AllowAll())
    res = k.run(init)
    pid, sent, verified = res.value
    assert (sent, verified) == ("helper", "helper"), res.reason
    wire = k.trust._recs[pid].attestation  # what its remote sends would carry
    assert wire["persona"]["name"] == "helper" and wire["image"] != "root-image"
    assert k.trust.verify(wire)["persona"]["name"] == "helper"


def test_an_attestation_from_an_unknown_node_cannot_be_verified() -> None:
    async def init(sys: Any, args: Any) -> Any:
        att = await sys.attest()
        try:
            await sys.verify({**att, "node": "elsewhere"})
        except AttestationError as e:
            return e.reason
        return "accepted"

    assert run(init)[1].value == "unknown_node"


# -- min_trust at the chokepoint ----------------------------------------------------------

REPORTS_HURT = "trust: {report_weight: 0.5, per_reporter_cap: 0.6, per_target_cap: 0.6}\n"


def test_a_low_trust_sender_is_refused_by_min_trust_on_send() -> None:
    async def sender(sys: Any, args: Any) -> Any:
        await sys.recv()  # "go": by then its trust is what the test made it
        await sys.send(sys.caps[0], args)

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        _, lcap = await sys.spawn(sender, args="from the low one", caps=[me])
        _, hcap = await sys.spawn(sender, args="from the trusted one", caps=[me])
        applied = await sys.report(lcap, "lied about a result", 1.0)
        scores = (await sys.trust(lcap), await sys.trust(hcap))
        await sys.send(lcap, "go")
        await sys.send(hcap, "go")
        got = (await sys.recv(timeout=100)).body
        return applied, scores, got, str(await sys.waitpid(lcap)), str(await sys.waitpid(hcap))

    pol = policy(REPORTS_HURT + "policies:\n  - {name: trusted-send, action: send, min_trust: 0.6}\n")
    k, res = run(init, pol)
    applied, scores, got, low_exit, high_exit = res.value
    assert applied == 0.5 and scores == (0.5, 1.0)
    assert got == "from the trusted one" and high_exit == "normal"
    assert low_exit.startswith("fault(TrustDenied") and "below rule trusted-send's min_trust 0.6" in low_exit


def test_target_min_trust_refuses_a_send_to_a_low_trust_process() -> None:
    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(idle)
        await sys.send(cap, "before")           # trusted: delivered
        await sys.report(cap, "leaks secrets", 1.0)
        try:
            await sys.send(cap, "after")
        except TrustDenied as e:
            return "refused", e.rule
        return "sent", None

    pol = policy(REPORTS_HURT + "policies:\n  - {name: to-trusted, action: send, target_min_trust: 0.7}\n")
    assert run(init, pol)[1].value == ("refused", "to-trusted")


def test_a_low_trust_caller_is_refused_by_min_trust_on_an_action() -> None:
    from agentos.drivers import KVDriver

    async def worker(sys: Any, args: Any) -> Any:
        await sys.recv()
        h = await sys.open("kv")
        try:
            await sys.write(h, {"op": "set", "key": "k", "value": 1})
        except TrustDenied as e:
            return e.rule
        return "written"

    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(worker, caps=["kv"])
        await sys.report(cap, "tampered with a file", 1.0)
        await sys.send(cap, "go")
        await sys.waitpid(cap)
        h = await sys.open("kv")
        await sys.write(h, {"op": "set", "key": "mine", "value": 2})  # init is trusted: allowed
        return "ok"

    pol = policy(REPORTS_HURT + "policies:\n  - {name: kv-open, action: kv.*}\n"
                 "  - {name: kv-trusted, action: kv.set, min_trust: 0.8}\n")
    k = Kernel(deterministic=True, policy=pol)
    k.register_driver(KVDriver())
    res = k.run(init, grant=["kv"])
    assert res.value == "ok"
    assert [e.data for e in k.events.events(kind="error")] == [("TrustDenied", "kv.set: the caller's trust 0.500 "
                                                                "is below rule kv-trusted's min_trust 0.8")]


# -- SIGTRUST -----------------------------------------------------------------------------

async def misbehave(sys: Any, args: Any) -> int:
    """Use capabilities it does not hold, again and again: refused capability use."""
    tries = 0
    for _ in range(args):
        tries += 1
        try:
            await sys.send(0xBAD, "x")
        except CapError:
            pass
    return tries


def test_kernel_evidence_alone_kills_with_sigtrust_and_exit_kind_trust() -> None:
    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(misbehave, args=1000)   # no policy file: the default weights
        return pid, await sys.waitpid(cap)

    k, res = run(init)
    pid, reason = res.value
    assert reason.kind is ExitKind.TRUST and reason.detail.startswith("score 0.180 below 0.2 after cap_refused")
    assert ("SIGTRUST", 0) in [e.data for e in k.events.events(pid=pid, kind="signal")]  # sent by the kernel
    assert len(k.events.events(pid=pid, kind="error")) == 41  # 1.0 - 41 * 0.02 < 0.2
    assert k.events.events(pid=pid, kind="trust_kill")[0].data["evidence"] == "cap_refused"


def test_messages_a_typed_pipe_refuses_lower_the_senders_trust_until_sigtrust() -> None:
    async def sender(sys: Any, args: Any) -> Any:
        pipe = sys.caps[0]
        await sys.send(pipe, 7)  # matches: no evidence
        for _ in range(args):
            try:
                await sys.send(pipe, "not an integer")
            except SchemaViolation:
                pass
        await sys.send(sys.caps[1], await sys.trust())

    async def init(sys: Any, args: Any) -> Any:
        pipe = await sys.pipe({"type": "integer"})
        _, cap = await sys.spawn(sender, args=args, caps=[pipe, await sys.self_cap()])
        exit_ = str(await sys.waitpid(cap))
        scores = []
        while (m := await sys.recv(timeout=0)) is not None:
            if m.body != 7:
                scores.append(m.body)
        return exit_, scores

    assert run(init, args=2)[1].value == ("normal", [0.96])  # 1.0 - 2 * 0.02 (the default weight)
    pol = policy("trust: {evidence: {failed_verification: 0.3}}\npolicies: []\n")
    k, res = run(init, pol, args=10)
    assert res.value == ("trust(score 0.100 below 0.2 after failed_verification)", [])
    assert len([e for e in k.events.events(kind="error") if e.data[0] == "SchemaViolation"]) == 3
    off = policy("trust: {evidence: {failed_verification: 0}}\npolicies: []\n")
    assert run(init, off, args=10)[1].value == ("normal", [1.0])


def test_sigtrust_cannot_be_masked() -> None:
    async def masker(sys: Any, args: Any) -> Any:
        try:
            await sys.sigmask(block=[Signal.SIGTRUST])
        except SyscallError as e:
            refused = str(e)
        await sys.sigmask(block=[s for s in Signal if s.maskable])
        await sys.send(sys.caps[0], refused)
        return await misbehave(sys, 100)

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(masker, caps=[await sys.self_cap()])
        said = (await sys.recv()).body
        return said, str(await sys.waitpid(cap))

    pol = policy("trust: {evidence: {cap_refused: 0.3}}\npolicies: []\n")
    said, exit_ = run(init, pol)[1].value
    assert said == "sigmask: SIGTRUST cannot be masked"
    assert exit_ == "trust(score 0.100 below 0.2 after cap_refused)"


def test_permissive_violations_are_evidence_and_the_killing_one_is_not_performed() -> None:
    async def chatty(sys: Any, args: Any) -> None:
        for i in range(5):
            await sys.send(sys.caps[0], i)

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(chatty, caps=[await sys.self_cap()])
        got = []
        while (m := await sys.recv(timeout=50)) is not None:
            got.append(m.body)
        return got, str(await sys.waitpid(cap))

    pol = PolicyEngine.from_text('kernel: {version: "1.0", mode: permissive}\n'
                                 "trust: {evidence: {policy_violation: 0.3}}\n"
                                 "policies:\n  - {name: quiet, action: send, effect: deny}\n")
    got, exit_ = run(init, pol)[1].value
    # init's own sends are violations too, but it sends none; the child's third is its last
    assert got == [0, 1] and exit_ == "trust(score 0.100 below 0.2 after policy_violation)"


def test_a_refusal_for_low_trust_is_not_new_evidence() -> None:
    async def child(sys: Any, args: Any) -> Any:
        await sys.recv()
        out = []
        for _ in range(5):
            try:
                await sys.send(sys.caps[0], "x")
            except TrustDenied:
                out.append(await sys.trust())
        assert out == [0.5] * 5
        return out

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(child, caps=[await sys.self_cap()])
        await sys.report(cap, "suspicious", 1.0)
        await sys.send(cap, "go")
        return str(await sys.waitpid(cap))

    pol = policy(REPORTS_HURT + "policies:\n  - {name: trusted-send, action: send, min_trust: 0.6}\n")
    k, res = run(init, pol)
    errors = [e.data[0] for e in k.events.events(kind="error")]
    # five refusals for low trust, and the score never moved from where the report put it
    assert errors == ["TrustDenied"] * 5 and not k.events.events(kind="trust_kill")
    assert res.value == "normal"


def test_quota_kills_of_children_count_against_the_parent() -> None:
    from agentos import Quota

    async def spender(sys: Any, args: Any) -> None:
        await sys.sleep(100)  # past its wall_ms quota: killed quota(wall_ms)

    async def parent(sys: Any, args: Any) -> Any:
        for _ in range(3):
            _, cap = await sys.spawn(spender, caps=["spawn"], quota=Quota(wall_ms=10))
            await sys.waitpid(cap)
        return await sys.trust()

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(parent, caps=["spawn"])
        return await sys.waitpid(cap)

    pol = policy("trust: {evidence: {child_quota_kill: 0.3}}\npolicies: []\n")
    k, res = run(init, pol)
    assert res.value.kind is ExitKind.TRUST


def test_ps_shows_the_trust_score() -> None:
    seen: list[Any] = []

    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(idle)
        await sys.report(cap, "noisy", 0.5)
        return pid

    k = Kernel(deterministic=True, policy=AllowAll(), event_batch=1)
    k.events.add_sink(lambda batch: seen.append({r["pid"]: r["trust"] for r in k.ps()}))
    res = k.run(init)
    assert any(row.get(res.value) == 0.975 for row in seen)  # 1.0 - 0.5 * 0.05 * 1.0


# -- reports: weighted, capped, never lethal ---------------------------------------------

async def reporter(sys: Any, args: Any) -> float:
    applied = await sys.report(sys.caps[0], "it lies", args["weight"])
    if args["depth"] > 0:
        for _ in range(args["fan"]):
            _, cap = await sys.spawn(reporter, args={**args, "depth": args["depth"] - 1},
                                     caps=[sys.caps[0], "spawn"])
            await sys.waitpid(cap)
    return applied


async def swarm_init(sys: Any, args: Any) -> Any:
    vpid, vcap = await sys.spawn(idle)
    for _ in range(args["lineages"]):
        _, acap = await sys.spawn(reporter, args=args, caps=[vcap, "spawn"])
        await sys.waitpid(acap)
    score = await sys.trust(vcap)
    await sys.send(vcap, "done")  # the victim is alive to take it, and exits normally
    return score, str(await sys.waitpid(vcap))


@settings(max_examples=8, deadline=None)
@given(lineages=st.integers(1, 4), fan=st.integers(1, 12), depth=st.integers(0, 2),
       weight=st.floats(0.01, 1.0), report_weight=st.floats(0.01, 1.0), per_reporter=st.floats(0.01, 1.0),
       per_target=st.floats(0.01, 1.0))
def test_report_flooding_by_a_swarm_of_children_never_reaches_the_kill_threshold(
        lineages: int, fan: int, depth: int, weight: float, report_weight: float, per_reporter: float,
        per_target: float) -> None:
    pol = policy(f"trust: {{report_weight: {report_weight!r}, per_reporter_cap: {per_reporter!r}, "
                 f"per_target_cap: {per_target!r}, kill_below: 0.2, report_floor: 0.3}}\npolicies: []\n")
    k, res = run(swarm_init, pol, args={"lineages": lineages, "fan": fan, "depth": depth, "weight": weight},
                 quota=None)
    score, exit_ = res.value
    assert exit_ == "normal" and not k.events.events(kind="trust_kill")
    assert score >= 0.3 > 0.2
    # each lineage (a child of init and its whole subtree) spends one reporter cap
    assert score >= 1.0 - min(per_target, lineages * per_reporter) - 1e-7  # scores are kept to 9 places


async def misbehave_around_reports(sys: Any, args: Any) -> Any:
    """Misbehave `args` times in all (kernel evidence, short of lethal): half before the
    swarm reports, the rest after, so a kill judged on reports too would show."""
    async def misbehave(times: int) -> None:
        for _ in range(times):
            try:
                await sys.send(0xBAD, "x")
            except CapError:
                pass

    await misbehave(args // 2)
    await sys.recv(match=lambda m: m.body == "reported")
    await misbehave(args - args // 2)
    return await sys.trust()


async def mixed_swarm_init(sys: Any, args: Any) -> Any:
    vpid, vcap = await sys.spawn(misbehave_around_reports, args=args["misbehave"])
    for i in range(args["siblings"]):  # direct children of init: each is a lineage of its own
        _, acap = await sys.spawn(reporter, args={"weight": 1.0, "depth": i % 2, "fan": args["fan"]},
                                  caps=[vcap, "spawn"])
        await sys.waitpid(acap)
    await sys.send(vcap, "reported")
    return str(await sys.waitpid(vcap))


@settings(max_examples=10, deadline=None)
@given(kill=st.floats(0.0, 0.8), gap=st.floats(0.001, 0.2), head=st.floats(0.0, 0.2), w=st.floats(0.01, 0.3),
       per_reporter=st.floats(0.01, 1.0), per_target=st.floats(0.01, 1.0), siblings=st.integers(1, 30),
       fan=st.integers(1, 4), margin=st.integers(1, 3))
def test_reports_on_top_of_near_lethal_kernel_evidence_never_kill_whatever_the_thresholds(
        kill: float, gap: float, head: float, w: float, per_reporter: float, per_target: float,
        siblings: int, fan: int, margin: int) -> None:
    kill, gap, head, w = (float(f"{x:.6f}") for x in (kill, gap, head, w))  # YAML reads 1e-05 as text
    floor = float(f"{min(1.0, kill + gap):.6f}")
    initial = float(f"{min(1.0, floor + head):.6f}")
    safe = max(0, int((initial - kill) / w) - margin)  # kernel evidence that stays above kill_below
    while safe and round(initial - safe * w, 9) < kill:
        safe -= 1
    pol = policy(f"trust: {{initial: {initial:.6f}, kill_below: {kill:.6f}, report_floor: {floor:.6f}, "
                 f"report_weight: 1.0, per_reporter_cap: {per_reporter:.6f}, per_target_cap: {per_target:.6f}, "
                 f"evidence: {{cap_refused: {w:.6f}}}}}\npolicies: []\n")
    k, res = run(mixed_swarm_init, pol, args={"misbehave": safe, "siblings": siblings, "fan": fan}, quota=None)
    assert res.value == "normal" and not k.events.events(kind="trust_kill"), res.value
    reports = k.events.events(kind="trust_report")
    assert reports and all(r.data[3] >= min(floor, round(initial - safe * w, 9)) - 1e-9 for r in reports)


def test_a_swarm_of_children_shares_its_parents_cap() -> None:
    pol = policy("trust: {report_weight: 1.0, per_reporter_cap: 0.1, per_target_cap: 0.7}\npolicies: []\n")
    _, res = run(swarm_init, pol, args={"lineages": 1, "fan": 30, "depth": 1, "weight": 1.0})
    assert res.value[0] == 0.9  # thirty-one reports, one cap


def test_hostile_report_arguments_are_typed_errors() -> None:
    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(idle)
        me = await sys.self_cap()
        out = []
        for c, ev, w in [(cap, "x", float("nan")), (cap, "x", float("inf")), (cap, "x", -1.0), (cap, "x", 0),
                         (cap, "x", 1.5), (cap, "x", True), (cap, "x", "1"), (cap, "x", 10 ** 400),
                         (cap, "x" * 50_000_000, 1.0), (cap, "bad \ud800", 1.0), (cap, "", 1.0),
                         (cap, b"bytes", 1.0), (cap, ["x"], 1.0), (me, "myself", 1.0), (0xBAD, "x", 1.0),
                         ([cap], "x", 1.0)]:
            try:
                await sys.report(c, ev, w)
                out.append("accepted")
            except (BadArgument, CapError) as e:
                out.append(type(e).__name__)
        out.append(await sys.trust(cap))
        return out

    _, res = run(init)
    assert res.value == ["BadArgument"] * 14 + ["CapError", "CapError", 1.0]


def test_a_report_needs_a_capability_to_the_target() -> None:
    async def stranger(sys: Any, args: Any) -> Any:
        try:
            await sys.report(args, "guessing a ref", 1.0)  # the parent's ref means nothing here
        except CapError:
            return "refused"
        return "accepted"

    async def init(sys: Any, args: Any) -> Any:
        vpid, vcap = await sys.spawn(idle)
        _, scap = await sys.spawn(stranger, args=vcap)
        return await sys.waitpid(scap), await sys.trust(vcap)

    k, res = run(init)
    assert res.value[1] == 1.0 and not k.events.events(kind="trust_report")
    assert [e.data[0] for e in k.events.events(kind="error")] == ["CapError"]


@pytest.mark.live_only(reason="a flight recorder commits on the wall clock; its kernels are not replayed")
def test_a_sigtrust_kill_is_a_flight_recorder_record() -> None:
    from agentos.audit import FlightRecorder, MemoryAuditBackend

    async def init(sys: Any, args: Any) -> Any:
        pid, cap = await sys.spawn(misbehave, args=1000)
        return pid, str(await sys.waitpid(cap))

    backend = MemoryAuditBackend()
    rec = FlightRecorder(backend, b"k" * 32, group_commit=False)
    k = Kernel(deterministic=True, policy=AllowAll(), audit=rec)
    pid, exit_ = k.run(init).value
    assert exit_.startswith("trust(")
    notes = [r for r in rec.records() if r.kind == "sigtrust"]
    assert len(notes) == 1 and notes[0].pid == pid and rec.verify().ok


def test_in_permissive_mode_a_low_score_is_logged_but_is_not_evidence() -> None:
    async def child(sys: Any, args: Any) -> Any:
        await sys.recv()
        for i in range(30):
            await sys.send(sys.caps[0], i)
        return await sys.trust()

    async def init(sys: Any, args: Any) -> Any:
        _, cap = await sys.spawn(child, caps=[await sys.self_cap()])
        await sys.report(cap, "suspicious", 1.0)
        await sys.send(cap, "go")
        return str(await sys.waitpid(cap))

    pol = PolicyEngine.from_text('kernel: {version: "1.0", mode: permissive}\n'
                                 "trust: {report_weight: 0.5, per_reporter_cap: 0.6, per_target_cap: 0.6, "
                                   "evidence: {policy_violation: 0.3}}\n"
                                 "policies:\n  - {name: trusted-send, action: send, min_trust: 0.6}\n")
    k, res = run(init, pol)
    assert res.value == "normal" and len(k.events.events(kind="policy_violation")) == 30


@pytest.mark.parametrize("field,bad", [("kill_below", 10 ** 400), ("kill_below", float("nan")), ("initial", -1.0),
                                       ("report_floor", 0.1), ("report_weight", True), ("evidence", [1])])
def test_a_tampered_trust_settings_journal_entry_is_not_read_not_a_crash(field: str, bad: Any) -> None:
    from agentos.services.trust import _settings_from, _settings_value
    from agentos.policy.loader import TrustSettings

    good = _settings_value(TrustSettings())
    assert _settings_from(good) == TrustSettings()
    assert _settings_from({**good, field: bad}) is None  # kill_below 0.2 >= report_floor 0.1: reports could kill


def test_pinning_a_key_for_this_kernels_own_node_is_refused_not_silently_ignored() -> None:
    k = Kernel(deterministic=True, policy=AllowAll())
    own = k.trust.node_name()
    with pytest.raises(BadArgument, match="this kernel's own node, and that is not its key"):
        k.trust.trust_node(own, b"y" * 32)
    k.trust.trust_node(own, k.trust.node_public_key())   # its own, as in a map of every node's key
    assert own not in k.trust.describe()["pinned_nodes"]
    k.trust.trust_node("other", b"y" * 32)
    assert k.trust.describe()["pinned_nodes"] == ["other"]
