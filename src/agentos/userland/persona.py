"""Personas: named, versioned agent descriptions, and how to start one.

A `Persona` says who an agent is: its system prompt, the tools it is offered, the model
and decoding settings, its budget (`quota`) and its policy class. `instantiate(sys, p,
task)` turns it into a process image and spawn options, so

    sp = await instantiate(sys, persona, "the task")
    pid, cap = await sys.spawn(sp.image, **sp.options())

starts it with exactly the persona's capabilities and budget: the devices it names and
no others, its quota carved from the caller's account. Policy classes:
`read_write` passes the device capabilities as the caller holds them; `read_only`
passes copies derived with only `open` and `read`, so the kernel refuses the persona
every device write (a kv set, a lesson added, a file written to a mount).

`PersonaRegistry` stores personas as files of a VFS mount (`/personas/<name>/<version>`),
so reading and writing them are journaled syscalls and who may do so is who holds the
mount's capability. The mount's backend is the `PersonaPersist`: `persona_store(store)`
keeps them in a store (they outlive the kernel), a `MemoryBackend` in this process.
A version, once written, is immutable; `publish` adds a version only when the content
changed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..abi.errors import SyscallError
from ..abi.types import Quota
from ..kernel.process import ProcessImage
from ..kernel.trap import Sys
from ..vfs.backends import Backend
from .structured import device_ref

POLICY_CLASSES = ("read_write", "read_only")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_DEVICE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
_NAME_TOOL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_SYSTEM = 20_000

PersonaPersist = Backend
"""Where a registry's personas live: the backend of its VFS mount."""


class PersonaError(SyscallError):
    """A persona that does not hold together, or a registry operation that cannot be done."""


def _names(v: Any, what: str, pattern: re.Pattern[str], limit: int) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise PersonaError(f"persona {what} must be a list of names, got {type(v).__name__}")
    if len(v) > limit:
        raise PersonaError(f"persona {what}: at most {limit}, got {len(v)}")
    for x in v:
        if not isinstance(x, str) or not pattern.match(x):
            raise PersonaError(f"persona {what}: {x!r:.60} is not a valid name")
    return tuple(dict.fromkeys(v))


