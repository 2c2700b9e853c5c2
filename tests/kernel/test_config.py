"""A careless operator's configuration is refused at construction, naming the option: a
kernel never boots with a setting it cannot run with (a zero switch batch that never lets
the loop turn, a NaN quantum that never preempts, a string where the ring size goes)."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from agentos import Kernel, KernelConfig
from agentos.abi.errors import KernelError

BAD = [
    ("quantum", 0), ("quantum", -1), ("quantum", float("nan")), ("quantum", 2.5), ("quantum", True),
    ("quantum", 10**12), ("default_priority", 99), ("default_priority", -1), ("default_priority", "5"),
    ("event_ring", "x"), ("event_ring", -1), ("event_ring", float("inf")), ("event_batch", 0),
    ("switch_batch", 0), ("switch_batch", None), ("seed", "abc"), ("seed", 2**300), ("seed", 1.5),
    ("deterministic", 1), ("record", "yes"), ("message_events", None), ("gc", "off"), ("gc", 0),
    ("clock", 5), ("clock", "virtual"),
]


@pytest.mark.parametrize("option,value", BAD, ids=[f"{o}={v!r}" for o, v in BAD])
def test_a_bad_option_is_a_kernel_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(KernelError, match=f"^{option} must be"):
        Kernel(**{option: value})
    with pytest.raises(KernelError, match=f"^{option} must be"):
        Kernel(KernelConfig(**{option: value}))


def test_the_edges_of_each_range_are_accepted() -> None:
    async def init(sys: Any, args: Any) -> int:
        return 7

    for kw in ({"quantum": 1}, {"default_priority": 0}, {"default_priority": 9}, {"event_ring": 0},
               {"event_batch": 1}, {"switch_batch": 1}, {"seed": 2**128}, {"seed": -5}, {"gc": None}):
        assert Kernel(deterministic=True, **kw).run(init).value == 7, kw


RANGES = {"quantum": (1, 10**9), "default_priority": (0, 9), "event_ring": (0, 2**31), "event_batch": (1, 2**24),
          "switch_batch": (1, 2**31), "seed": (-2**256, 2**256)}


@given(st.sampled_from(sorted(RANGES)),
       st.integers() | st.integers(-2**300, 2**300) | st.floats() | st.text(max_size=3) | st.none() | st.booleans()
       | st.lists(st.integers(), max_size=2))
def test_each_integer_option_is_an_int_in_its_range_or_refused_naming_it(option: str, value: Any) -> None:
    lo, hi = RANGES[option]
    ok = type(value) is int and lo <= value <= hi
    try:
        Kernel(**{option: value})
    except KernelError as e:
        assert not ok and str(e).startswith(f"{option} must be") and len(str(e)) < 200
    else:
        assert ok


PARTS = [("policy", 5), ("policy", object()), ("audit", 5), ("audit", "recorder"), ("approvals", 5),
         ("pager", 5), ("recaller", 5), ("journal", 5), ("journal", []), ("extensions", 5),
         ("extensions", {"vfs": 5}), ("extensions", {1: lambda k: None})]


@pytest.mark.parametrize("option,value", PARTS, ids=[f"{o}={type(v).__name__}" for o, v in PARTS])
def test_a_part_without_the_calls_the_kernel_makes_is_refused_at_construction(option: str, value: Any) -> None:
    # not accepted, to fault the first action as a "kernel bug" later
    with pytest.raises(KernelError, match=f"^{option} must be"):
        Kernel(**{option: value})


def test_overrides_never_change_the_callers_config() -> None:
    cfg = KernelConfig(quantum=100)
    with pytest.raises(KernelError):
        Kernel(cfg, quantum=0)
    assert cfg.quantum == 100
    k = Kernel(cfg, seed=9)
    assert cfg.seed == 0 and k.config.seed == 9 and k.config.quantum == 100


@pytest.mark.parametrize("config", [5, {"quantum": 3}, "live"])
def test_a_config_that_is_not_a_kernel_config_is_refused(config: Any) -> None:
    with pytest.raises(KernelError, match="KernelConfig"):
        Kernel(config)


def test_a_private_attribute_is_not_an_option() -> None:
    with pytest.raises(KernelError, match="unknown kernel option '__class__'"):
        Kernel(__class__=int)


@pytest.mark.parametrize("driver", [None, object(), 5, "kv"])
def test_register_driver_refuses_what_is_not_a_driver(driver: Any) -> None:
    with pytest.raises(KernelError, match="register_driver takes a Driver instance"):
        Kernel().register_driver(driver)


def test_register_driver_refuses_the_class_instead_of_an_instance() -> None:
    from agentos.drivers.kv import KVDriver

    with pytest.raises(KernelError, match="the class KVDriver"):
        Kernel().register_driver(KVDriver)  # type: ignore[arg-type]


@pytest.mark.parametrize("grant", [5, None, "kv", b"kv", [["kv"]], [5], [None]])
def test_a_grant_that_is_not_a_list_of_device_names_is_refused(grant: Any) -> None:
    async def init(sys: Any, args: Any) -> None:
        return None

    with pytest.raises(KernelError, match="grant must be a list of device names"):
        Kernel(deterministic=True).run(init, grant=grant)
