"""Trust figures: a trust-checked send beside a plain send, each beside its ceiling.

The body is bench_kernel's IPC round trip (send + recv both ways between two processes),
run on the bare trampoline (the ceiling) and on the kernel three ways:
  * plain: AllowAll, no rule names `send` (the send path pays one bool for policy);
  * send rule: a policy file whose allow rule names `send` without `min_trust` (the
    decision is a constant the engine caches; the kernel journals it);
  * min_trust: the same rule with `min_trust: 0.5`: every send asks the engine, which
    reads the sender's trust score from the trust service.
Ratios to the ceiling come from the same run; `vs_plain` is the trust-checked send's
throughput over the plain one's.
Also: the cost of an attestation (first, with key derivation; then cached keys) and of a
kernel-side verification (cold, then memoised).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import ceiling as bare
from bench_kernel import GC_MODES, _best, ipc_body

from agentos import AllowAll, Kernel

RULE = 'kernel: {version: "1.0", mode: strict}\npolicies:\n  - {name: s, action: send%s}\n'


def _policy(min_trust: bool) -> Any:
    from agentos.policy import PolicyEngine

    return PolicyEngine.from_text(RULE % (", min_trust: 0.5" if min_trust else ""), path="bench.yaml")


def _on_kernel(body: Callable[[int], Any], make_policy: Callable[[], Any]) -> Callable[[int], None]:
    def go(n: int) -> None:
        Kernel(deterministic=True, policy=make_policy()).run(body(n))
    return go


def _on_bare(body: Callable[[int], Any]) -> Callable[[int], None]:
    def go(n: int) -> None:
        bare.Bare().run(body(n))
    return go


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 4_000 if quick else 20_000
    reps = 2 if quick else 3
    rows: list[dict[str, Any]] = []
    plain_ops: dict[str, float] = {}
    for name, make, notes in (
            ("send_plain", AllowAll, "IPC round trips, AllowAll: no rule names send"),
            ("send_policy_rule", lambda: _policy(False), "a rule names send (constant decision, journaled)"),
            ("send_min_trust", lambda: _policy(True), "the rule has min_trust 0.5: a score read per send")):
        row: dict[str, Any] = {"name": name}
        for mode in GC_MODES:
            on = mode == "on"
            tk = tc = float("inf")
            for _ in range(reps):  # interleaved with the ceiling: both see the same machine weather
                tk = min(tk, _best(lambda: _on_kernel(ipc_body, make)(n), 1, on))
                tc = min(tc, _best(lambda: _on_bare(ipc_body)(n), 1, on))
            ops, cops = n / tk, n / tc
            sfx = "" if on else "_gc_off"
            row.update({f"ops_per_s{sfx}": round(ops), f"ceiling_ops_per_s{sfx}": round(cops),
                        f"ratio{sfx}": round(ops / cops, 3)})
            if name == "send_plain":
                plain_ops[sfx] = ops
            else:
                row[f"vs_plain{sfx}"] = round(ops / plain_ops[sfx], 3)
        if "ops_per_s" not in row:
            row.update(ops_per_s=row["ops_per_s_gc_off"], ceiling_ops_per_s=row["ceiling_ops_per_s_gc_off"],
                       ratio=row["ratio_gc_off"])
        extra = f"; vs plain {row.get('vs_plain')}" if "vs_plain" in row else ""
        row.update({"unit": "round trips/s", "n": n, "notes": notes + extra})
        rows.append(row)
    rows.extend(_attestation_rows(200 if quick else 2_000))
    return rows


def _attestation_rows(n: int) -> list[dict[str, Any]]:
    async def attest_many(sys: Any, args: Any) -> Any:
        t0 = time.perf_counter()
        att = await sys.attest()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):
            att = await sys.attest()
        again = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        await sys.verify(att)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):
            await sys.verify(att)
        memo = (time.perf_counter() - t0) / n
        return first, again, cold, memo

    k = Kernel(deterministic=True, policy=AllowAll())
    first, again, cold, memo = k.run(attest_many).value
    us = lambda s: round(s * 1e6, 1)  # noqa: E731
    return [{"name": "attest", "unit": "µs", "value": f"{us(first)} first / {us(again)} after",
             "notes": "sys.attest(): the first derives the process and node keys (HKDF + Ed25519); "
                      "later ones sign with the held key"},
            {"name": "verify_attestation", "unit": "µs", "value": f"{us(cold)} cold / {us(memo)} memoised",
             "notes": "sys.verify(): two Ed25519 verifications (node certificate, claims), then memoised"}]
