"""`agentctl audit verify|checkpoint|prove|reanchor|public-key`: the flight recorder.

    agentctl audit verify                         keyed chain + anchor (needs the HMAC key)
    agentctl audit verify --public-key KEY --checkpoint FILE
                                                  the log against a checkpoint kept elsewhere,
                                                  with no secret at all
    agentctl audit verify --public-key KEY --checkpoint FILE --proof PROOF
                                                  one record, without the log
    agentctl audit checkpoint --out FILE          export the newest signed checkpoint
    agentctl audit prove SEQ [--checkpoint FILE]  an inclusion proof for record SEQ
    agentctl audit reanchor --accept-loss         a new epoch after a lost anchor, on the record
    agentctl audit public-key [--out FILE]        the checkpoint signing key's public half

The directory is --dir, else $AGENTOS_HOME/audit (AGENTOS_HOME defaults to ./.agentos).
Exit codes: 0 verified (or done); 1 verification failed: the first bad record is named;
2 cannot proceed (no log, no key, a malformed checkpoint or proof, a refused re-anchor).
Errors are one line on stderr.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

DirOpt = typer.Option(None, "--dir", help="audit directory (default $AGENTOS_HOME/audit)")


def _dir(directory: Optional[Path]) -> Path:
    return directory or Path(os.environ.get("AGENTOS_HOME", ".agentos")) / "audit"


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _read(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise _fail(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise _fail(f"{what} {path} is over {limit} bytes: not a {what}")
    return data


def _checkpoint(path: Path) -> Any:
    from ..audit.checkpoint import Checkpoint, CheckpointError

    try:
        return Checkpoint.loads(_read(path, "checkpoint"))
    except CheckpointError as e:
        raise _fail(f"{path}: {e}") from None


def _public_key(path: Path) -> Any:
    from ..audit.checkpoint import CheckpointError, load_public_key

    try:
        return load_public_key(_read(path, "public key", 64 * 1024))
    except CheckpointError as e:
        raise _fail(f"{path}: {e}") from None


def _write_out(text: str, out: Optional[str]) -> None:
    if out is None or out == "-":
        sys.stdout.write(text)
        return
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise _fail(f"cannot write {out}: {e.strerror or e}") from None


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The flight recorder: verify the audit log, export signed checkpoints, "
                                 "prove records.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("verify")
    def verify(directory: Optional[Path] = DirOpt,
               public_key: Optional[Path] = typer.Option(None, "--public-key", help="checkpoint signing key "
                                                         "(PEM, or 64 hex digits): verify with no secret"),
               checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="a checkpoint exported "
                                                         "earlier and kept elsewhere"),
               proof: Optional[Path] = typer.Option(None, "--proof", help="an inclusion proof (agentctl audit "
                                                    "prove) to check instead of the log")) -> None:
        """Verify the log: the keyed chain and anchor, or (with --public-key and --checkpoint)
        against a signed checkpoint; report the first bad record (exit 1)."""
        from ..audit import AuditKeyError
        from ..audit.checkpoint import CheckpointError, verify_proof
        from ..audit.logdir import verify_dir, verify_dir_public

        if (public_key is None) != (checkpoint is None):
            raise _fail("--public-key and --checkpoint go together")
        if proof is not None and public_key is None:
            raise _fail("--proof needs --public-key and --checkpoint")
        if proof is not None:
            assert public_key is not None and checkpoint is not None
            key, cp = _public_key(public_key), _checkpoint(checkpoint)
            try:
                data = json.loads(_read(proof, "proof", 8 << 20))
            except (ValueError, RecursionError) as e:
                raise _fail(f"{proof}: a proof is JSON: {e}") from None
            try:
                typer.echo("ok: " + verify_proof(data, cp, key))
            except CheckpointError as e:
                typer.echo(f"BAD: {e}", err=True)
                raise typer.Exit(1)
            return
        d = _dir(directory)
        try:
            if public_key is not None:
                assert checkpoint is not None
                report = verify_dir_public(d, _checkpoint(checkpoint), _public_key(public_key))
            else:
                report = verify_dir(d)
        except (FileNotFoundError, AuditKeyError) as e:
            raise _fail(f"cannot verify: {e}") from None
        typer.echo(report.summary(), err=not report.ok)
        if not report.ok:
            raise typer.Exit(1)

    @audit_app.command("checkpoint")
    def checkpoint(out: str = typer.Option(..., "--out", help="file to write (- for stdout)"),
                   directory: Optional[Path] = DirOpt) -> None:
        """Export the newest signed checkpoint, to keep somewhere the host cannot rewrite."""
        from ..audit.logdir import latest_checkpoint, read_records

        d = _dir(directory)
        try:
            cp = latest_checkpoint(d)
        except FileNotFoundError as e:
            raise _fail(str(e)) from None
        if cp is None:
            raise _fail(f"no signed checkpoint in {d} yet (a recorder with a signing key signs one every "
                        f"so many records and when it closes)")
        _write_out(cp.dumps(), out)
        try:
            total = sum(1 for _ in read_records(d))
        except Exception:  # the count is a courtesy; verify says what is wrong with the log
            total = cp.size
        if total > cp.size:
            typer.echo(f"note: {total - cp.size} record(s) past this checkpoint are not covered yet", err=True)
        if out != "-":
            typer.echo(f"wrote checkpoint of log {cp.log} at size {cp.size} to {out}")

    @audit_app.command("prove")
    def prove(seq: int = typer.Argument(..., help="the record's sequence number"),
              checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="prove against this "
                                                        "checkpoint (default: the newest stored)"),
              out: Optional[str] = typer.Option(None, "--out", help="file (default: stdout)"),
              directory: Optional[Path] = DirOpt) -> None:
        """An inclusion proof that record SEQ is in the log a checkpoint signed."""
        from ..audit.checkpoint import CheckpointError
        from ..audit.logdir import prove_dir

        cp = _checkpoint(checkpoint) if checkpoint is not None else None
        try:
            proof = prove_dir(_dir(directory), seq, cp)
        except (FileNotFoundError, CheckpointError) as e:
            raise _fail(str(e)) from None
        _write_out(json.dumps(proof, indent=2, sort_keys=True) + "\n", out)

    @audit_app.command("reanchor")
    def reanchor(accept_loss: bool = typer.Option(False, "--accept-loss", help="required: accept that "
                                                  "records after the last verifiable one may be lost"),
                 reason: str = typer.Option("", "--reason", help="why, for the record"),
                 directory: Optional[Path] = DirOpt) -> None:
        """Start a new epoch after a lost anchor: writes an "anchor lost after record N" record
        that every later verify reports. Refused when the chain itself is broken."""
        from ..audit import AuditKeyError, AuditLogError
        from ..audit.logdir import reanchor_dir

        if not accept_loss:
            raise _fail("refusing to re-anchor without --accept-loss (records after the last "
                        "verifiable one may have been lost, and the log will say so for ever)")
        try:
            rec = reanchor_dir(_dir(directory), accept_loss=True, reason=reason)
        except (FileNotFoundError, AuditKeyError, AuditLogError) as e:
            raise _fail(str(e)) from None
        after = json.loads(rec.data)["after"]
        typer.echo(f"re-anchored: record {rec.seq} says the anchor was lost after record {after}")

    @audit_app.command("public-key")
    def public_key(out: Optional[str] = typer.Option(None, "--out", help="file (default: stdout)"),
                   directory: Optional[Path] = DirOpt) -> None:
        """Print the public half of the checkpoint signing key (PEM)."""
        from ..audit import AuditKeyError
        from ..audit.checkpoint import load_signing_key, public_pem

        try:
            key = load_signing_key(_dir(directory), create=False)
        except AuditKeyError as e:
            raise _fail(str(e)) from None
        _write_out(public_pem(key.public_key()), out)
