"""The policy file's `trust:` section and rules' `min_trust`: validated at load, every bad
value a `PolicyLoadError` naming its line."""
from __future__ import annotations

import pytest

from agentos.policy import PolicyEngine, PolicyLoadError
from agentos.policy.loader import TrustSettings, parse_policy

HEAD = 'kernel: {version: "1.0", mode: strict}\n'


def test_the_trust_section_sets_weights_and_thresholds() -> None:
    spec = parse_policy(HEAD + "trust:\n  initial: 0.9\n  kill_below: 0.1\n  report_floor: 0.4\n"
                               "  evidence: {cap_refused: 0.5, policy_denial: 0}\npolicies: []\n")
    t = spec.trust
    assert (t.initial, t.kill_below, t.report_floor) == (0.9, 0.1, 0.4)
    assert t.weight_of("cap_refused") == 0.5 and t.weight_of("policy_denial") == 0.0
    assert t.weight_of("policy_violation") == TrustSettings().weight_of("policy_violation")
    assert PolicyEngine.from_text(HEAD + "policies: []\n").trust_settings == TrustSettings()


@pytest.mark.parametrize("body, line, words", [
    ("trust:\n  kill_below: .nan\n", 3, "trust.kill_below must be a number in [0, 1]"),
    ("trust:\n  initial: 1.5\n", 3, "trust.initial must be a number in [0, 1]"),
    ("trust:\n  per_target_cap: -0.1\n", 3, "trust.per_target_cap must be a number in [0, 1]"),
    ("trust:\n  report_weight: yes\n", 3, "trust.report_weight must be a number"),
    ("trust:\n  report_weight: '0.5'\n", 3, "trust.report_weight must be a number"),
    ("trust:\n  kill_below: 0.5\n  report_floor: 0.4\n", 4, "must be above trust.kill_below"),
    ("trust:\n  initial: 0.2\n  kill_below: 0.1\n  report_floor: 0.3\n", 3, "must be at least trust.report_floor"),
    ("trust:\n  kill_below: 0.1\n  typo: 1\n", 4, "unknown key 'typo' in trust"),
    ("trust:\n  evidence:\n    cap_refused: .inf\n", 4, "trust.evidence.cap_refused must be a number"),
    ("trust:\n  evidence:\n    lying: 0.5\n", 4, "unknown key 'lying' in trust.evidence"),
    ("trust: [1, 2]\n", 2, "trust must be a mapping"),
])
def test_a_bad_trust_section_is_a_load_error_naming_the_line(body: str, line: int, words: str) -> None:
    with pytest.raises(PolicyLoadError) as err:
        parse_policy(HEAD + body + "policies: []\n", path="security.yaml")
    assert any(e.line == line and words in str(e) for e in err.value.errors), [str(e) for e in err.value.errors]


@pytest.mark.parametrize("rule, words", [
    ("{action: send, min_trust: 2}", "min_trust must be a number in [0, 1]"),
    ("{action: send, min_trust: .nan}", "min_trust must be a number in [0, 1]"),
    ("{action: send, min_trust: true}", "min_trust must be a number in [0, 1]"),
    ("{action: kv.get, target_min_trust: 0.5}", "target_min_trust applies to send only"),
])
def test_a_bad_min_trust_is_a_load_error_naming_the_line(rule: str, words: str) -> None:
    with pytest.raises(PolicyLoadError) as err:
        parse_policy(HEAD + "policies:\n  - " + rule + "\n", path="security.yaml")
    assert any(e.line == 3 and words in str(e) for e in err.value.errors), [str(e) for e in err.value.errors]


def test_min_trust_fails_closed_without_a_kernel_to_ask() -> None:
    eng = PolicyEngine.from_text(HEAD + "policies:\n  - {name: t, action: kv.get, min_trust: 0.1}\n")
    d = eng.check(5, "kv.get", {"key": "k"})
    assert not d.allowed and d.effect == "raise" and "trust unknown is below rule t's min_trust 0.1" in d.reason


def test_a_deny_with_min_trust_only_denies_below_it() -> None:
    eng = PolicyEngine.from_text(HEAD + "policies:\n  - {name: open, action: kv.get}\n"
                                        "  - {name: low, action: kv.get, effect: deny, min_trust: 0.5}\n")
    scores = {5: 0.4, 6: 0.9}

    class Svc:
        def score(self, pid: int) -> float:
            return scores[pid]

    class K:
        trust = Svc()
        drivers: dict[str, object] = {}

    eng._kernel = K()  # type: ignore[assignment]
    assert not eng.check(5, "kv.get", {}).allowed
    assert eng.check(6, "kv.get", {}).allowed
