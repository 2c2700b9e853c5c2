"""Bounded YAML for policy files: nothing in the text can make the parse hang or crash.

A policy file is read by operators' tools and sometimes written by other programs, so the
parser treats it as hostile input. Before any object is built the event stream is walked
once (PyYAML's parser is a state machine, not recursive) and the text is refused if it is
too large, nests too deep, holds too many nodes, or has aliases whose expansion would be
too large (the "billion laughs" bomb) or that refer to themselves. Only then are objects
built, with mappings that remember the line of each key and refuse duplicate and
non-string keys. Every problem is a `PolicyLoadError` naming a line of the file and the
cause; nothing else escapes, whatever the input (bad UTF-8, tags, dates, NUL bytes).
"""
from __future__ import annotations

from typing import Any

from .errors import PolicyLoadError

MAX_BYTES = 1 << 20          # a policy is a page of rules, not a data set
MAX_DEPTH = 64               # the policy schema nests at most five levels
MAX_NODES = 100_000          # after alias expansion
MAX_SCALAR = 64 * 1024       # one string
MAX_INT_DIGITS = 24          # wider than any count, size or amount a rule can mean


class LDict(dict):
    """A mapping that remembers its own line and the line of each key."""

    line = 0
    lines: dict[Any, int]


class LList(list):
    """A list that remembers its own line and the line of each item."""

    line = 0
    lines: list[int]


