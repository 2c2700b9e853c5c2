"""Manifests and host tools shared by the registry tests."""
from __future__ import annotations

from typing import Any

from agentos.services import HostTool

CALLS: list[Any] = []


def add(a: int, b: int) -> int:
    CALLS.append(("add", a, b))
    return a + b


def put(key: str, value: str) -> str:
    CALLS.append(("put", key))
    return key


TWO_INTS = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"], "additionalProperties": False}

ADD = {"name": "add", "version": "1.0.0", "risk": "pure", "effect": "read_only", "schema": TWO_INTS,
       "ontology_class": "Addition", "capabilities": ["math"], "description": "Add two integers."}
PUT = {"name": "put", "version": "1.0.0", "risk": "pure", "effect": "read_write",
       "schema": {"type": "object", "properties": {"key": {"type": "string", "maxLength": 64},
                                                    "value": {"type": "string"}},
                  "required": ["key", "value"], "additionalProperties": False},
       "ontology_class": "Storage", "capabilities": ["store"]}

MUL_WAT = '(module (func (export "mul") (param i64 i64) (result i64) local.get 0 local.get 1 i64.mul))'
MUL = {**ADD, "name": "mul", "ontology_class": "Multiplication",
       "wasm": {"module": MUL_WAT, "export": "mul", "params": ["a", "b"]}}

# Python source that reports where it runs: its own OS pid and its parent's
WHERE = """
import os

def run(a, b):
    return {"sum": a + b, "pid": os.getpid(), "ppid": os.getppid()}
"""
PY_PURE = {**ADD, "name": "pyadd", "risk": "pure", "driver": "tools", "source": {"code": WHERE, "entry": "run"}}


def host_tools() -> list[HostTool]:
    return [HostTool(ADD, add), HostTool(PUT, put)]
