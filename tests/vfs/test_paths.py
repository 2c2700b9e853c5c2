"""Path normalisation: properties and the escape rule."""
from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, strategies as st

from agentos.vfs.errors import BadPath, EscapeError
from agentos.vfs.paths import join, split

NONE = lambda parts: False  # noqa: E731
names = st.sampled_from(["a", "b", ".", "..", "", "agent", "7", "x y"])


@given(st.lists(names, max_size=12))
def test_split_agrees_with_posix_normpath_when_it_does_not_escape(parts):
    path = "/" + "/".join(parts)
    try:
        out = split(path, NONE)
    except EscapeError:
        # it only refuses when a `..` would climb above the root
        depth = 0
        for p in parts:
            if p == "..":
                depth -= 1
                if depth < 0:
                    return
            elif p not in ("", "."):
                depth += 1
        raise AssertionError(f"refused {path!r} without climbing above /")
    assert join(out) == posixpath.normpath("/" + path.lstrip("/"))
    assert ".." not in out and "." not in out and "" not in out


@given(st.lists(names, max_size=12))
def test_nothing_leaves_a_boundary(parts):
    bound = ("agent", "7")
    is_b = lambda p: p == bound  # noqa: E731
    try:
        out = split("/agent/7/" + "/".join(parts), is_b)
    except EscapeError:
        return
    assert out[:2] == bound


@pytest.mark.parametrize("bad", ["relative/path", "", "/a\x00b", "/" + "x" * 5000, "/" + "n" * 300, 42, None, b"/a"])
def test_malformed_paths_are_bad_path(bad):
    with pytest.raises(BadPath):
        split(bad, NONE)


def test_dotdot_above_root_is_an_escape():
    with pytest.raises(EscapeError, match="climbs out of /"):
        split("/..", NONE)
