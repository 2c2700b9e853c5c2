"""Whatever process-supplied code raises (the body, on_cleanup hooks, recv match
predicates, pager and recaller callbacks), whatever its class (KeyboardInterrupt,
SystemExit, GeneratorExit, a BaseException subclass), it ends or affects only that process:
`kernel.run` returns and the other processes finish their work. SIGINT and SIGTERM sent to
the running kernel are a shutdown request, and the host's handlers come back afterwards."""
import os
import signal

import pytest

from agentos import Quota
from tests.support.boot import boot


class Weird(BaseException):
    pass


RAISES = {
    "keyboard_interrupt": KeyboardInterrupt,
    "system_exit": lambda: SystemExit(7),
    "generator_exit": GeneratorExit,
    "base_exception_subclass": Weird,
}


async def bystander(sys, args):
    total = 0
    for i in range(20):
        total += i
        await sys.sleep(1)
    return total


def _with_bystander(victim):
    async def init(sys, args):
        pid_b, cap_b = await sys.spawn(bystander, link=False)
        pid_v, cap_v = await sys.spawn(victim, link=False)
        rb = await sys.waitpid(cap_b)
        rv = await sys.waitpid(cap_v)
        return str(rb), str(rv)
    return init


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_body_raising_any_base_exception_faults_only_itself(kind):
    async def victim(sys, args):
        await sys.sleep(2)
        raise RAISES[kind]()

    k, res = boot(_with_bystander(victim))
    assert res.reason.kind.value == "normal", res.reason
    rb, rv = res.value
    assert rb == "normal"
    assert rv.startswith("fault")


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_cleanup_hook_raising_any_base_exception_is_contained(kind):
    async def victim(sys, args):
        def hook(reason):
            raise RAISES[kind]()
        await sys.on_cleanup(hook)
        await sys.sleep(2)
        return "done"

    k, res = boot(_with_bystander(victim))
    assert res.reason.kind.value == "normal", res.reason
    assert res.value == ("normal", "normal")
    assert any(e.kind == "cleanup_error" for e in k.events.events())


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_match_predicate_raising_any_base_exception_is_contained(kind):
    async def victim(sys, args):
        me = await sys.self_cap()

        def match(msg):
            raise RAISES[kind]()

        await sys.send(me, "ping")
        got = await sys.recv(match=match, timeout=5)
        return got

    k, res = boot(_with_bystander(victim))
    assert res.reason.kind.value == "normal", res.reason
    assert res.value[0] == "normal"


class RaisingPager:
    def victims(self, space, need):
        raise KeyboardInterrupt()

    def summarize(self, evicted):
        return None


class RaisingRecaller:
    def add(self, seg_id, body):
        pass

    def remove(self, seg_id):
        pass

    def search(self, query, k):
        raise SystemExit(1)


def test_pager_raising_keyboard_interrupt_faults_only_the_caller():
    async def victim(sys, args):
        for _ in range(10):
            await sys.remember("x" * 100)
        return "never"

    async def init(sys, args):
        pid_b, cap_b = await sys.spawn(bystander)
        pid_v, cap_v = await sys.spawn(victim, quota=Quota(mem=60))
        return str(await sys.waitpid(cap_b)), str(await sys.waitpid(cap_v))

    k, res = boot(init, pager=RaisingPager())
    assert res.reason.kind.value == "normal"
    assert res.value[0] == "normal" and res.value[1].startswith("fault")


def test_recaller_raising_system_exit_faults_only_the_caller():
    async def victim(sys, args):
        await sys.remember("hello")
        return await sys.recall("hello")

    k, res = boot(_with_bystander(victim), recaller=RaisingRecaller)
    assert res.reason.kind.value == "normal"
    assert res.value[0] == "normal" and res.value[1].startswith("fault")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_running_kernel_is_a_shutdown_request(sig):
    before = signal.getsignal(sig)

    async def init(sys, args):
        await sys.spawn(bystander)
        os.kill(os.getpid(), sig)
        await sys.sleep(5)
        await sys.sleep(10**6)
        return "not reached"

    k, res = boot(init)
    assert res.reason.kind.value == "shutdown", res.reason
    assert k.stop_requested == sig.name
    assert any(e.kind == "shutdown_request" for e in k.events.events())
    assert k.accounts.open_count == 0
    assert signal.getsignal(sig) is before
