"""The public API is pinned exactly: adding a name fails this test as surely as removing one.

Changing the API is a deliberate act that edits PUBLIC below. Every name a public
namespace lists in `__all__` exists; every public class or function has exactly one
canonical home among the subpackages (one `__all__` lists it), and `agentos`
itself re-exports from those homes (or owns the names listed in TOP_LEVEL_ONLY).
The syscall table is checked against the design surface, and a syscall whose handler
only refuses (NotSupported, or NotImplementedError) is listed as not provided yet, never
counted as covered.
"""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types
from typing import Any

import pytest

import agentos
from agentos.abi.syscalls import SYSCALLS, table

PUBLIC: dict[str, set[str]] = {
    "agentos": {
        "ABI_VERSION", "AgentOSError", "AllowAll", "BadArgument", "BadHandle", "Bm25Recaller", "BootInfo",
        "Budget", "CapError", "CapRef", "Cost", "Decision", "Down", "Driver", "DriverError", "DriverHost",
        "DriverResult", "DropOldestPager", "Event", "ExitKind", "ExitReason", "InternalError", "Interrupted",
        "Journal", "JournalEntry", "Kernel", "KernelConfig", "KernelError", "KeywordRecaller", "Message",
        "NameTaken", "NoPolicy", "NoSuchDevice", "NondeterminismError", "NotSupported", "Observer",
        "OutOfMemory", "Pager", "Pid", "Policy", "PolicyDenied", "ProcState", "ProcessHistory", "ProcessImage",
        "Quota", "QuotaExceeded", "RECORDING_FORMAT", "RealClock", "Recaller", "RecordingFormatError", "Right",
        "RunResult", "Segment", "SegmentKind", "Signal", "SignalMessage", "Sys", "SyscallError", "ToolError",
        "VectorRecaller", "VirtualClock", "WaitKind", "__version__", "digest", "minilm_embed",
    },
    "agentos.abi": {
        "ABIMismatch", "ABI_VERSION", "AgentOSError", "AttestationError", "BadArgument", "BadHandle", "BadRequest", "Budget",
        "CapError", "CapRef", "Cost", "Decision", "Down", "Driver", "DriverError", "DriverHandle", "DriverHost",
        "DriverResult", "DriverTimeout", "ExitKind", "ExitReason", "InternalError", "Interrupted", "KERNEL_PID",
        "KernelError", "MailboxFull", "Message", "NameTaken", "NoSuchDevice", "NondeterminismError",
        "NotSupported", "OutOfMemory", "Pid", "Policy", "PolicyDenied", "ProcState", "Quota", "QuotaExceeded",
        "RateLimited", "RecordingFormatError", "Right", "SYSCALLS", "SchemaViolation", "Segment", "SegmentKind", "Signal",
        "SignalMessage", "SyscallError", "SyscallSpec", "ToolError", "TrustDenied", "USD_SCALE", "UpstreamError",
        "WaitKind",
    },
    "agentos.audit": {
        "Anchor", "AuditAnchorLost", "AuditBackend", "AuditKeyError", "AuditLogError", "AuditRecord",
        "AuditUnavailable", "Checkpoint", "CheckpointError", "ENV_KEY", "FlightRecorder", "GENESIS",
        "MemoryAuditBackend", "SqliteAuditBackend", "VerifyReport", "encode", "load_key", "load_public_key",
        "load_signing_key", "make_anchor", "make_record", "prove", "reanchor", "reanchor_dir", "verify",
        "verify_dir", "verify_log", "verify_proof",
    },
    "agentos.drivers": {
        "Backoff", "KVDriver", "LLMDriver", "MCPDriver", "PriceTable", "PriorityGate", "Tool", "ToolsDriver",
        "WorkerDriver", "tool",
    },
    "agentos.kernel": {
        "Clock", "Kernel", "KernelConfig", "ProcessImage", "RECORDING_FORMAT", "RealClock", "RunResult", "Sys",
        "VirtualClock",
    },
    "agentos.net": {
        "Cluster", "ClusterConfig", "MAX_FRAME", "REASONS", "REMOTE_SENDER", "Envelope", "EnvelopeRejected", "EnvelopeTooLarge",
        "GatewayDriver", "LinkBackpressure", "SecureGatewayDriver", "Loopback", "NetError", "NetNode", "NoRoute", "NonceGuard", "RemoteAddr", "RemoteRefused", "TcpLink",
        "TcpListener", "TcpNode", "Transport", "fresh_nonce", "key_id", "seal", "tcp_node", "verify",
    },
    "agentos.policy": {
        "ApprovalChannel", "ApprovalRequest", "ApprovalServer", "PolicyEngine", "PolicyLoadError", "PolicySpec",
        "PromptApprover", "SubsumptionIndex", "load_ontology", "load_policy", "parse_policy",
    },
    "agentos.provenance": {
        "AOS", "InteractionRecord", "LessonRecord", "PROV", "ReplayManifest", "STEP_TYPES", "export",
        "lesson_iri", "manifest_from_store", "run_iri", "vocabulary",
    },
    "agentos.sandbox": {
        "DEFAULT_ALLOW", "SandboxDriver", "SandboxLimits", "SandboxViolation", "describe_status", "install",
        "sandbox", "to_wire",
    },
    "agentos.services": {
        "Effect", "HostTool", "ManifestError", "Origin", "Risk", "Tier", "ToolManifest", "ToolRegistry",
        "install_registry", "parse_manifest", "ATTESTATION_VERSION", "TrustService", "verify_attestation",
        "Bus", "BusDevice", "BusMessage", "BusScope", "DeadReason", "Overflow", "attach_bus", "bus_declare",
        "bus_narrow", "bus_publish", "bus_recv", "bus_reject", "bus_subscribe", "bus_unsubscribe",
    },
    "agentos.store": {
        "DURABILITY_MODES", "MemoryStore", "NoSuchRun", "PostgresStore", "Recording", "RunInfo", "SqliteStore", "Store",
        "StoreError", "StoredEvent", "agentos_home", "effective_status", "open_default_store", "open_store",
        "record_run", "recorded", "resolve",
    },
    "agentos.sched": {
        "AGENT_FORMAT", "AgentFileError", "HibernationConfig", "HibernationConfigError", "HibernationRecordError",
        "HibernationStore", "HibernationStoreError",
        "Hibernator", "KVHibernationStore", "LoopExit", "Measure", "MemoryHibernationStore", "STUB_LIMIT",
        "SchedConfig", "SchedConfigError", "SqliteHibernationStore", "export_agent", "import_agent", "loop_exit", "message_loop", "stub_bytes",
    },
    "agentos.server": {
        "Client", "Daemon", "TokenError", "load_or_create_token", "make_app", "read_state", "read_token",
    },
    "agentos.telemetry": {"GenAITracer", "configure_tracing"},
    "agentos.userland": {
        "AddResult", "CallTimeout", "Candidate", "ChildSpec", "Contains", "Distillation", "Distiller",
        "EvolveResult", "ExactMatch", "ExpertAnswer", "ExpertOptions", "ForgeBrief", "Forged", "FunctionScorer",
        "InMemoryPersist", "Learned", "Lesson", "LongMemory", "MemoryPersist", "MeteredFitness",
        "ModelOutputError", "Nursery", "Persona", "PersonaError", "PersonaPersist", "PersonaRegistry",
        "PersonaSpawn", "PromptExpert", "ReactResult", "Reflect", "ReflectVerdict", "Scored", "Scorer",
        "StorePersist", "SupervisorSpec", "Task", "ask_expert", "call", "evolve", "forge_from_memory",
        "forge_prompt", "instantiate", "learn", "lessons_section", "metered_fitness", "mount_personas",
        "open_nursery", "parse_lessons", "persona_store", "rank", "react_agent", "refine_prompt", "reply",
        "report_outcome", "supervisor", "tournament", "unlearned_runs", "which_children",
        # the failure model, cross-model verification and self-correction
        "AnswerContext", "AuditOptions", "AuditReport", "CmvkOptions", "DriftReport", "Failure", "FailureKind",
        "Finding", "HygieneOptions", "HygieneReport", "Panelist", "Severity", "ToolCheck", "Verdict", "audit",
        "detect_laziness", "drift", "failure_from_error", "failures_in", "hygiene", "judge_laziness",
        "set_baseline", "verify",
        "Constraint", "MuteResult", "mute_agent",
        # context as a service and the episodic ledger
        "CaasError", "CaasService", "Chunk", "Citation", "Context", "EmbedDriver", "EmkDriver", "Experience",
        "IngestReport", "Ledger", "LedgerError", "hash_embed", "ingest", "put_document", "retrieve",
    },
    "agentos.vfs": {
        "AccessDenied", "Backend", "BadPath", "EscapeError", "HostDirBackend", "KVStore", "MemoryBackend",
        "MemoryKV", "MountDriver", "NotFound", "ReadOnly", "StoreBackend", "TooLarge", "Vfs", "VfsError",
        "extension", "install",
    },
}

