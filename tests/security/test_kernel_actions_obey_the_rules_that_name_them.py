"""Rules on spawn, send, signals and VFS operations are enforced where the action happens,
and only there: an action no rule names is left to capabilities and costs no policy work.
Spawning needs the spawn right. The `signals` list binds the signals processes send, never
the kernel's own enforcement."""
from __future__ import annotations

from typing import Any

import pytest

from agentos import Kernel, Quota
from agentos.abi.errors import CapError, PolicyDenied
from agentos.abi.types import ExitKind, Signal
from agentos.policy import PolicyEngine

HEAD = 'kernel: {version: "1.0", mode: %s}\n'


def policy(rules: str, mode: str = "strict", signals: str = "") -> PolicyEngine:
    return PolicyEngine.from_text(HEAD % mode + signals + "policies:\n" + rules, path="security.yaml")


async def idle(sys: Any, args: Any) -> None:
    await sys.recv()


async def quick(sys: Any, args: Any) -> str:
    return "child ran"


def run(init: Any, pol: Any = None, **kw: Any) -> Any:
    k = Kernel(deterministic=True, policy=pol)
    return k, k.run(init, **kw)


# -- spawn --------------------------------------------------------------------------------

def test_a_spawn_deny_is_enforced_not_just_answered() -> None:
    async def init(sys: Any, args: Any) -> Any:
        answer = (await sys.check_policy("spawn", {})).allowed
        await sys.spawn(quick)
        return answer
    k, res = run(init, policy("  - {name: no-spawn, action: spawn, effect: deny}\n"))
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-spawn"
    assert k.metrics()["spawned"] == 1          # only init: the child was never created


def test_spawn_constraints_are_checked_on_the_image_name() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(quick)
        first = str(await sys.waitpid(c))
        await sys.spawn(idle)
        return first
    pol = policy("  - {name: only-quick, action: spawn, constraints: {image: {enum: [quick]}}}\n")
    k, res = run(init, pol)
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "only-quick"
    assert k.metrics()["spawned"] == 2


def test_spawn_without_the_spawn_right_is_refused() -> None:
    async def grandchild_maker(sys: Any, args: Any) -> str:
        try:
            await sys.spawn(quick)
        except CapError as e:
            return str(e)
        return "spawned"

    async def init(sys: Any, args: Any) -> Any:
        _, a = await sys.spawn(grandchild_maker)             # not passed the right
        _, b = await sys.spawn(grandchild_maker, caps=["spawn"])
        return [str(await sys.waitpid(a)), str(await sys.waitpid(b))]
    k, res = run(init)
    assert res.reason.normal and res.value == ["normal", "normal"]
    logs = [e.data for e in k.events.events(kind="error")]
    assert any("spawn right" in str(d) for d in logs)
    assert k.metrics()["spawned"] == 4                      # init, two makers, one grandchild


def test_a_revoked_or_expired_spawn_right_stops_spawning() -> None:
    async def maker(sys: Any, args: Any) -> None:
        out = []
        for _ in range(3):
            try:
                await sys.spawn(quick)
                out.append("ok")
            except CapError:
                out.append("refused")
            await sys.sleep(60)
        await sys.send(sys.caps[1], out)

    async def boss(sys: Any, args: Any) -> None:   # holds the spawn right it was passed: sys.caps[0]
        me = await sys.self_cap()
        lent = await sys.attenuate(sys.caps[0], rights="spawn", expires_in=100)
        await sys.spawn(maker, caps=[lent, me])
        first = (await sys.recv()).body
        lent2 = await sys.derive(sys.caps[0], "spawn")
        await sys.spawn(maker, caps=[lent2, me])
        await sys.sleep(10)
        await sys.revoke(lent2)
        await sys.send(sys.caps[1], (first, (await sys.recv()).body))

    async def init(sys: Any, args: Any) -> Any:
        await sys.spawn(boss, caps=["spawn", await sys.self_cap()])
        return (await sys.recv()).body
    _, res = run(init)
    assert res.value == (["ok", "ok", "refused"], ["ok", "refused", "refused"])


def test_init_holds_the_spawn_right_and_nothing_forges_one() -> None:
    async def forger(sys: Any, args: Any) -> str:
        try:
            await sys.spawn(quick)
        except CapError:
            pass
        try:
            await sys.derive(args, "spawn")            # another process's ref means nothing here
        except CapError as e:
            return str(e)
        return "forged"

    async def holder(sys: Any, args: Any) -> Any:
        info = await sys.cap_info(sys.caps[0])
        _, c = await sys.spawn(forger, args=sys.caps[0])    # the raw ref, as data
        await sys.waitpid(c)
        await sys.send(sys.caps[1], info)

    async def init(sys: Any, args: Any) -> Any:
        await sys.spawn(holder, caps=["spawn", await sys.self_cap()])
        return (await sys.recv()).body
    k, res = run(init)
    assert res.reason.normal
    assert res.value["kind"] == "device" and res.value["target"] == "spawn" and res.value["rights"] == "spawn"
    assert k.metrics()["spawned"] == 3          # init, holder, forger: the forger spawned nothing


