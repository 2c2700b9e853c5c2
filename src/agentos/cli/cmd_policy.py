"""`agentctl policy validate|test|run` (the flight-recorder commands are in cmd_audit.py).

Exit codes: 0 valid / every case passed / the run ended normally; 1 an invalid policy,
a failed case, or a run that ended otherwise; 2 bad input (a cases file, an option, a
program that does not load). Every error is one line on stderr (`validate` prints one
line per problem in the policy); no command prints a traceback, whatever its input.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])
EXPECTS = ("allow", "deny", "approve", "log")
CASE_KEYS = {"action", "args", "expect", "rule", "pid", "name", "effect"}


def _guard(fn: F) -> F:
    """No traceback reaches the terminal: an unexpected error is one line and exit 2."""
    @functools.wraps(fn)
    def run(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            raise
        except RecursionError:
            _fail("error: the input nests too deeply", 2)
        except Exception as e:  # noqa: BLE001 - the promise is: one line, never a traceback
            _fail(f"error: {type(e).__name__}: {_clip(str(e))}", 2)
    return run  # type: ignore[return-value]


def _fail(msg: str, code: int) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(code)


def _clip(s: str, n: int = 500) -> str:
    s = s.replace("\n", " ").encode("utf-8", "backslashreplace").decode("utf-8")
    return s if len(s) <= n else s[:n] + "..."


def _names(spec: Optional[str]) -> list[str] | None:
    return None if spec is None else [t.strip() for t in spec.split(",") if t.strip()]


def _invalid(e: Any) -> None:
    """Every problem of a policy, one per line; exit 1."""
    for err in e.errors:
        typer.echo(f"invalid: {_clip(err.one_line())}", err=True)
    raise typer.Exit(1)


def _load(file: Path, tools: Optional[str], drivers: Optional[str], resolver: Any = None) -> Any:
    from ..policy.engine import PolicyEngine
    from ..policy.errors import PolicyLoadError

    try:
        eng = PolicyEngine.load(file, known_tools=_names(tools), families=_names(drivers) or ())
    except PolicyLoadError as e:
        _invalid(e)
    if resolver is not None:
        eng.set_tool_resolver(resolver)
    return eng


def _load_cases(path: Path) -> list[dict[str, Any]]:
    """The cases, numbered from 1 as the table shows them; a bad file is exit 2, one line."""
    from ..policy import yamlsafe
    from ..policy.errors import PolicyLoadError
    from ..policy.loader import extract_yaml, read_policy_text

    try:
        text = yamlsafe.decode(read_policy_text(path), str(path))
        body, offset = extract_yaml(text, str(path))
        doc = yamlsafe.load(body, path=str(path), line_offset=offset)
    except PolicyLoadError as e:
        _fail(f"bad cases file: {_clip(e.one_line())}", 2)
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        _fail(f"bad cases file: {path}: expected a list of cases (or cases: [...])", 2)
        return []
    for i, c in enumerate(cases, 1):
        line = cases.lines[i - 1] if hasattr(cases, "lines") else 0
        where = f"{path}:{line}: case {i}" if line else f"{path}: case {i}"
        if not isinstance(c, dict) or "action" not in c or "expect" not in c:
            _fail(f"bad cases file: {where} needs action and expect (args optional)", 2)
        unknown = sorted(set(c) - CASE_KEYS)
        if unknown:
            _fail(f"bad cases file: {where}: unknown keys {unknown} (allowed: {', '.join(sorted(CASE_KEYS))})", 2)
        if not isinstance(c["action"], str) or not c["action"]:
            _fail(f"bad cases file: {where}: action must be a name", 2)
        if c["action"] == "signal":
            _fail(f"bad cases file: {where}: name the signal, e.g. signal.SIGTERM (or kill)", 2)
        if c["expect"] not in EXPECTS:
            _fail(f"bad cases file: {where}: expect is {', '.join(EXPECTS)}, got {c['expect']!r:.40}", 2)
        if c.get("args") is not None and not isinstance(c["args"], dict):
            _fail(f"bad cases file: {where}: args must be a mapping of argument names to values", 2)
        pid = c.get("pid", 1)
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2 ** 62:
            _fail(f"bad cases file: {where}: pid must be a positive integer", 2)
        if "rule" in c and not isinstance(c["rule"], str):
            _fail(f"bad cases file: {where}: rule must be a rule name", 2)
    return cases


def _classifier(spec: str) -> Callable[[dict[str, Any]], str]:
    """`sql`, `read_only`, `read_write`, or `module:function` (your own classifier)."""
    from ..drivers.effects import CLASSIFIERS

    if spec in CLASSIFIERS:
        return CLASSIFIERS[spec]
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        _fail(f"error: --effect classifier {spec!r}: use one of {', '.join(CLASSIFIERS)} or module:function", 2)
    import importlib

    try:
        fn = getattr(importlib.import_module(mod), attr)
    except Exception as e:  # noqa: BLE001 - user code: whatever it raises is a bad option
        _fail(f"error: --effect classifier {spec!r} cannot be imported: {type(e).__name__}: {_clip(str(e))}", 2)
    if not callable(fn):
        _fail(f"error: --effect classifier {spec!r} is not callable", 2)
    return fn


def _resolver(effects: list[str] | None) -> Any:
    """Tool lookups for `policy test`: `TOOL=CLASSIFIER` or `driver.TOOL=CLASSIFIER`."""
    if not effects:
        return None
    from ..drivers.tools import ServedTool

    table: dict[str, ServedTool] = {}
    for item in effects:
        tool, sep, spec = item.partition("=")
        tool, spec = tool.strip(), spec.strip()
        if not sep or not tool or not spec:
            _fail(f"error: --effect {item!r}: expected TOOL=CLASSIFIER (e.g. query=sql)", 2)
        key = tool if "." in tool else f"tools.{tool}"
        table[key] = ServedTool(key.split(".", 1)[1], None, _classifier(spec))
    return table.get


def _stop_drivers(k: Any) -> None:
    """Stop what loading may have started (an MCP server listed to check the rules)."""
    for drv in k.drivers.values():
        stop = getattr(drv, "shutdown", None)
        if callable(stop):
            try:
                stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def _outcome(d: Any) -> str:
    if d.allowed:
        return "log" if d.effect == "log" else "allow"
    return "approve" if d.effect == "approve" else "deny"


def register(app: typer.Typer) -> None:
    policy_app = typer.Typer(help="Check policy files (.agents/security.md) and what they decide.",
                             no_args_is_help=True)
    app.add_typer(policy_app, name="policy")
    register_run(policy_app)

    @policy_app.command("validate")
    @_guard
    def validate(file: Path = typer.Argument(..., help="policy file (.md with a yaml block, or .yaml)"),
                 tools: Optional[str] = typer.Option(None, help="comma-separated tool names the kernel has; "
                                                                  "unknown tools in rules become errors"),
                 drivers: Optional[str] = typer.Option(None, help="comma-separated names drivers are registered "
                                                                    "under (e.g. an MCP server as `github`)")) -> None:
        """Load a policy strictly; print what it holds, or every error, one per line with its line (exit 1)."""
        eng = _load(file, tools, drivers)
        d = eng.describe()
        onto = d["ontology"]
        extra = f", ontology: {onto['classes']} classes ({onto['reasoner']})" if onto else ""
        sig = "" if d["signals"] is None else f", signals {','.join(d['signals']) or 'none'}"
        kern = f", kernel actions named: {','.join(d['governs_kernel'])}" if d["governs_kernel"] else ""
        typer.echo(f"valid: {file}: mode {d['mode']}, {d['rules']} rule(s){sig}{kern}{extra}")

    @policy_app.command("test")
    @_guard
    def test(file: Path = typer.Argument(..., help="policy file"),
             cases: Path = typer.Argument(..., help="YAML list of {action, args, expect: allow|deny|approve|log, rule?}"),
             tools: Optional[str] = typer.Option(None, help="comma-separated known tool names"),
             drivers: Optional[str] = typer.Option(None, help="comma-separated extra driver names"),
             effect: Optional[list[str]] = typer.Option(
                 None, "--effect", help="a tool's effect classifier, TOOL=CLASSIFIER (repeatable): sql, "
                                        "read_only, read_write or module:function; lets mode: read_only "
                                        "rules be tested, e.g. --effect query=sql")) -> None:
        """Run decision cases against a policy (dry run: no rate-limit slot is taken)."""
        from rich.console import Console
        from rich.table import Table

        from .render import untrusted as escape  # markup escaped, control characters shown

        resolver = _resolver(effect)
        eng = _load(file, tools, drivers, resolver)
        items = _load_cases(cases)
        table = Table(title=f"policy test: {escape(str(file))}")
        for col in ("#", "action", "expect", "got", "rule", "result"):
            table.add_column(col)
        failed: list[int] = []
        for i, c in enumerate(items, 1):
            action = c["action"]
            if action == "kill":
                action = "signal.SIGKILL"
            elif "." not in action and action not in ("spawn", "send"):
                action = f"tools.{action}"  # a bare tool name, as in rules
            d = eng.check(int(c.get("pid", 1)), action, c.get("args") or {}, dry_run=True)
            got = _outcome(d)
            ok = got == c["expect"] and ("rule" not in c or c["rule"] == d.rule)
            if not ok:
                failed.append(i)
            table.add_row(str(i), escape(_clip(action, 80)), c["expect"] + (f" ({escape(c['rule'])})" if "rule" in c else ""),
                          got, escape(d.rule), "ok" if ok else escape(f"FAIL: {_clip(d.reason, 200)}"))
        Console().print(table)
        if failed:
            typer.echo(f"{len(failed)} case(s) failed: #{', #'.join(map(str, failed))}", err=True)
            raise typer.Exit(1)


def register_run(policy_app: typer.Typer) -> None:
    @policy_app.command("run")
    @_guard
    def run(policy_file: Path = typer.Argument(..., help="policy file (.agents/security.md)"),
            program: Path = typer.Argument(..., help="a Python file defining `async def init(sys, args)`"),
            approve: str = typer.Option("prompt", help="who answers approvals: prompt (ask here), http "
                                                       "(loopback endpoint, token printed), deny"),
            timeout: float = typer.Option(60.0, help="seconds an approval may wait before it is denied"),
            audit_dir: Optional[Path] = typer.Option(None, help="flight recorder directory (default: the "
                                                                 "policy's observability.audit_dir, "
                                                                 "else $AGENTOS_HOME/audit)"),
            durability: Optional[str] = typer.Option(None, help="fsync or os (default: the policy's "
                                                                 "observability.durability, else fsync)")) -> None:
        """Run PROGRAM under a policy, with approvals and the flight recorder on.

        The policy is loaded after the program's `setup(kernel)` registered its drivers, so
        its rules can name them by the names they are registered under."""
        import asyncio
        import math

        from ..audit import FlightRecorder
        from .. import Kernel
        from ..policy import ApprovalChannel, PolicyEngine, PolicyLoadError
        from ..policy.approval_io import ApprovalServer, PromptApprover
        from .cmd_core import load_program
        from .strict import CliNoPolicy

        if approve not in ("prompt", "http", "deny"):
            _fail("error: --approve is prompt, http or deny", 2)
        if not math.isfinite(timeout) or timeout <= 0:
            _fail("error: --timeout is a positive number of seconds", 2)
        if durability is not None and durability not in ("fsync", "os"):
            _fail("error: --durability is fsync or os", 2)
        try:
            module = load_program(program)
        except typer.BadParameter as e:
            _fail(f"error: {_clip(e.format_message())}", 2)
        callback = PromptApprover() if approve == "prompt" else (lambda r: False) if approve == "deny" else None
        chan = ApprovalChannel(callback, timeout_ms=timeout * 1000)
        k = Kernel(policy=CliNoPolicy("policy run", "a valid policy file"), approvals=chan)
        if hasattr(module, "setup"):
            module.setup(k)
        try:
            engine = PolicyEngine.for_drivers(policy_file, k.drivers)
        except PolicyLoadError as e:
            _stop_drivers(k)
            _invalid(e)
        k.policy = engine
        obs = engine.spec.observability
        d = audit_dir
        if d is None and obs.get("audit_dir"):
            d = Path(obs["audit_dir"]) if Path(obs["audit_dir"]).is_absolute() else policy_file.parent / obs["audit_dir"]
        d = d or Path(os.environ.get("AGENTOS_HOME", ".agentos")) / "audit"
        dur = durability or obs.get("durability", "fsync")
        if obs.get("flight_recorder") is False:
            typer.echo("note: the policy sets observability.flight_recorder: false; the flight recorder "
                       "stays on under agentctl policy run (it cannot be turned off from the policy file)",
                       err=True)
        from ..audit import AuditKeyError, AuditLogError

        try:
            rec = FlightRecorder.open(d, durability=dur)
        except (AuditLogError, AuditKeyError) as e:
            _stop_drivers(k)
            _fail(f"error: flight recorder {d}: {e}", 2)
        k.audit = rec
        rec.attach(k)

        async def main() -> object:
            server = None
            if approve == "http":
                server = await ApprovalServer(chan).start()
                typer.echo(f"approvals: {server.url}/approvals  (Authorization: Bearer {server.token})", err=True)
            try:
                return await k.boot(module.init, grant=list(getattr(module, "GRANT", [])),
                                    quota=getattr(module, "QUOTA", None), args=getattr(module, "ARGS", None))
            finally:
                if server is not None:
                    await server.close()
                rec.close()
        res = asyncio.run(main())
        typer.echo(f"init ended {res.reason}" + ("" if res.value is None else f" -> {res.value!r:.200}"))  # type: ignore[attr-defined]
        typer.echo(f"audit: {d} ({rec.seq} records)")
        raise typer.Exit(0 if res.reason.normal else 1)  # type: ignore[attr-defined]
