"""A policy file is hostile input: no text can make the loader hang, crash, or raise
anything but a `PolicyLoadError` naming a line and the cause."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings, strategies as st

from agentos.policy import PolicyEngine, PolicyLoadError, parse_policy
from agentos.policy import yamlsafe

HEAD = 'kernel: {version: "1.0", mode: strict}\n'

ALIAS_BOMB = HEAD + """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
policies: [*h]
"""


def _refused(text: str | bytes, words: str, line: int | None = None) -> PolicyLoadError:
    t0 = time.perf_counter()
    with pytest.raises(PolicyLoadError) as ei:
        parse_policy(text, path="security.yaml")
    assert time.perf_counter() - t0 < 2.0, "the loader took too long"
    assert words in str(ei.value), str(ei.value)
    if line is not None:
        assert ei.value.line == line, str(ei.value)
    assert "security.yaml" in str(ei.value)
    return ei.value


def test_nine_line_alias_bomb_is_refused_by_the_expansion_bound() -> None:
    _refused(ALIAS_BOMB, "alias", line=None)


def test_recursive_alias_is_refused() -> None:
    _refused(HEAD + "policies: &p [*p]\n", "recursive", line=2)


def test_alias_without_anchor_is_refused() -> None:
    _refused(HEAD + "policies: [*nowhere]\n", "no anchor", line=2)


@pytest.mark.parametrize("opener, closer", [("[", "]"), ("{a: ", "}")])
def test_five_thousand_deep_nesting_is_refused(opener: str, closer: str) -> None:
    _refused(HEAD + "policies: " + opener * 5000 + closer * 5000 + "\n", "nesting deeper", line=2)


def test_deep_block_nesting_is_refused() -> None:
    body = "".join("  " * i + f"k{i}:\n" for i in range(200))
    _refused(HEAD + "guardrails:\n" + "\n".join("  " + ln for ln in body.splitlines()) + "\n", "nesting deeper")


def test_invalid_utf8_names_its_line() -> None:
    _refused(HEAD.encode() + b"policies: []\n# caf\xe9\n", "not UTF-8", line=3)


def test_lone_surrogate_in_text_is_refused() -> None:
    _refused(HEAD + "policies:\n  - action: \ud800\n", "surrogate", line=3)


def test_complex_list_key_is_refused() -> None:
    _refused(HEAD + "? [a, b]\n: 1\npolicies: []\n", "plain name", line=2)


def test_non_string_keys_are_refused() -> None:
    _refused(HEAD + "policies:\n  - action: calc\n    on: true\n", "quote it", line=4)


def test_python_object_tags_are_refused() -> None:
    _refused("kernel: !!python/object/apply:os.system ['true']\npolicies: []\n", "not valid YAML", line=1)


def test_fifty_megabyte_file_is_refused_before_parsing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "security.yaml"
    with p.open("wb") as f:
        f.write(HEAD.encode() + b"policies: []\n# " + b"x" * (50 << 20) + b"\n")
    t0 = time.perf_counter()
    with pytest.raises(PolicyLoadError, match="larger than"):
        PolicyEngine.load(p)
    assert time.perf_counter() - t0 < 2.0


def test_huge_scalar_is_refused() -> None:
    _refused(HEAD + "policies: []\nobservability: {audit_dir: '" + "a" * 200_000 + "'}\n", "characters", line=3)


def test_a_directory_is_not_a_policy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyLoadError, match="directory"):
        PolicyEngine.load(tmp_path)


def test_every_problem_is_listed_with_its_line_not_just_the_first() -> None:
    text = HEAD + ("policies:\n"
                   "  - action: calc\n    effect: permit\n"          # 3-4
                   "  - action: toolz.x\n"                            # 5
                   "  - action: calc\n    colour: red\n"              # 6-7
                   "  - action: calc\n    rate_limit: 5/fortnight\n"  # 8-9
                   "signals: [SIGNOPE]\n")                           # 10
    err = _refused(text, "effect must be allow or deny")
    assert [(e.line, e.cause.split(" ")[0]) for e in err.errors] == [
        (4, "effect"), (5, "unknown"), (7, "unknown"), (9, "rate_limit"), (10, "unknown")]
    assert "and 4 more errors" in str(err)


def test_a_missing_effect_is_an_allow_not_an_error_about_none() -> None:
    spec = parse_policy(HEAD + "policies:\n  - action: calc\n", path="s.yaml")
    assert spec.rules[0].effect == "allow"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!?|>'\"#%@` \n\tab01\\.") + ["\x00", "\ud800", "é"]),
               max_size=200))
def test_no_text_makes_the_loader_raise_anything_else(text: str) -> None:
    try:
        parse_policy(text, path="fuzz.yaml")
    except PolicyLoadError as e:
        assert str(e)
        for err in e.errors:
            assert err.line >= 0 and err.cause


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_no_bytes_make_the_loader_raise_anything_else(data: bytes) -> None:
    try:
        parse_policy(HEAD.encode() + data, path="fuzz.yaml")
    except PolicyLoadError:
        pass


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=30))
def test_any_yaml_shape_as_a_rule_is_a_load_error_or_a_rule(value: object) -> None:
    import yaml

    text = HEAD + yaml.safe_dump({"policies": [value]}, allow_unicode=False)
    try:
        parse_policy(text, path="shape.yaml")
    except PolicyLoadError:
        pass


def test_the_bounds_are_what_the_docs_say() -> None:
    assert yamlsafe.MAX_DEPTH == 64 and yamlsafe.MAX_BYTES == 1 << 20 and yamlsafe.MAX_NODES == 100_000
