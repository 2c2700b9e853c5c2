"""Typed pipes: send capabilities that carry a compiled JSON schema in the kernel.

`pipe(schema, cap=None)` compiles `schema` (bounded and checked, see schema.py) and grants
the caller a capability of kind "pipe" whose kernel-side target is a `PipeEnd`: the
receiving process and the compiled schema. A send through it is checked against the
schema before anything else happens to the message (policy, delivery, backpressure); a
body that does not match is a `SchemaViolation` raised into the *sender*, naming the
message path and the schema path that failed. The receiver never sees it.

Invariants:
- The schema lives in the kernel, on the capability's target, never in the holder's
  hands: `derive`, `attenuate` and passing the cap on a message copy the target, so every
  descendant carries the same schema; caps only narrow, so none can drop it.
- A pipe cap has the send right only. It is not a process capability: monitor, kill,
  signal and waitpid refuse it, so a holder learns nothing and can do nothing but send
  messages of the declared shape.
- `pipe(schema, cap)` narrows a process capability the caller holds with the send right;
  the pipe cap is its child, so revoking `cap` revokes the pipe too. A pipe cap cannot be
  narrowed to a second schema (refused: one schema per pipe keeps the check one pass).
- A send through a plain process capability pays nothing for this: the IPC path already
  branches on the capability's kind, and a pipe is one more kind behind that branch.
- Validation is deterministic, so a replay reproduces every refusal without a journal.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi.errors import BadArgument, CapError, SchemaViolation
from ..abi.syscalls import Pipe
from .caps import PIPE, PROC, R_SEND
from .schema import Schema, SchemaInvalid, Violation, compile_schema
from .schema_eval import _bounded

if TYPE_CHECKING:
    from .kernel import Kernel
    from .process import Process


class PipeEnd:
    """The kernel side of a typed pipe: who receives, and the schema every message meets."""

    __slots__ = ("proc", "schema")

    def __init__(self, proc: "Process", schema: Schema) -> None:
        self.proc = proc
        self.schema = schema

    @property
    def pid(self) -> int:
        return self.proc.pid

    def admit(self, body: Any) -> "Process":
        """The receiving process, if `body` matches the schema; else `SchemaViolation`."""
        try:
            self.schema.validate(body)
        except Violation as v:
            path, spath = _bounded(v.path), _bounded(v.schema_path)  # keys can be long: the log holds this
            raise SchemaViolation(f"send: the message does not match the pipe's schema: body at "
                                  f"{path or '/'} fails schema {spath or '/'}: {v.why}", path, spath) from None
        return self.proc


def sys_pipe(kernel: "Kernel", proc: "Process", req: Pipe) -> int:
    """The `pipe` syscall: compile the schema, grant a send-only pipe capability."""
    try:
        schema = compile_schema(req.schema)
    except SchemaInvalid as e:
        raise BadArgument(f"pipe: schema refused: {e}") from None
    parent = None
    target = proc
    if req.cap is not None:
        parent = kernel.caps.resolve(proc, req.cap, R_SEND, "pipe")
        if parent.kind == PIPE:
            raise CapError("pipe: the capability is already a typed pipe; a pipe keeps the one schema "
                           "it was made with")
        if parent.kind != PROC:
            raise CapError(f"pipe: the capability designates a {parent.describe()['kind']}, not a "
                           f"process on this kernel")
        target = parent.target
    return kernel.caps.grant(proc, PIPE, PipeEnd(target, schema), R_SEND,
                             parent.expires if parent is not None else None, parent).ref


__all__ = ["PipeEnd", "sys_pipe"]
