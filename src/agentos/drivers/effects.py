"""Effect classifiers: what a tool call does to the world, decided per call.

A tool declares `effect="read_only"`, `"read_write"`, or a classifier `fn(args) -> effect`;
policy's `mode: read_only` asks it. A classifier answers "unknown" whenever it is not
sure, and policy treats "unknown" as not read-only, so a classifier can only be too
strict, never too lenient by guessing.

`sql_effect` classifies one SQL statement (argument `query`, `sql` or `q`) by its
grammar: read-only only when it is a single `SELECT`, `WITH ... SELECT`, `VALUES` or
`EXPLAIN`-free query whose tokens (outside string literals, quoted identifiers and
comments) hold no keyword that writes, locks, or changes the session, and calls none
of the well-known functions with side effects. It does not know the database: a
user-defined function with side effects called from a SELECT is beyond it.
"""
from __future__ import annotations

import re
from typing import Any, Callable

EFFECTS = ("read_only", "read_write", "unknown")
MAX_SQL = 100_000

_READ_HEADS = frozenset({"select", "with", "values", "table"})
_WRITE_WORDS = frozenset({
    "insert", "update", "delete", "merge", "upsert", "replace", "create", "drop", "alter", "truncate",
    "rename", "grant", "revoke", "attach", "detach", "pragma", "vacuum", "reindex", "analyze", "copy",
    "call", "exec", "execute", "do", "into", "lock", "set", "reset", "begin", "commit", "rollback",
    "savepoint", "release", "prepare", "deallocate", "listen", "notify", "unlisten", "load", "import",
    "refresh", "cluster", "comment", "security", "owner", "returning", "handler", "install",
})
_SIDE_EFFECT_FUNCS = frozenset({
    "load_extension", "writefile", "edit", "nextval", "setval", "pg_terminate_backend", "pg_cancel_backend",
    "pg_reload_conf", "pg_rotate_logfile", "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "lo_import",
    "lo_export", "lo_unlink", "dblink", "dblink_exec", "pg_sleep", "sleep", "benchmark", "set_config",
    "pg_advisory_lock", "pg_advisory_xact_lock", "txid_current", "sys_exec", "sys_eval", "xp_cmdshell",
})
_WORD = re.compile(r"[^\W\d][\w$]*")


def _tokens(sql: str) -> list[str] | None:
    """Lower-cased words and the punctuation `;` `(` outside literals and comments; None if
    the text cannot be tokenised (an unclosed quote or comment)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in " \t\r\n\f\v":
            i += 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                return None
            i = j + 2
        elif c in "'\"`[":
            close = "]" if c == "[" else c
            j = i + 1
            while True:
                j = sql.find(close, j)
                if j < 0:
                    return None
                if close != "]" and sql.startswith(close * 2, j):  # doubled quote: an escaped one
                    j += 2
                    continue
                break
            out.append("'" if c == "'" else "ident")
            i = j + 1
        elif c == "$":  # PostgreSQL dollar quoting: $tag$ ... $tag$
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m:
                tag = m.group(0)
                j = sql.find(tag, i + len(tag))
                if j < 0:
                    return None
                out.append("'")
                i = j + len(tag)
            else:
                i += 1
        elif c.isalpha() or c == "_":
            m = _WORD.match(sql, i)
            assert m is not None
            out.append(m.group(0).lower())
            i = m.end()
        elif c == "\\":
            return None  # backslash escapes differ between databases: refuse to guess
        else:
            if c in ";(":
                out.append(c)
            i += 1
    return out


def classify_sql(sql: Any) -> str:
    """`read_only`, `read_write` or `unknown` for one SQL text."""
    if not isinstance(sql, str) or not sql.strip() or len(sql) > MAX_SQL or "\x00" in sql:
        return "unknown"
    toks = _tokens(sql)
    if toks is None:
        return "unknown"
    while toks and toks[-1] == ";":
        toks.pop()
    if not toks or ";" in toks:
        return "unknown"  # empty, or several statements
    words = [t for t in toks if t not in ("'", "ident", "(")]
    if not words or words[0] not in _READ_HEADS:
        return "read_write" if words and words[0] in _WRITE_WORDS else "unknown"
    for i, t in enumerate(toks):
        if t in _WRITE_WORDS:
            return "read_write"
        if t == "for" and i + 1 < len(toks) and toks[i + 1] in ("update", "share", "no", "key"):
            return "read_write"  # row locks
        if t in _SIDE_EFFECT_FUNCS and i + 1 < len(toks) and toks[i + 1] == "(":
            return "read_write"
    return "read_only"


def sql_effect(args: dict[str, Any]) -> str:
    """Classifier for a SQL tool: the statement is `query`, `sql` or `q`."""
    if not isinstance(args, dict):
        return "unknown"
    present = [k for k in ("query", "sql", "q") if k in args]
    if len(present) != 1:
        return "unknown"
    return classify_sql(args[present[0]])


CLASSIFIERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "sql": sql_effect,
    "read_only": lambda args: "read_only",
    "read_write": lambda args: "read_write",
}


__all__ = ["CLASSIFIERS", "EFFECTS", "classify_sql", "sql_effect"]