# Subpackages whose interface is not Python names: agentctl's is its command line.
NOT_API = {"agentos.cli"}

# Names `agentos` owns itself (their code lives in internal modules, not in a subpackage's __all__).
TOP_LEVEL_ONLY = {"AllowAll", "Bm25Recaller", "BootInfo", "DropOldestPager", "Event", "Journal", "JournalEntry",
                  "KeywordRecaller", "NoPolicy", "Observer", "Pager", "ProcessHistory", "Recaller",
                  "VectorRecaller", "__version__", "digest", "minilm_embed"}

# Deliberate second names for one object, each pinned (a new duplicate fails the test).
ALIASES = {"agentos.userland.PersonaPersist": "agentos.vfs.Backend"}  # a persona registry persists to a VFS backend

# Design-surface syscalls whose handler is still the not-supported stub. When one is
# provided, remove it here (the test says so); a new stub must be added here, not hidden.
NOT_YET_PROVIDED = {"spawn_remote": "net"}  # a bare kernel; a node of a cluster (agentos.net.Cluster) has it

DESIGN_SURFACE = {
    "pid", "self_cap", "now", "budget", "log", "send", "recv", "register", "unregister", "lookup", "spawn", "exit",
    "monitor", "waitpid", "on_cleanup", "signal", "sigmask", "derive", "attenuate", "revoke", "open", "read",
    "read_all", "write", "close", "remember", "working_set", "recall", "forget", "pin", "check_policy", "vfs_read",
    "vfs_write", "vfs_list", "sleep", "yield_", "sched", "dial", "spawn_remote", "attest", "verify", "report",
    "trust",
}