@dataclass(frozen=True)
class Persona:
    name: str
    system: str
    version: int = 1
    description: str = ""
    tools: tuple[str, ...] = ()
    llm: str = "llm"
    tools_device: str = "tools"
    devices: tuple[str, ...] = ()          # further devices it may open (e.g. "lessons")
    model: str | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    max_steps: int = 6
    quota: Quota = field(default_factory=lambda: Quota(tokens=20_000, tool_calls=20))
    policy_class: str = "read_write"
    priority: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PersonaError(f"persona name must match {_NAME.pattern}, got {self.name!r:.80}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or not 1 <= self.version <= 10**9:
            raise PersonaError(f"persona {self.name}: version must be an int >= 1, got {self.version!r}")
        if not isinstance(self.system, str) or not self.system.strip() or len(self.system) > MAX_SYSTEM:
            raise PersonaError(f"persona {self.name}: system must be a non-empty string of at most "
                               f"{MAX_SYSTEM} characters")
        for text, what in ((self.system, "system"), (self.description, "description")):
            if not isinstance(text, str):
                raise PersonaError(f"persona {self.name}: {what} must be a string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise PersonaError(f"persona {self.name}: {what} is not valid Unicode") from None
        if len(self.description) > 2000:
            raise PersonaError(f"persona {self.name}: description is over 2000 characters")
        object.__setattr__(self, "tools", _names(self.tools, "tools", _NAME_TOOL, 64))
        object.__setattr__(self, "devices", _names(self.devices, "devices", _DEVICE, 16))
        for what in ("llm", "tools_device"):
            v = getattr(self, what)
            if not isinstance(v, str) or not _DEVICE.match(v):
                raise PersonaError(f"persona {self.name}: {what} must be a device name, got {v!r:.60}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model or len(self.model) > 200):
            raise PersonaError(f"persona {self.name}: model must be a non-empty string or None")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= 2:
            raise PersonaError(f"persona {self.name}: temperature must be a number in 0..2, got {t!r}")
        for what, hi in (("max_tokens", 32_768), ("max_steps", 64)):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise PersonaError(f"persona {self.name}: {what} must be an int in 1..{hi}, got {v!r}")
        if not isinstance(self.quota, Quota):
            raise PersonaError(f"persona {self.name}: quota must be a Quota, got {type(self.quota).__name__}")
        if self.policy_class not in POLICY_CLASSES:
            raise PersonaError(f"persona {self.name}: policy_class must be one of {', '.join(POLICY_CLASSES)}, "
                               f"got {self.policy_class!r:.40}")
        if self.priority is not None and (isinstance(self.priority, bool) or not isinstance(self.priority, int)):
            raise PersonaError(f"persona {self.name}: priority must be an int or None")

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def device_names(self) -> tuple[str, ...]:
        """Every device the persona is started with."""
        names = [self.llm] + ([self.tools_device] if self.tools else []) + list(self.devices)
        return tuple(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tools"], d["devices"] = list(self.tools), list(self.devices)
        d["quota"] = {k: v for k, v in dataclasses.asdict(self.quota).items() if v is not None}
        return d

    def content(self) -> dict[str, Any]:
        """Everything but the version: what decides whether two versions differ."""
        d = self.to_dict()
        d.pop("version")
        return d

    @staticmethod
    def from_dict(d: Any) -> "Persona":
        if not isinstance(d, dict):
            raise PersonaError(f"a persona is a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(Persona)}
        extra = sorted(set(d) - known)
        if extra:
            raise PersonaError(f"unknown persona field(s) {extra}")
        kw = dict(d)
        q = kw.get("quota")
        if isinstance(q, dict):
            try:
                kw["quota"] = Quota(**q)
            except (TypeError, ValueError) as e:
                raise PersonaError(f"persona quota: {e}") from None
        for key in ("tools", "devices"):
            if isinstance(kw.get(key), list):
                kw[key] = tuple(kw[key])
        try:
            return Persona(**kw)
        except TypeError as e:
            raise PersonaError(f"persona: {e}") from None

    def with_version(self, version: int) -> "Persona":
        return dataclasses.replace(self, version=version)


@dataclass(frozen=True)
class PersonaSpawn:
    """What `instantiate` gives: pass `image` and `options()` to `sys.spawn`."""

    image: ProcessImage
    args: dict[str, Any]
    caps: tuple[Any, ...]
    quota: Quota
    name: str
    priority: int | None = None

    def options(self, *, link: bool = False) -> dict[str, Any]:
        return {"args": self.args, "caps": self.caps, "quota": self.quota, "name": self.name,
                "priority": self.priority, "link": link}

    async def spawn(self, sys: Sys, *, link: bool = False) -> tuple[int, int]:
        pid, cap = await sys.spawn(self.image, **self.options(link=link))
        return pid, cap


async def instantiate(sys: Sys, persona: Persona, task: str | None = None, **extra: Any) -> PersonaSpawn:
    """The image and spawn options that start `persona` (on `task`, if given) with exactly its
    devices and quota. `read_only` personas get device copies without the write right."""
    if not isinstance(persona, Persona):
        raise PersonaError(f"instantiate needs a Persona, got {type(persona).__name__}")
    names = persona.device_names()
    caps: tuple[Any, ...]
    if persona.policy_class == "read_only":
        refs = []
        for name in names:
            refs.append(await sys.derive(await device_ref(sys, name), "open,read"))
        caps = tuple(refs)
    else:
        caps = names
    args = {"persona": persona.to_dict(), "task": task, **extra}
    return PersonaSpawn(PERSONA, args, caps, persona.quota, persona.label, persona.priority)


async def persona_main(sys: Sys, args: Any) -> dict[str, Any]:
    """The persona process: a ReAct agent with the persona's prompt, tools and settings."""
    from .react import react_agent

    if not isinstance(args, dict) or "persona" not in args:
        raise PersonaError("persona_main: args must be {'persona': {...}, 'task': str}")
    p = Persona.from_dict(args["persona"])
    task = args.get("task")
    if not isinstance(task, str) or not task.strip():
        raise PersonaError(f"persona {p.label}: no task to work on")
    await sys.log("info", "persona.start", persona=p.name, version=p.version, policy_class=p.policy_class)
    res = await react_agent(sys, task, list(p.tools), llm=p.llm, tools_device=p.tools_device,
                            max_steps=p.max_steps, system=p.system, max_tokens=p.max_tokens, model=p.model,
                            temperature=p.temperature, reflect=args.get("reflect"))
    return {"persona": p.name, "version": p.version, **res.to_dict()}


PERSONA = ProcessImage("persona", persona_main)


class PersonaRegistry:
    """Personas as files of a VFS mount, through this process's syscalls."""

    def __init__(self, sys: Sys, root: str = "/personas") -> None:
        if not isinstance(root, str) or not root.startswith("/") or root.rstrip("/") == "":
            raise PersonaError(f"a registry root is an absolute path below /, got {root!r}")
        self.sys = sys
        self.root = root.rstrip("/")

    async def _list(self, path: str) -> list[str]:
        from ..vfs.errors import NotFound

        try:
            out = await self.sys.vfs_list(path)
        except NotFound:
            return []
        return [str(x) for x in out]

    async def names(self) -> list[str]:
        return sorted(n for n in await self._list(self.root) if _NAME.match(n))

    async def versions(self, name: str) -> list[int]:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PersonaError(f"no persona can be named {name!r:.60}")
        return sorted(int(v) for v in await self._list(f"{self.root}/{name}") if v.isdigit())

    async def get(self, name: str, version: int | None = None) -> Persona:
        """A persona by name: the given version, or the latest."""
        vs = await self.versions(name)
        if not vs:
            raise PersonaError(f"no persona {name!r} in {self.root}")
        v = vs[-1] if version is None else version
        if v not in vs:
            raise PersonaError(f"persona {name!r} has no version {version} (versions: {vs})")
        p = Persona.from_dict(await self.sys.vfs_read(f"{self.root}/{name}/{v}"))
        if p.name != name or p.version != v:
            raise PersonaError(f"{self.root}/{name}/{v} holds {p.label}, not {name}@{v}")
        return p

    async def list(self) -> list[Persona]:
        """The latest version of every persona."""
        return [await self.get(n) for n in await self.names()]

    async def put(self, persona: Persona) -> Persona:
        """Store `persona` at its own version; writing other content over a version is refused."""
        if persona.version in await self.versions(persona.name):
            have = await self.get(persona.name, persona.version)
            if have.content() != persona.content():
                raise PersonaError(f"{persona.label} already exists with other content; versions are "
                                   f"immutable (publish a new one)")
            return have
        await self.sys.vfs_write(f"{self.root}/{persona.name}/{persona.version}", persona.to_dict())
        return persona

    async def publish(self, persona: Persona) -> Persona:
        """Store `persona` as the next version, unless the latest already says the same."""
        vs = await self.versions(persona.name)
        if vs:
            latest = await self.get(persona.name, vs[-1])
            if latest.content() == persona.content():
                return latest
        return await self.put(persona.with_version(vs[-1] + 1 if vs else 1))


def persona_store(store: Any) -> PersonaPersist:
    """A registry backend in `store`'s key-value space: personas outlive the kernel."""
    from ..store.kv import StoreKV
    from ..vfs.backends import StoreBackend

    return StoreBackend(StoreKV(store), prefix="personas")


def mount_personas(kernel: Any, backend: PersonaPersist | None = None, point: str = "/personas") -> str:
    """Mount a registry at `point` (a fresh in-memory one unless `backend` is given);
    returns the device name that grants access to it."""
    from ..vfs import install
    from ..vfs.backends import MemoryBackend

    name: str = install(kernel, checkpoints=False).mount(point, backend if backend is not None else MemoryBackend())
    return name


__all__ = ["PERSONA", "POLICY_CLASSES", "Persona", "PersonaError", "PersonaPersist", "PersonaRegistry",
           "PersonaSpawn", "instantiate", "mount_personas", "persona_main", "persona_store"]