# -- send ----------------------------------------------------------------------------------

def test_a_send_rule_is_enforced_at_the_send() -> None:
    got: list[Any] = []

    async def sink(sys: Any, args: Any) -> None:
        got.append((await sys.recv()).body)

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(sink)
        await sys.send(c, "short")
        await sys.send(c, "x" * 1000)
    pol = policy("  - {name: small-messages, action: send, constraints: {body: {max_length: 100}}}\n")
    _, res = run(init, pol)
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "small-messages"
    assert got == ["short"]


class Counting:
    """A policy that counts what it is asked (AllowAll otherwise)."""

    def __init__(self, inner: PolicyEngine) -> None:
        self.inner = inner
        self.asked: list[str] = []
        self.governs_kernel = inner.governs_kernel

    def check(self, pid: int, action: str, args: Any, *, dry_run: bool = False) -> Any:
        self.asked.append(action)
        return self.inner.check(pid, action, args, dry_run=dry_run)


def test_with_no_rule_on_send_the_send_path_does_no_policy_work() -> None:
    async def echo(sys: Any, args: Any) -> None:
        for _ in range(50):
            m = await sys.recv()
            await sys.send(m.caps[0], m.body)

    async def init(sys: Any, args: Any) -> Any:
        me = await sys.self_cap()
        _, c = await sys.spawn(echo)
        for i in range(50):
            await sys.send(c, i, caps=[me])
            await sys.recv()
    counting = Counting(policy("  - {action: spawn}\n  - {action: \"*\"}\n"))
    k, res = run(init, counting)
    assert res.reason.normal
    assert counting.asked == ["spawn"]
    assert not k.police_send and [e for e in k.events.events(kind="policy") if e.data[0] == "send"] == []


# -- signals ------------------------------------------------------------------------------

def test_the_signals_list_binds_the_signals_processes_send() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(idle)
        await sys.term(c)              # SIGTERM is listed
        await sys.kill(c)              # SIGKILL is not: SIGPOLICY for the sender
    k, res = run(init, policy("  - {action: \"*\"}\n", signals="signals: [SIGTERM, SIGSTOP]\n"))
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "signals"
    sent = [e.data[0] for e in k.events.events(kind="signal")]
    assert sent[0] == "SIGTERM" and "SIGKILL" not in sent and sent[-1] == "SIGPOLICY"


def test_without_a_signals_list_signals_are_not_restricted() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(idle)
        await sys.kill(c)
        return str(await sys.waitpid(c))
    _, res = run(init, policy("  - {action: \"*\"}\n"))
    assert res.value.startswith("killed")


@pytest.mark.parametrize("kernel_kill, reason", [("quota", "quota(wall_ms)"), ("deadline", "deadline"),
                                                 ("policy", "policy(no-spawn-here)")])
def test_the_kernels_own_kills_are_never_subject_to_the_signals_list(kernel_kill: str, reason: str) -> None:
    async def victim(sys: Any, args: Any) -> None:
        if kernel_kill == "policy":
            await sys.spawn(quick)          # a rule denies it: the kernel sends SIGPOLICY
        await sys.sleep(10_000)

    async def init(sys: Any, args: Any) -> Any:
        opts: dict[str, Any] = {"quota": {"quota": Quota(wall_ms=50)}, "deadline": {"deadline": 50},
                                "policy": {"caps": ["spawn"]}}[kernel_kill]
        _, c = await sys.spawn(victim, **opts)
        return str(await sys.waitpid(c))
    rules = "  - {action: \"*\"}\n"
    rules += "  - {name: no-spawn-here, action: spawn, effect: deny, constraints: {image: {enum: [quick]}}}\n"
    # the list allows nothing: processes may send no signal at all, and the kernel still kills
    k, res = run(init, policy(rules, signals="signals: []\n"))
    assert res.reason.normal and res.value == reason


def test_a_kill_rule_governs_sigkill_only() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(idle)
        await sys.term(c)
        d = await sys.check_policy("signal.SIGKILL", {"signal": "SIGKILL"})
        await sys.kill(c)
        return d
    _, res = run(init, policy("  - {name: no-kill, action: kill, effect: deny}\n"))
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-kill"


# -- VFS ------------------------------------------------------------------------------------

