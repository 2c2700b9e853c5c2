"""Verification figures: what cross-model verification costs beside a single model call,
and the precision and recall of each self-correction detector.

CMVK overhead: scripted chat devices answer at once, so the time is the kernel's and the
verifier's own (a carved job, one asker process per device, a `read_all` each, the
agreement measure, the failure events), never a model's. The ceiling is one plain
`sys.read` of one scripted device in the same run; the ratio says how many single calls
one verification of a panel of three costs. With MiniLM installed, the same with the
embedding measure (its cost is the embedder's forward pass on three answers).

Detectors: every rule is run over the labelled fixture
`tests/userland/fixtures/scak_answers.jsonl` (written for the tests, each row with its
label and the reason). Precision: of the answers a rule flags, how many are labelled bad.
Recall: of the answers labelled bad *in the rule's own category*, how many it flags.
The fixture was written alongside the rules, so these are figures on a small,
hand-written set, not on real traffic. With `--model`, the model-call laziness detector
is scored too, with the embedded model as the judge (about a minute and a half).
`python bench/bench_verify.py [--quick] [--model]`
"""
from __future__ import annotations

import ast
import gc
import json
import operator
import sys
import time
from pathlib import Path
from typing import Any, Callable

from agentos import AllowAll, Kernel, Quota
from agentos.drivers.scripted import ScriptedChat

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "userland" / "fixtures" / "scak_answers.jsonl"
ANSWERS = ["Paris is the capital of France.", "The capital of France is Paris.", "Lyon is the capital."]


def _cpu(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _kernel(n: int) -> Kernel:
    k = Kernel(deterministic=True, policy=AllowAll())
    for i, name in enumerate(("a", "b", "c")):
        text = ANSWERS[i]
        k.register_driver(ScriptedChat([lambda req, t=text: t] * n, name=name))
    return k


def single_calls(n: int) -> float:
    req = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 64}

    async def init(sys: Any, args: Any) -> None:
        h = await sys.open("a")
        for _ in range(n):
            await sys.read(h, req)

    k = _kernel(n)
    return _cpu(lambda: _ok(k.run(init, grant=["a", "b", "c"], quota=Quota(tokens=10**9))))


def verifications(n: int, measure: str) -> float:
    from agentos.userland.cmvk import CmvkOptions, verify

    opts = CmvkOptions(panel=("a", "b", "c"), measure=measure, threshold=0.6, max_tokens=64,
                       quota=Quota(tokens=5_000))

    async def init(sys: Any, args: Any) -> None:
        for _ in range(n):
            v = await verify(sys, "What is the capital of France?", opts)
            if len(v.answers) != 3 or not all(a.text for a in v.answers):
                raise RuntimeError(f"a verification went wrong: {v}")

    k = _kernel(n)
    return _cpu(lambda: _ok(k.run(init, grant=["a", "b", "c"], quota=Quota(tokens=10**9))))


def _ok(res: Any) -> None:
    if res.reason.kind.value != "normal":  # a figure from a failed run would be a lie
        raise RuntimeError(f"the benchmark's run ended {res.reason}")


def measure_only(n: int, measure: str) -> float:
    from agentos.userland.agreement import measure as get

    m = get(measure)
    return _cpu(lambda: [m.matrix(ANSWERS) for _ in range(n)])


def _pr(pred: list[bool], gold: list[bool]) -> tuple[float, float, int, int, int]:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0), tp, fp, fn


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def _calc(expr: str) -> Any:
    def ev(n: Any) -> Any:
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.BinOp):
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp):
            return _OPS[type(n.op)](ev(n.operand))
        raise ValueError(expr)
    return ev(ast.parse(expr, mode="eval"))


