"""Ring 2: libraries built on syscalls only (supervisors, nurseries, rpc, agents, and the
layer that lets agents learn across runs: long memory, distillation, personas, prompt
forging, evolutionary search, the prompt expert and reflection; context as a service
and the episodic ledger; and the layer that lets agents check each other: the failure
model, cross-model verification and self-correction)."""
from .caas import (
    CaasError, CaasService, Chunk, Citation, Context, EmbedDriver, IngestReport, hash_embed, ingest, put_document,
    retrieve,
)
from .cmvk import CmvkOptions, DriftReport, Panelist, Verdict, drift, set_baseline, verify
from .distill import Distillation, Distiller, Learned, learn, parse_lessons, report_outcome, unlearned_runs
from .emk import EmkDriver, Experience, Ledger, LedgerError
from .evolve import (
    Candidate, Contains, EvolveResult, ExactMatch, FunctionScorer, MeteredFitness, Scored, Scorer, Task, evolve,
    metered_fitness, rank, tournament,
)
from .failures import Failure, FailureKind, Severity, failure_from_error, failures_in
from .hygiene import HygieneOptions, HygieneReport, hygiene
from .long_memory import AddResult, InMemoryPersist, Lesson, LongMemory, MemoryPersist, StorePersist, lessons_section
from .mute import Constraint, MuteResult, mute_agent
from .nursery import Nursery, open_nursery
from .persona import (
    Persona, PersonaError, PersonaPersist, PersonaRegistry, PersonaSpawn, instantiate, mount_personas, persona_store,
)
from .prompt_expert import ExpertAnswer, ExpertOptions, PromptExpert, ask_expert
from .promptsmith import ForgeBrief, Forged, forge_from_memory, forge_prompt, refine_prompt
from .react import ReactResult, react_agent
from .reflect import Reflect, ReflectVerdict
from .rpc import CallTimeout, call, reply
from .scak import AnswerContext, AuditOptions, AuditReport, Finding, ToolCheck, audit, detect_laziness, judge_laziness
from .structured import ModelOutputError
from .supervisor import ChildSpec, SupervisorSpec, supervisor, which_children

__all__ = [
    "CaasError", "CaasService", "Chunk", "Citation", "Context", "EmbedDriver", "EmkDriver", "Experience",
    "IngestReport", "Ledger", "LedgerError", "hash_embed", "ingest", "put_document", "retrieve",
    "AddResult", "CallTimeout", "Candidate", "ChildSpec", "Contains", "Distillation", "Distiller", "EvolveResult",
    "ExactMatch", "ExpertAnswer", "ExpertOptions", "ForgeBrief", "Forged", "FunctionScorer", "InMemoryPersist",
    "Learned", "Lesson", "LongMemory", "MemoryPersist", "MeteredFitness", "ModelOutputError", "Nursery",
    "Persona", "PersonaError", "PersonaPersist", "PersonaRegistry", "PersonaSpawn", "PromptExpert",
    "ReactResult", "Reflect", "ReflectVerdict", "Scored", "Scorer", "StorePersist", "SupervisorSpec", "Task",
    "ask_expert", "call", "evolve", "forge_from_memory", "forge_prompt", "instantiate", "learn",
    "lessons_section", "metered_fitness", "mount_personas", "open_nursery", "parse_lessons", "persona_store",
    "rank", "react_agent", "refine_prompt", "reply", "report_outcome", "supervisor", "tournament",
    "unlearned_runs", "which_children",
    # the failure model, cross-model verification and self-correction
    "AnswerContext", "AuditOptions", "AuditReport", "CmvkOptions", "DriftReport", "Failure", "FailureKind",
    "Finding", "HygieneOptions", "HygieneReport", "Panelist", "Severity", "ToolCheck", "Verdict", "audit",
    "detect_laziness", "drift", "failure_from_error", "failures_in", "hygiene", "judge_laziness", "set_baseline",
    "verify",
    "Constraint", "MuteResult", "mute_agent",
]