def test_a_vfs_rule_is_enforced_on_the_operation_it_names() -> None:
    async def init(sys: Any, args: Any) -> Any:
        me = await sys.pid()
        await sys.vfs_write(f"/agent/{me}/mem/semantic/notes/a", "fine")
        got = await sys.vfs_read(f"/agent/{me}/mem/semantic/notes/a")
        await sys.vfs_write(f"/agent/{me}/mem/semantic/secrets/b", "no")
        return got
    pol = policy("  - name: no-secrets\n    action: vfs.write\n    effect: deny\n"
                 "    constraints: {path: {regex: \".*/secrets/.*\"}}\n")
    _, res = run(init, pol)
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "no-secrets"


def test_vfs_denies_fail_closed_on_normalised_paths() -> None:
    async def init(sys: Any, args: Any) -> Any:
        me = await sys.pid()
        await sys.vfs_write(f"/agent/{me}/mem/semantic/x/../secrets/./b", "no")
    pol = policy("  - name: no-secrets\n    action: vfs.write\n    effect: deny\n"
                 "    constraints: {path: {regex: \".*/secrets/.*\"}}\n")
    _, res = run(init, pol)
    assert res.reason.kind is ExitKind.POLICY


# -- consistency and load-time checks -------------------------------------------------------

@pytest.mark.parametrize("rules, action", [
    ("  - {action: spawn, effect: deny}\n", "spawn"),
    ("  - {action: send, effect: deny}\n", "send"),
    ("  - {action: kill, effect: deny}\n", "signal.SIGKILL"),
    ("  - {action: vfs.list, effect: deny}\n", "vfs.list"),
])
def test_check_policy_answers_what_the_kernel_enforces(rules: str, action: str) -> None:
    eng = policy(rules)
    assert not eng.check(1, action, {}).allowed
    assert eng.governs_kernel
    assert PolicyEngine.from_text(HEAD % "strict" + "policies: []\n").check(1, action, {}).allowed


def test_the_default_strict_kernel_says_yes_to_kernel_actions_and_no_to_the_world() -> None:
    async def init(sys: Any, args: Any) -> Any:
        return [(await sys.check_policy(a, {})).allowed for a in ("spawn", "send", "signal.SIGTERM", "tools.x")]
    _, res = run(init)
    assert res.value == [True, True, True, False]


@pytest.mark.parametrize("action", ["dial", "spawn_remote"])
def test_cross_node_actions_are_actions_on_the_world_every_kernel_asks_about(action: str) -> None:
    """A rule on one loads on any kernel (every kernel enforces it: tests/net/
    test_spawn_remote_policy.py), denies by its name, and with no rule strict denies it."""
    eng = policy(f"  - {{name: no-{action}, action: {action}, effect: deny}}\n")
    d = eng.check(1, action, {"node": "b"})
    assert not d.allowed and d.rule == f"no-{action}"
    assert not PolicyEngine.from_text(HEAD % "strict" + "policies: []\n").check(1, action, {"node": "b"}).allowed
    assert action not in eng.governs_kernel  # not a kernel action: asked every time, not only when named


def test_star_does_not_silently_govern_kernel_actions() -> None:
    eng = policy("  - {action: \"*\", effect: deny}\n")
    assert eng.governs_kernel == frozenset() and eng.check(1, "spawn", {}).allowed
    assert not eng.check(1, "tools.x", {}).allowed


def test_permissive_mode_logs_a_kernel_action_violation_and_lets_it_happen() -> None:
    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(quick)
        return str(await sys.waitpid(c))
    k, res = run(init, policy("  - {name: no-spawn, action: spawn, effect: deny}\n", mode="permissive"))
    assert res.value == "normal"
    assert [e.data[1] for e in k.events.events(kind="policy_violation")] == ["no-spawn"]


def test_a_spawn_needing_approval_waits_for_it() -> None:
    from agentos.policy import ApprovalChannel

    seen: list[str] = []

    def approve(r: Any) -> bool:
        seen.append(r.action)
        return r.args["image"] == "quick"

    async def init(sys: Any, args: Any) -> Any:
        _, c = await sys.spawn(quick)
        out = [str(await sys.waitpid(c))]
        try:
            await sys.spawn(idle)
        except PolicyDenied as e:
            out.append(e.rule)
        return out
    k = Kernel(deterministic=True, policy=policy("  - {name: gate, action: spawn, requires_approval: true}\n"),
               approvals=ApprovalChannel(approve))
    res = k.run(init)
    assert res.value == ["normal", "gate"] and seen == ["spawn", "spawn"]
    assert Signal.SIGKILL  # the module's signals stay importable for the cases above
