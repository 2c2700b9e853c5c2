"""A deny applies unless its constraints were evaluated and are false: NaN, a renamed or
missing argument, a wrong type or text that is not valid Unicode cannot get past one.
An allow applies only when every constraint evaluates true."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from agentos.abi.types import ExitKind

from ..policy.helpers import _clear_calls, calls, engine, make_kernel  # noqa: F401 (fixtures)

POLICY = """
kernel: {version: "1.0", mode: strict}
policies:
  - name: big-payments
    action: pay
    effect: deny
    constraints:
      amount: {min: 1000}
  - name: pay
    action: pay
  - name: no-etc
    action: file_write
    effect: deny
    constraints:
      path: {path_under: /etc}
  - name: writes
    action: file_write
  - name: no-admin
    action: calc
    effect: deny
    constraints:
      x: {enum: [0]}
  - {name: calc, action: calc}
  - name: no-drop
    action: sql
    effect: deny
    constraints:
      q: {regex: "(?i).*drop.*"}
  - {name: sql, action: sql}
"""


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), "5000", None, [5000], {"v": 5000}, True])
def test_payment_deny_cannot_be_dodged_by_unevaluable_amounts(amount: Any) -> None:
    d = engine(POLICY).check(1, "tools.pay", {"amount": amount, "to": "bob"})
    assert not d.allowed and d.rule == "big-payments"


@pytest.mark.parametrize("args", [{"amt": 5000}, {}, {"amount_": 5000}, {"AMOUNT": 5000}])
def test_payment_deny_cannot_be_dodged_by_renaming_or_dropping_the_argument(args: dict[str, Any]) -> None:
    d = engine(POLICY).check(1, "tools.pay", args)
    assert not d.allowed and d.rule == "big-payments"


def test_payment_deny_does_not_fire_when_the_amount_is_small() -> None:
    e = engine(POLICY)
    assert e.check(1, "tools.pay", {"amount": 5}).allowed
    assert not e.check(1, "tools.pay", {"amount": 1000}).allowed


@pytest.mark.parametrize("args", [{"file": "/etc/shadow"}, {"path": b"/etc/shadow"}, {"path": None},
                                  {"path": "/etc/\x00"}, {"path": ["/etc/shadow"]}, {"p": "/etc/shadow"}])
def test_path_deny_cannot_be_dodged_by_renaming_or_retyping_the_path(args: dict[str, Any]) -> None:
    d = engine(POLICY).check(1, "tools.file_write", args)
    assert not d.allowed and d.rule == "no-etc"


def test_path_deny_lets_other_paths_through() -> None:
    assert engine(POLICY).check(1, "tools.file_write", {"path": "/home/me/x"}).allowed


@pytest.mark.parametrize("x", [0.0, False, "0", None])
def test_enum_deny_cannot_be_dodged_by_a_lookalike_of_another_type(x: Any) -> None:
    d = engine(POLICY).check(1, "tools.calc", {"x": x})
    assert not d.allowed and d.rule == "no-admin"


def test_regex_deny_cannot_be_dodged_by_text_that_is_not_unicode() -> None:
    e = engine(POLICY)
    assert not e.check(1, "tools.sql", {"q": "\ud800 DROP TABLE t"}).allowed
    assert not e.check(1, "tools.sql", {"q": b"DROP TABLE t"}).allowed
    assert e.check(1, "tools.sql", {"q": "SELECT 1"}).allowed


@pytest.mark.parametrize("args", [None, "amount=5000", [("amount", 5000)], 5000])
def test_arguments_that_are_not_a_mapping_meet_the_deny(args: Any) -> None:
    assert not engine(POLICY).check(1, "tools.pay", args).allowed


def test_nan_payment_never_reaches_the_tool(calls) -> None:  # type: ignore[no-untyped-def]
    async def main(sys, args):  # type: ignore[no-untyped-def]
        h = await sys.open("tools")
        return await sys.read(h, {"tool": "pay", "args": {"amount": float("nan")}})
    res = make_kernel(POLICY).run(main, grant=["tools"])
    assert res.reason.kind is ExitKind.POLICY and res.reason.detail == "big-payments" and calls == []


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=2)))
def test_a_payment_is_allowed_only_when_the_amount_is_a_real_number_below_the_line(amount: Any) -> None:
    allowed = engine(POLICY).check(1, "tools.pay", {"amount": amount}).allowed
    fine = (isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount == amount
            and amount < 1000)
    assert allowed == fine
