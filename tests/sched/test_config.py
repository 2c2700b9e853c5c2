"""Scheduler settings from Python and from a policy file: hostile values are refused with
a typed error naming the field (and, from a file, the line); good ones reach the kernel."""
from __future__ import annotations

import math

import pytest

from agentos import AllowAll, Kernel
from agentos.abi.errors import KernelError
from agentos.policy.errors import PolicyLoadError
from agentos.policy.loader import parse_policy
from agentos.sched import Measure, SchedConfig, SchedConfigError

HOSTILE = [
    ("alpha", math.nan), ("alpha", math.inf), ("alpha", -0.5), ("alpha", "1"), ("alpha", True),
    ("threshold", 0.0), ("threshold", 1.5), ("threshold", math.nan),
    ("every_changes", -3), ("every_changes", 0), ("every_changes", 2.5), ("every_changes", True),
    ("every_ms", math.inf), ("every_ms", -1.0), ("every_ms", 0), ("every_ms", math.nan),
    ("half_life_ms", 0), ("half_life_ms", math.inf), ("subtree_cap", -1), ("subtree_cap", math.nan),
    ("bypass", 0), ("bypass", -1), ("bypass", 1.0), ("max_iter", 0), ("tol", 0.0), ("tol", math.nan),
    ("measure", "pagerank"), ("measure", 3), ("measure", "\ud800"), ("enabled", "yes"), ("enabled", 1),
]


@pytest.mark.parametrize("field,value", HOSTILE, ids=[f"{f}={v!r}" for f, v in HOSTILE])
def test_hostile_sched_settings_are_refused(field, value):
    with pytest.raises(SchedConfigError) as e:
        SchedConfig(**{field: value})
    assert f"sched.{field}" in str(e.value)
    assert isinstance(e.value, KernelError)
    with pytest.raises(SchedConfigError):  # and as a dict handed to the kernel
        Kernel(deterministic=True, sched={"enabled": True, field: value})


def test_unknown_sched_setting_and_wrong_type_are_refused():
    with pytest.raises(SchedConfigError, match="unknown sched setting"):
        Kernel(deterministic=True, sched={"enabled": True, "aplha": 1.0})
    with pytest.raises(SchedConfigError, match="must be a SchedConfig"):
        Kernel(deterministic=True, sched=[("enabled", True)])


def test_a_valid_config_round_trips_and_enables_the_graph():
    c = SchedConfig(enabled=True, measure="out_degree", alpha=2, every_changes=None, every_ms=50)
    assert c.measure is Measure.OUT_DEGREE and c.alpha == 2.0
    assert SchedConfig.from_dict(c.as_dict()) == c
    k = Kernel(deterministic=True, policy=AllowAll(), sched=c.as_dict())
    assert k.graph is not None and k.sched_config == c


POLICY = """kernel:
  version: "1.0"
  mode: strict
scheduling:
  measure: eigenvector
  alpha: {alpha}
  threshold: 0.7
  every_changes: {k}
  every_ms: {t}
policies: []
"""


def test_a_policy_files_scheduling_section_reaches_the_kernel():
    spec = parse_policy(POLICY.format(alpha=1.5, k=32, t="250ms"))
    assert spec.scheduling == SchedConfig(enabled=True, alpha=1.5, threshold=0.7, every_changes=32,
                                          every_ms=250.0)
    from agentos.policy.engine import PolicyEngine

    k = Kernel(deterministic=True, policy=PolicyEngine(spec))
    assert k.graph is not None and k.sched_config.alpha == 1.5
    # an explicit kernel setting wins over the file's
    k2 = Kernel(deterministic=True, policy=PolicyEngine(spec), sched=SchedConfig())
    assert k2.graph is None


@pytest.mark.parametrize("alpha,k,t,line,needle", [
    (".nan", 8, "1s", 6, "scheduling.alpha must be a finite number"),
    ("-1", 8, "1s", 6, "scheduling.alpha must be >= 0"),
    ("0.5", -3, "1s", 8, "scheduling.every_changes must be in 1.."),
    ("0.5", 8, ".inf", 9, "scheduling.every_ms must be a finite number"),
    ("0.5", 8, "forever", 9, "scheduling.every_ms"),
    ("0.5", "lots", "1s", 8, "scheduling.every_changes must be an integer"),
])
def test_hostile_scheduling_in_a_policy_file_is_a_load_error_with_its_line(alpha, k, t, line, needle):
    with pytest.raises(PolicyLoadError) as e:
        parse_policy(POLICY.format(alpha=alpha, k=k, t=t), path="security.yaml")
    assert e.value.line == line and needle in str(e.value)


def test_unknown_key_in_the_scheduling_section_names_its_line():
    text = POLICY.format(alpha=1, k=8, t="1s").replace("  threshold: 0.7\n", "  treshold: 0.7\n")
    with pytest.raises(PolicyLoadError) as e:
        parse_policy(text)
    assert e.value.line == 7 and "treshold" in str(e.value)


def test_scheduling_must_be_a_mapping():
    text = POLICY.split("scheduling:")[0] + "scheduling: [1, 2]\npolicies: []\n"
    with pytest.raises(PolicyLoadError, match="scheduling must be a mapping"):
        parse_policy(text)


class _HostileFloat(float):
    def __float__(self):
        raise RuntimeError("hostile __float__")


class _HostileInt(int):
    def __index__(self):
        raise RuntimeError("hostile __index__")

    def __le__(self, other):
        raise RuntimeError("hostile __le__")

    __ge__ = __lt__ = __gt__ = __le__


HUGE = [("alpha", 10**400), ("threshold", 10**400), ("every_ms", 10**400), ("half_life_ms", -10**400),
        ("subtree_cap", 10**400), ("tol", 10**400), ("every_changes", 10**400), ("bypass", -10**400),
        ("max_iter", 10**400)]