def module(name: str) -> Any:
    return importlib.import_module(name)


def test_the_public_subpackages_are_the_pinned_ones() -> None:
    found = {f"agentos.{m.name}" for m in pkgutil.iter_modules(agentos.__path__) if not m.name.startswith("_")}
    subpackages = {n for n in found if hasattr(module(n), "__path__")}
    assert subpackages == (set(PUBLIC) - {"agentos"}) | NOT_API, (
        f"new public subpackages: {sorted(subpackages - set(PUBLIC) - NOT_API)}; "
        f"gone: {sorted((set(PUBLIC) | NOT_API) - {'agentos'} - subpackages)}")
    for name in NOT_API:
        assert not hasattr(module(name), "__all__"), f"{name} exports names: pin them in PUBLIC"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_each_public_namespace_exports_exactly_the_pinned_names(name: str) -> None:
    exported = list(module(name).__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    added, removed = set(exported) - PUBLIC[name], PUBLIC[name] - set(exported)
    assert not added and not removed, (f"{name}: added {sorted(added)}, removed {sorted(removed)}; if that is "
                                       f"deliberate, update PUBLIC in tests/abi/test_exports.py")


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_name_in_all_exists(name: str) -> None:
    mod = module(name)
    missing = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"


def _homed(obj: Any) -> bool:
    """A class or function of agentos's own (not an alias of a builtin or a typing construct)."""
    return (isinstance(obj, (type, types.FunctionType))
            and (getattr(obj, "__module__", "") or "").startswith("agentos."))


def test_each_public_object_has_exactly_one_canonical_home() -> None:
    homes: dict[int, list[str]] = {}
    objects: dict[int, Any] = {}
    for name in sorted(set(PUBLIC) - {"agentos"}):
        mod = module(name)
        for n in mod.__all__:
            obj = getattr(mod, n)
            if _homed(obj):
                homes.setdefault(id(obj), []).append(f"{name}.{n}")
                objects[id(obj)] = obj
    twice = {ids[0]: ids[1:] for ids in homes.values() if len(ids) > 1}
    pinned = [{a, b} for a, b in ALIASES.items()]
    unpinned = {k: v for k, v in twice.items() if {k, *v} not in pinned}
    assert not unpinned, f"exported from more than one subpackage: {unpinned}"
    for n in agentos.__all__:
        obj = getattr(agentos, n)
        if n in TOP_LEVEL_ONLY:
            assert not (_homed(obj) and id(obj) in homes), f"agentos.{n} has a subpackage home: drop it from TOP_LEVEL_ONLY"
            continue
        sources = [h for h in PUBLIC if h != "agentos" and n in PUBLIC[h] and getattr(module(h), n) is obj]
        assert len(sources) == 1, f"agentos.{n} must re-export exactly one subpackage's name (found {sources})"


def provided(spec: Any) -> bool:
    """Whether a fresh kernel handles `spec` with more than the stub that refuses it."""
    from agentos import AllowAll, Kernel, NotSupported

    class Touched(Exception):
        pass

    class Probe:  # a process and a request that stop any real handler at its first look
        def __getattr__(self, attr: str) -> Any:
            raise Touched(attr)

    k = Kernel(deterministic=True, policy=AllowAll())
    handler = k._table[spec.request][0]
    try:
        handler(Probe(), Probe())
    except (NotSupported, NotImplementedError):
        return False
    except Exception:
        return True
    return True


def test_syscall_table_covers_the_design_surface_and_names_what_is_not_provided_yet() -> None:
    specs = {spec.name: spec for spec in table()}
    assert DESIGN_SURFACE <= set(specs), f"missing from the table: {sorted(DESIGN_SURFACE - set(specs))}"
    stubs = {name for name, spec in specs.items() if not provided(spec)}
    assert stubs == set(NOT_YET_PROVIDED), (
        f"handlers that only refuse: {sorted(stubs)}; listed as not provided yet: "
        f"{sorted(NOT_YET_PROVIDED)}. Provided ones leave the list, new stubs join it.")
    for name, area in NOT_YET_PROVIDED.items():
        assert specs[name].owner.startswith(area), (name, specs[name].owner)
    covered = DESIGN_SURFACE - set(NOT_YET_PROVIDED)
    assert all(provided(specs[n]) for n in covered)
    for cls in SYSCALLS:
        assert hasattr(cls, "__slots__"), f"{cls.__name__} must be slotted"
    from agentos import Sys
    for n in DESIGN_SURFACE - {"signal"}:
        assert callable(getattr(Sys, n)), n


@pytest.mark.parametrize("name", sorted(NOT_YET_PROVIDED))
def test_a_syscall_not_provided_yet_says_so_in_the_calling_process(name: str) -> None:
    from agentos import AllowAll, Kernel, NotSupported

    async def init(sys: Any, args: Any) -> str:
        call = {"dial": lambda: sys.dial("node-b", 7), "spawn_remote": lambda: sys.spawn_remote("node-b", "img")}
        try:
            await call[name]()
        except NotSupported as e:
            return str(e)
        return "it answered"

    res = Kernel(deterministic=True, policy=AllowAll()).run(init)
    assert res.value.startswith(f"syscall {name} needs the") and "does not provide" in res.value, res.value


def test_decision_lives_in_the_abi() -> None:
    from agentos import abi

    assert agentos.Decision is abi.Decision and agentos.Decision.__module__ == "agentos.abi.policy"
    assert "Decision" in abi.__all__ and "Policy" in abi.__all__


def test_examples_and_benchmarks_import_only_public_names() -> None:
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


def test_import_is_light() -> None:
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