def detector_rows() -> list[dict[str, Any]]:
    from agentos.userland.hygiene import rule_negation_conflict
    from agentos.userland.scak import LAZINESS_RULES, AnswerContext, detect_laziness, rule_grounded

    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    lazy = [r for r in rows if r["detector"] == "laziness"]
    ctx = [AnswerContext(r["task"], tuple(r["tools"]), r["tool_calls"]) for r in lazy]
    bad = [r["label"] == "lazy" for r in lazy]
    out: list[dict[str, Any]] = []
    for name in LAZINESS_RULES:
        t0 = time.process_time()
        pred = [bool(detect_laziness(r["answer"], c, [name])) for r, c in zip(lazy, ctx)]
        dt = time.process_time() - t0
        p, _, tp, fp, _ = _pr(pred, bad)
        _, rc, _, _, fn = _pr(pred, [b and r["why"] == name.removeprefix("rule:") for b, r in zip(bad, lazy)])
        out.append({"name": f"scak.{name}", "value": f"P={p:.2f} R={rc:.2f}", "unit": "precision/recall",
                    "notes": f"a rule; {len(lazy)} answers ({sum(bad)} lazy); flagged {tp} lazy, {fp} ok; "
                             f"missed {fn} of its category; {len(lazy) / dt if dt else 0:,.0f} answers/s"})
    pred = [bool(detect_laziness(r["answer"], c)) for r, c in zip(lazy, ctx)]
    p, rc, tp, fp, fn = _pr(pred, bad)
    missed = [r["id"] for r, pr_, b in zip(lazy, pred, bad) if b and not pr_]
    out.append({"name": "scak.laziness(all rules)", "value": f"P={p:.2f} R={rc:.2f}", "unit": "precision/recall",
                "notes": f"any rule firing; missed {', '.join(missed) or 'none'}; false alarms {fp}"})
    audit = [r for r in rows if r["detector"] == "audit"]
    pred = []
    for r in audit:
        result = _calc(r["args"]["expr"]) if r["tool"] == "calc" else len(r["args"]["text"])
        pred.append(rule_grounded(r["answer"], result, r["tool"])[0] is False)
    p, rc, tp, fp, fn = _pr(pred, [r["label"] == "contradicted" for r in audit])
    out.append({"name": "scak.rule:grounded_number", "value": f"P={p:.2f} R={rc:.2f}", "unit": "precision/recall",
                "notes": f"a rule over a tool's result; {len(audit)} audited answers; tp {tp} fp {fp} fn {fn}"})
    hyg = [r for r in rows if r["detector"] == "hygiene"]
    pred = [rule_negation_conflict(r["lesson"], r["evidence"]) for r in hyg]
    p, rc, tp, fp, fn = _pr(pred, [r["label"] == "contradicts" for r in hyg])
    out.append({"name": "scak.rule:negation_conflict", "value": f"P={p:.2f} R={rc:.2f}", "unit": "precision/recall",
                "notes": f"a rule; {len(hyg)} lesson/evidence pairs; tp {tp} fp {fp} fn {fn}"})
    return out


def model_detector_rows() -> list[dict[str, Any]]:
    """`judge_laziness` with the embedded model (gemma3-270m) on every laziness row: one
    metered call each through a kernel. About 1.5 s a call on a shared 2-core machine."""
    try:
        from agentos.drivers.local import LocalDriver
    except ImportError as e:
        return [{"name": "scak.model:local(laziness)", "error": f"ImportError: {e}"}]
    from agentos.userland.scak import AnswerContext, judge_laziness
    from agentos.userland.structured import ModelOutputError

    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    lazy = [r for r in rows if r["detector"] == "laziness"]
    d = LocalDriver(name="judge", max_tokens=64)
    d.load()

    async def init(sys: Any, args: Any) -> list[Any]:
        out: list[Any] = []
        for r in lazy:
            try:
                f = await judge_laziness(sys, r["answer"], AnswerContext(r["task"], tuple(r["tools"]), r["tool_calls"]),
                                         device="judge")
                out.append(f is not None)
            except ModelOutputError:
                out.append(None)
        return out

    k = Kernel(policy=AllowAll())
    k.register_driver(d)
    t0 = time.perf_counter()
    try:
        res = k.run(init, grant=["judge"])
    finally:
        d.shutdown()
    wall = time.perf_counter() - t0
    _ok(res)
    got = res.value
    unparsed = sum(1 for g in got if g is None)
    p, rc, tp, fp, fn = _pr([bool(g) for g in got], [r["label"] == "lazy" for r in lazy])
    return [{"name": "scak.model:local(laziness)", "value": f"P={p:.2f} R={rc:.2f}", "unit": "precision/recall",
             "notes": f"a model call (gemma3-270m, JSON under a schema); {len(lazy)} answers, tp {tp} fp {fp} fn {fn}, "
                      f"{unparsed} replies did not parse (counted as not flagged); {wall / len(lazy):.2f} s a call"}]


def run(quick: bool = True) -> list[dict[str, Any]]:
    n = 100 if quick else 400
    rows: list[dict[str, Any]] = []
    base = min(single_calls(n * 3) for _ in range(2)) / (n * 3)
    for measure in ("lexical", "exact", "minilm"):
        try:
            if measure == "minilm":
                from agentos.userland.agreement import measure as get

                get("minilm")
            m = 10 if measure == "minilm" else n
            per = min(verifications(m, measure) for _ in range(2)) / m
            agree = measure_only(m, measure) / m
        except ImportError as e:
            rows.append({"name": f"cmvk.verify_3({measure})", "error": f"ImportError: {e}"})
            continue
        rows.append({"name": f"cmvk.verify_3({measure})", "ops_per_s": round(1 / per),
                     "ceiling_ops_per_s": round(1 / base), "ratio": round(base / per, 4), "unit": "verifications/s",
                     "notes": f"3 scripted panelists; ceiling: one plain sys.read of one scripted device; one "
                              f"verification = {per / base:.1f} single calls; the {measure} measure alone takes "
                              f"{agree * 1e6:,.0f} µs on 3 answers; the verification spawns a job and 3 askers, makes 3 reads, "
                              f"sends messages and writes events ({per * 1e6:,.0f} µs in all, CPU time)"})
    rows.extend(detector_rows())
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv) + (model_detector_rows() if "--model" in sys.argv else []):
        print(row)