@pytest.mark.parametrize("field,value", HUGE, ids=[f for f, _ in HUGE])
def test_a_huge_int_in_a_sched_setting_is_a_typed_error_not_an_overflow(field, value):
    with pytest.raises(SchedConfigError) as e:
        SchedConfig(**{field: value})
    assert f"sched.{field}" in str(e.value) and len(str(e.value)) < 200


def test_int_and_float_subclasses_are_read_by_their_value_not_their_methods():
    c = SchedConfig(alpha=_HostileFloat(2.0), bypass=_HostileInt(3))
    assert (c.alpha, c.bypass) == (2.0, 3) and type(c.bypass) is int


def test_a_huge_int_in_a_policy_files_scheduling_section_is_a_load_error_with_its_line():
    for alpha, k, t, line, needle in (("1" + "0" * 400, 8, "1s", 6, "digits"),       # the reader's own bound
                                      ("1" + "0" * 23, 8, "1s", 6, "scheduling.alpha must be >= 0"),
                                      (1, "9" * 24, "1s", 8, "scheduling.every_changes must be in 1.."),
                                      (1, 8, "1" + "0" * 23, 9, "scheduling.every_ms must be")):
        with pytest.raises(PolicyLoadError) as e:
            parse_policy(POLICY.format(alpha=alpha, k=k, t=t), path="security.yaml")
        assert e.value.line == line and needle in str(e.value), str(e.value)


HIB_HOSTILE = [
    ("max_resident", 10**400), ("max_resident", 0), ("max_resident", -1), ("max_resident", True),
    ("max_resident", 2.0), ("max_resident", math.nan), ("max_mem_tokens", 10**400), ("max_mem_tokens", "5"),
    ("low_water", math.nan), ("low_water", math.inf), ("low_water", 0), ("low_water", -0.5),
    ("low_water", 10**400), ("low_water", True), ("low_water", "0.5"),
    ("idle", 1), ("idle", "yes"), ("idle", None), ("idle", 0.0),
    ("store", 5), ("store", {"hib/1": b""}),
]


@pytest.mark.parametrize("field,value", HIB_HOSTILE, ids=[f"{f}={v!r:.20}" for f, v in HIB_HOSTILE])
def test_hostile_hibernation_settings_are_a_typed_error_naming_the_field(field, value):
    from agentos.sched import HibernationConfig, HibernationConfigError

    with pytest.raises(HibernationConfigError) as e:
        HibernationConfig(**{field: value})
    assert f"hibernation.{field}" in str(e.value) and len(str(e.value)) < 200
    assert isinstance(e.value, SchedConfigError) and isinstance(e.value, KernelError)


def test_hibernation_settings_are_frozen_and_the_kernel_refuses_anything_else():
    from dataclasses import FrozenInstanceError

    from agentos.sched import HibernationConfig, HibernationConfigError

    c = HibernationConfig(max_resident=_HostileInt(4), low_water=1)
    assert (c.max_resident, c.low_water) == (4, 1.0) and type(c.max_resident) is int
    with pytest.raises(FrozenInstanceError):
        c.max_resident = 10**400  # type: ignore[misc]
    with pytest.raises(HibernationConfigError, match="must be a HibernationConfig"):
        Kernel(deterministic=True, hibernation={"max_resident": 4})


def test_a_settings_dict_with_hostile_keys_or_a_hostile_subclass_is_a_typed_error():
    class EvilKey(str):
        def __eq__(self, other):   # noqa: ARG002
            raise RuntimeError("hostile eq")

        __hash__ = str.__hash__

    class EvilDict(dict):
        def __iter__(self):
            raise RuntimeError("hostile iter")

        def keys(self):
            raise RuntimeError("hostile keys")

    with pytest.raises(SchedConfigError, match="name must be a string, got a EvilKey"):
        Kernel(sched={EvilKey("alpha"): 1})
    with pytest.raises(SchedConfigError, match="name must be a string, got a int"):
        SchedConfig.from_dict({1: 2})
    assert SchedConfig.from_dict(EvilDict(enabled=True, alpha=2)).alpha == 2.0   # read by its items


@pytest.mark.parametrize("idle_ms,shown", [(10**400, "an integer of 1329 bits"), (float("nan"), "nan"),
                                           (-1, "-1"), (True, "True"), ("5", "a str")],
                         ids=["huge", "nan", "negative", "bool", "str"])
def test_a_hostile_idle_ms_for_a_message_loop_is_a_typed_error(idle_ms, shown):
    from agentos.abi.errors import BadArgument
    from agentos.sched.loop import message_loop

    with pytest.raises(BadArgument, match=f"idle_ms must be a finite number of ms > 0, got {shown}"):
        message_loop(idle_ms=idle_ms)


@pytest.mark.parametrize("build", [
    lambda: SchedConfig(enabled=True, alfa=1),
    lambda: SchedConfig(True, "eigenvector", 0.5, 0.8, 256, 1000.0, 10_000.0, 8.0, 4, 200, 1e-6, "extra"),
    lambda: SchedConfig(True, enabled=False),
], ids=["unknown-keyword", "too-many-positional", "given-twice"])
def test_an_unknown_or_doubled_sched_setting_from_python_is_a_sched_config_error(build):
    with pytest.raises(SchedConfigError, match="sched"):
        build()


def test_an_unknown_hibernation_setting_is_a_hibernation_config_error():
    from agentos.sched import HibernationConfig
    from agentos.sched.hibernate import HibernationConfigError

    with pytest.raises(HibernationConfigError, match="unknown hibernation setting 'max_residents'"):
        HibernationConfig(max_residents=5)
    assert HibernationConfig(max_resident=5).max_resident == 5
