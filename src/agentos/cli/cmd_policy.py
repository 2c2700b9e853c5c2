"""`agentctl policy validate|test` and `agentctl audit verify`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer


def _tool_names(spec: Optional[str]) -> list[str] | None:
    return None if spec is None else [t.strip() for t in spec.split(",") if t.strip()]


def _load_cases(path: Path) -> list[dict[str, Any]]:
    import yaml

    from ..policy.loader import extract_yaml

    body, _ = extract_yaml(path.read_text(encoding="utf-8"), str(path))
    doc = yaml.safe_load(body)
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        raise typer.BadParameter(f"{path}: expected a list of cases (or cases: [...])")
    for i, c in enumerate(cases):
        if not isinstance(c, dict) or "action" not in c or "expect" not in c:
            raise typer.BadParameter(f"{path}: case {i} needs action and expect (args optional)")
        if c["expect"] not in ("allow", "deny", "approve", "log"):
            raise typer.BadParameter(f"{path}: case {i}: expect is allow, deny, approve or log")
        unknown = set(c) - {"action", "args", "expect", "rule", "pid", "name", "effect"}
        if unknown:
            raise typer.BadParameter(f"{path}: case {i}: unknown keys {sorted(unknown)}")
    return cases


def _outcome(d: Any) -> str:
    if d.allowed:
        return "log" if d.effect == "log" else "allow"
    return "approve" if d.effect == "approve" else "deny"


def register(app: typer.Typer) -> None:
    policy_app = typer.Typer(help="Check policy files (.agents/security.md) and what they decide.",
                             no_args_is_help=True)
    audit_app = typer.Typer(help="The flight recorder: verify the keyed audit chain.", no_args_is_help=True)
    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")
    register_run(policy_app)

    @policy_app.command("validate")
    def validate(file: Path = typer.Argument(..., help="policy file (.md with a yaml block, or .yaml)"),
                 tools: Optional[str] = typer.Option(None, help="comma-separated tool names the kernel has; "
                                                                  "unknown tools in rules become errors")) -> None:
        """Load a policy strictly; print what it holds, or the first error with its line."""
        from ..policy.engine import PolicyEngine
        from ..policy.loader import PolicyLoadError

        try:
            eng = PolicyEngine.load(file, known_tools=_tool_names(tools))
        except PolicyLoadError as e:
            typer.echo(f"invalid: {e}", err=True)
            raise typer.Exit(1)
        d = eng.describe()
        onto = d["ontology"]
        extra = f", ontology: {onto['classes']} classes ({onto['reasoner']})" if onto else ""
        typer.echo(f"valid: {file}: mode {d['mode']}, {d['rules']} rule(s){extra}")

    @policy_app.command("test")
    def test(file: Path = typer.Argument(..., help="policy file"),
             cases: Path = typer.Argument(..., help="YAML list of {action, args, expect: allow|deny|approve|log, rule?}"),
             tools: Optional[str] = typer.Option(None, help="comma-separated known tool names")) -> None:
        """Run decision cases against a policy (dry run: no rate-limit slot is taken)."""
        from rich.console import Console
        from rich.table import Table

        from ..policy.engine import PolicyEngine
        from ..policy.loader import KERNEL_ACTIONS, PolicyLoadError

        try:
            eng = PolicyEngine.load(file, known_tools=_tool_names(tools))
        except PolicyLoadError as e:
            typer.echo(f"invalid: {e}", err=True)
            raise typer.Exit(1)
        table = Table(title=f"policy test: {file}")
        for col in ("#", "action", "expect", "got", "rule", "result"):
            table.add_column(col)
        failed = 0
        for i, c in enumerate(_load_cases(cases), 1):
            action = str(c["action"])
            if "." not in action and action not in KERNEL_ACTIONS:
                action = f"tools.{action}"  # a bare tool name, as in rules
            d = eng.check(int(c.get("pid", 1)), action, c.get("args") or {}, dry_run=True)
            got = _outcome(d)
            ok = got == c["expect"] and ("rule" not in c or c["rule"] == d.rule)
            failed += not ok
            table.add_row(str(i), str(c["action"]), c["expect"] + (f" ({c['rule']})" if "rule" in c else ""),
                          got, d.rule, "ok" if ok else f"FAIL: {d.reason}")
        Console().print(table)
        if failed:
            typer.echo(f"{failed} case(s) failed", err=True)
            raise typer.Exit(1)

    @audit_app.command("verify")
    def verify(directory: Optional[Path] = typer.Option(None, "--dir",
                                                         help="audit directory (default $AGENTOS_HOME/audit)")) -> None:
        """Walk the HMAC chain and the anchor; report the first bad record (exit 1)."""
        from ..audit.keys import AuditKeyError
        from ..audit.recorder import verify_dir

        d = directory or Path(os.environ.get("AGENTOS_HOME", ".agentos")) / "audit"
        try:
            report = verify_dir(d)
        except (FileNotFoundError, AuditKeyError) as e:
            typer.echo(f"cannot verify: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(report.summary(), err=not report.ok)
        if not report.ok:
            raise typer.Exit(1)


def register_run(policy_app: typer.Typer) -> None:
    @policy_app.command("run")
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
        """Run PROGRAM under a policy, with approvals and the flight recorder on."""
        import asyncio

        from ..audit import FlightRecorder
        from .. import Kernel
        from ..policy import ApprovalChannel, PolicyEngine, PolicyLoadError
        from ..policy.approval_io import ApprovalServer, PromptApprover
        from .cmd_core import load_program

        if approve not in ("prompt", "http", "deny"):
            raise typer.BadParameter("--approve is prompt, http or deny")
        try:
            engine = PolicyEngine.load(policy_file)
        except PolicyLoadError as e:
            typer.echo(f"invalid: {e}", err=True)
            raise typer.Exit(1)
        module = load_program(program)
        obs = engine.spec.observability
        d = audit_dir
        if d is None and obs.get("audit_dir"):
            d = Path(obs["audit_dir"]) if Path(obs["audit_dir"]).is_absolute() else policy_file.parent / obs["audit_dir"]
        d = d or Path(os.environ.get("AGENTOS_HOME", ".agentos")) / "audit"
        dur = durability or obs.get("durability", "fsync")
        if dur not in ("fsync", "os"):
            raise typer.BadParameter("--durability is fsync or os")
        if obs.get("flight_recorder") is False:
            typer.echo("note: the policy sets observability.flight_recorder: false; the flight recorder "
                       "stays on under agentctl policy run (it cannot be turned off from the policy file)",
                       err=True)
        rec = FlightRecorder.open(d, durability=dur)
        callback = PromptApprover() if approve == "prompt" else (lambda r: False) if approve == "deny" else None
        chan = ApprovalChannel(callback, timeout_ms=timeout * 1000)
        k = Kernel(policy=engine, audit=rec, approvals=chan)
        if hasattr(module, "setup"):
            module.setup(k)
        for name, drv in k.drivers.items():
            tools = getattr(drv, "tools", None)
            if isinstance(tools, dict):
                try:
                    engine.validate_tools(tools, family=name)
                except PolicyLoadError as e:
                    typer.echo(f"invalid: {e}", err=True)
                    raise typer.Exit(1)

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