def decode(data: bytes | str, path: str = "") -> str:
    """Text of a policy file: UTF-8 (a BOM is allowed), bounded, with the bad byte's line on error."""
    if isinstance(data, str):
        if len(data) > MAX_BYTES:
            raise PolicyLoadError(f"the file is {len(data)} characters; a policy file is at most "
                                  f"{MAX_BYTES} bytes", 0, path)
        _no_surrogates(data, path)
        return data
    if len(data) > MAX_BYTES:
        raise PolicyLoadError(f"the file is {len(data)} bytes; a policy file is at most {MAX_BYTES}", 0, path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise PolicyLoadError(f"not UTF-8: byte 0x{data[e.start]:02x} at column {col} cannot be decoded",
                              line, path) from None
    return text[1:] if text.startswith("\ufeff") else text


def _no_surrogates(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        raise PolicyLoadError("the text holds a lone surrogate (not valid Unicode)", line, path) from None


def load(text: str, *, path: str = "", line_offset: int = 0) -> Any:
    """Parse `text` (YAML) into LDict/LList/scalars; lines are file lines (`line_offset` added)."""
    import yaml

    if len(text) > MAX_BYTES:
        raise PolicyLoadError(f"the YAML is {len(text)} characters; the limit is {MAX_BYTES}", 0, path)
    _no_surrogates(text, path)
    # padding with newlines makes every mark a line of the file, even through shared aliases
    body = "\n" * line_offset + text
    _prescan(body, path)
    loader = _loader_class()(body)
    try:
        return loader.get_single_data()
    except PolicyLoadError as e:
        raise PolicyLoadError(e.cause, e.line, path) from None
    except yaml.YAMLError as e:
        raise _yaml_error(e, path, body) from None
    except RecursionError:
        raise PolicyLoadError("the YAML nests too deeply", 0, path) from None
    except Exception as e:  # a constructor's own error (bad base64, ...): still the file's fault
        raise PolicyLoadError(f"not valid YAML: {type(e).__name__}: {e}", 0, path) from None
    finally:
        loader.dispose()


def _yaml_error(e: Any, path: str, body: str = "") -> PolicyLoadError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark is not None else 0
    pos = getattr(e, "position", None)   # a reader error (a control character): no mark, an offset
    if not line and isinstance(pos, int) and pos >= 0 and body:
        if _base().__name__.startswith("C"):   # libyaml counts bytes of the UTF-8 text
            line = body.encode("utf-8", "surrogatepass")[:pos].count(b"\n") + 1
        else:
            line = body[:pos].count("\n") + 1
    problem = getattr(e, "problem", None) or str(e).split("\n")[0]
    if "nesting depth" in str(problem):  # libyaml's own bound, met before ours
        return PolicyLoadError(f"nesting deeper than {MAX_DEPTH} levels", line, path)
    ctx = getattr(e, "context", None)
    return PolicyLoadError(f"not valid YAML: {problem}" + (f" ({ctx})" if ctx else ""), line, path)


def _prescan(body: str, path: str) -> None:
    """Walk the events once: depth, node count, alias expansion and self-reference."""
    import yaml
    from yaml import events as ev

    depth = 0
    total = 0
    sizes: dict[str, int] = {}
    open_: list[tuple[str | None, int]] = []   # (anchor, node count when the collection opened)
    try:
        for e in yaml.parse(body, Loader=_base()):
            line = e.start_mark.line + 1 if e.start_mark is not None else 0
            if isinstance(e, ev.AliasEvent):
                size = sizes.get(e.anchor)
                if size is None:
                    if any(a == e.anchor for a, _ in open_):
                        raise PolicyLoadError(f"alias *{e.anchor} refers to the node that contains it "
                                              f"(a recursive structure)", line, path)
                    raise PolicyLoadError(f"alias *{e.anchor} has no anchor before it", line, path)
                total += size
            elif isinstance(e, ev.ScalarEvent):
                total += 1
                if len(e.value) > MAX_SCALAR:
                    raise PolicyLoadError(f"a value of {len(e.value)} characters; the limit is {MAX_SCALAR}",
                                          line, path)
                if e.anchor is not None:
                    sizes[e.anchor] = 1
            elif isinstance(e, (ev.SequenceStartEvent, ev.MappingStartEvent)):
                depth += 1
                total += 1
                if depth > MAX_DEPTH:
                    raise PolicyLoadError(f"nesting deeper than {MAX_DEPTH} levels", line, path)
                open_.append((e.anchor, total - 1))
            elif isinstance(e, (ev.SequenceEndEvent, ev.MappingEndEvent)):
                depth -= 1
                anchor, start = open_.pop()
                if anchor is not None:
                    sizes[anchor] = total - start
            if total > MAX_NODES:
                raise PolicyLoadError(f"more than {MAX_NODES} YAML nodes once aliases are expanded "
                                      f"(an alias bomb?)", line, path)
    except yaml.YAMLError as e:
        raise _yaml_error(e, path, body) from None
    except RecursionError:
        raise PolicyLoadError("the YAML nests too deeply", 0, path) from None


_LOADER: Any = None


def _base() -> Any:
    """libyaml's parser when PyYAML was built with it (a 1 MB file parses in well under a
    second; the pure-Python one takes tens of seconds), else the pure-Python one."""
    import yaml

    return getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _loader_class() -> Any:
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Loader(_base()):  # type: ignore[misc]
        pass

    def mapping(loader: Any, node: Any) -> LDict:
        if not isinstance(node, yaml.MappingNode):
            raise PolicyLoadError("expected a mapping", node.start_mark.line + 1)
        m = LDict()
        m.line = node.start_mark.line + 1
        m.lines = {}
        for knode, vnode in node.value:
            kline = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                raise PolicyLoadError("a mapping key must be a plain name, not a list or mapping", kline)
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, str):
                raise PolicyLoadError(f"the key {knode.value!r} is read as a {type(key).__name__}, not a "
                                      f"name (quote it)", kline)
            if key in m:
                raise PolicyLoadError(f"duplicate key {key!r} (first at line {m.lines[key]})", kline)
            m[key] = loader.construct_object(vnode, deep=True)
            m.lines[key] = kline
        return m

    def sequence(loader: Any, node: Any) -> LList:
        s = LList(loader.construct_object(n, deep=True) for n in node.value)
        s.line = node.start_mark.line + 1
        s.lines = [n.start_mark.line + 1 for n in node.value]
        return s

    def as_text(loader: Any, node: Any) -> str:  # dates and times stay the text they were
        return str(loader.construct_scalar(node))

    def text(loader: Any, node: Any) -> str:
        # a YAML escape ("\\udc80") can make a lone surrogate the raw text did not hold
        v = str(loader.construct_scalar(node))
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise PolicyLoadError("a string holds a lone surrogate (not valid Unicode)",
                                  node.start_mark.line + 1) from None
        return v

    def integer(loader: Any, node: Any) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise PolicyLoadError(f"a number of {digits} digits; the limit is {MAX_INT_DIGITS}",
                                  node.start_mark.line + 1)
        return int(yaml.SafeLoader.construct_yaml_int(loader, node))

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    Loader.add_constructor("tag:yaml.org,2002:timestamp", as_text)
    Loader.add_constructor("tag:yaml.org,2002:str", text)
    Loader.add_constructor("tag:yaml.org,2002:int", integer)
    Loader.add_constructor("tag:yaml.org,2002:omap", sequence)
    Loader.add_constructor("tag:yaml.org,2002:pairs", sequence)
    Loader.add_constructor("tag:yaml.org,2002:set", mapping)
    _LOADER = Loader
    return Loader
