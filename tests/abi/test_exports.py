"""The public API is pinned: changing it is a deliberate act that updates this test."""
from __future__ import annotations

import subprocess
import sys

import agentos
from agentos.abi.syscalls import SYSCALLS, table

EXPECTED = {
    "ABI_VERSION", "AgentOSError", "AllowAll", "BadHandle", "Bm25Recaller", "BootInfo", "Budget",
    "CapError", "CapRef", "Cost", "Decision", "Down", "Driver", "DriverError", "DriverHost",
    "DriverResult", "DropOldestPager", "Event", "ExitKind", "ExitReason", "InternalError",
    "Interrupted", "Journal", "JournalEntry", "Kernel", "KernelConfig", "KernelError",
    "KeywordRecaller", "Message", "NameTaken", "NoPolicy", "NoSuchDevice", "NondeterminismError",
    "Observer", "OutOfMemory", "Pager", "Pid", "Policy", "PolicyDenied", "ProcState", "ProcessHistory",
    "ProcessImage", "Quota", "QuotaExceeded", "RealClock", "Recaller", "Right", "RunResult", "Segment",
    "SegmentKind", "Signal", "SignalMessage", "Sys", "SyscallError", "ToolError", "VectorRecaller",
    "VirtualClock", "__version__", "digest", "minilm_embed",
}


def test_public_api_is_pinned():
    assert set(agentos.__all__) >= EXPECTED
    for name in agentos.__all__:
        assert hasattr(agentos, name), name


AUDIT = {
    "Anchor", "AuditAnchorLost", "AuditBackend", "AuditKeyError", "AuditLogError", "AuditRecord",
    "AuditUnavailable", "Checkpoint", "CheckpointError", "ENV_KEY", "FlightRecorder", "GENESIS",
    "MemoryAuditBackend", "SqliteAuditBackend", "VerifyReport", "encode", "load_key", "load_public_key",
    "load_signing_key", "make_anchor", "make_record", "prove", "reanchor", "reanchor_dir", "verify",
    "verify_dir", "verify_log", "verify_proof",
}
SANDBOX = {"DEFAULT_ALLOW", "SandboxDriver", "SandboxLimits", "SandboxViolation", "describe_status",
           "install", "sandbox", "to_wire"}


def test_audit_and_sandbox_apis_are_pinned():
    import agentos.audit
    import agentos.sandbox

    for mod, names in ((agentos.audit, AUDIT), (agentos.sandbox, SANDBOX)):
        assert set(mod.__all__) == names, mod.__name__
        for name in names:
            assert hasattr(mod, name), (mod.__name__, name)


def test_each_public_name_is_listed_once():
    assert len(agentos.__all__) == len(set(agentos.__all__))


def test_decision_lives_in_the_abi():
    from agentos import abi

    assert agentos.Decision is abi.Decision and agentos.Decision.__module__ == "agentos.abi.policy"
    assert "Decision" in abi.__all__ and "Policy" in abi.__all__


def test_examples_and_benchmarks_import_only_public_names():
    """User code (the examples, the benchmarks) never reaches into kernel modules."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bad = []
    for path in sorted([*root.joinpath("examples").rglob("*.py"), *root.joinpath("bench").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            bad += [f"{path.name}:{node.lineno}: {n}" for n in names if n.startswith("agentos.kernel")]
    assert bad == []


def test_syscall_table_covers_the_design_surface():
    names = {spec.name for spec in table()}
    design = {"pid", "self_cap", "now", "budget", "log", "send", "recv", "register", "unregister",
              "lookup", "spawn", "exit", "monitor", "waitpid", "on_cleanup", "signal", "sigmask",
              "derive", "attenuate", "revoke", "open", "read", "read_all", "write", "close",
              "remember", "working_set", "recall", "forget", "pin", "check_policy", "vfs_read",
              "vfs_write", "vfs_list", "sleep", "yield_", "sched", "dial", "spawn_remote"}
    assert design <= names
    for cls in SYSCALLS:
        assert hasattr(cls, "__slots__"), f"{cls.__name__} must be slotted"
    from agentos import Sys
    for n in design - {"signal"}:
        assert callable(getattr(Sys, n)), n


def test_import_is_light():
    code = ("import sys, agentos; heavy = [m for m in ('jsonschema', 'typer', 'rich', 'openai', "
            "'wasmtime', 'owlready2', 'pyoxigraph', 'rustworkx', 'nats', 'psycopg', 'mcp', 'llama_cpp', "
            "'prometheus_client', 'yaml', 'cryptography', 'pyseccomp') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_learning_layer_exports_are_pinned():
    import agentos.userland as u

    learning = {"AddResult", "Candidate", "Contains", "Distillation", "Distiller", "EvolveResult", "ExactMatch",
                "ExpertAnswer", "ExpertOptions", "ForgeBrief", "Forged", "FunctionScorer", "InMemoryPersist",
                "Learned", "Lesson", "LongMemory", "MemoryPersist", "MeteredFitness", "ModelOutputError",
                "Persona", "PersonaError", "PersonaPersist", "PersonaRegistry", "PersonaSpawn", "PromptExpert",
                "ReactResult", "Reflect", "ReflectVerdict", "Scored", "Scorer", "StorePersist", "Task",
                "ask_expert", "evolve", "forge_from_memory", "forge_prompt", "instantiate", "learn",
                "lessons_section", "metered_fitness", "mount_personas", "parse_lessons", "persona_store", "rank",
                "react_agent", "refine_prompt", "report_outcome", "tournament", "unlearned_runs"}
    assert learning <= set(u.__all__)
    for name in u.__all__:
        assert hasattr(u, name), name
    from agentos.drivers.lessons import LongMemoryDriver  # noqa: F401 - the devices import cleanly
    from agentos.drivers.runs import RunsDriver  # noqa: F401


def test_the_learning_layer_imports_light():
    code = ("import sys, agentos.userland, agentos.drivers.lessons, agentos.drivers.runs; "
            "heavy = [m for m in ('jsonschema', 'numpy', 'torch', 'llama_cpp', 'openai', 'pyoxigraph') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
