"""Inter-agent trust: kernel-held identities, attestations, trust scores and SIGTRUST.

Identity. Every process has an Ed25519 key pair that the kernel holds and the process
never sees. It is derived (HKDF-SHA256) from the kernel's seed, the pid and the node's
incarnation (journaled with the node's "net.sources" entry), so a seeded
kernel and its replay hold the same keys and sign the same bytes (Ed25519 signatures are
deterministic); it is made on first use, so spawning costs nothing. The node has a key
of its own, derived from the seed the same way, which certifies each process key.
`attest()` returns an attestation: the claims (node, pid, incarnation, image, persona
when there is one, parent, issued-at), the process's public key, the node's certificate
over (node, pid, incarnation, key) and the process key's signature over all of it.
`verify_attestation(att, node_key)` checks both signatures; anything else (another
shape, a changed claim, a key the node never certified) is an `AttestationError`.

Scores. A score is in [0, 1]; a process starts at `initial`. Misbehaviour the kernel sees
itself (a policy denial, a permissive-mode violation, a refused capability, a child
killed for quota) takes off the weight the policy's `trust:` section gives it; when that
takes the score below `kill_below`, the kernel raises SIGTRUST (unmaskable; an event
always, a flight-recorder record when one is configured) and the process exits `trust`.
Peers' `report`s take off `weight * report_weight * reporter's score`, capped per reporter
(the reporter and every ancestor it does not share with the target draw on one cap, so a
swarm of children spends its parent's) and per target, and never below `report_floor`,
which is above `kill_below`: reports can cost a process access (`min_trust`) but never
its life. Reports therefore never raise SIGTRUST; only the kernel's own evidence does.

Invariants: the score of a process is a pure function of the evidence and reports in the
event log (replay recomputes it); nothing here runs on the send path unless a policy rule
names `send`; records exist only for processes that were scored or attested.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..abi.errors import AttestationError, BadArgument, CapError
from ..abi.syscalls import Attest, Report, TrustScore, Verify
from ..abi.types import KERNEL_PID, Signal
from ..kernel import args as A
from ..kernel.caps import PROC, R_ANY
from ..kernel.process import EXITED, Process

if TYPE_CHECKING:
    from ..kernel.kernel import Kernel

ATTESTATION_VERSION = 1
_CERT_DOMAIN = b"agentos trust cert v1\x00"
_CLAIMS_DOMAIN = b"agentos trust claims v1\x00"
_KDF_SALT = b"agentos trust keys v1"
_FIELDS = frozenset({"v", "node", "pid", "incarnation", "image", "image_ref", "persona", "parent",
                     "issued_at", "key", "cert", "sig"})
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_PID_MAX = (1 << 63) - 1
MAX_EVIDENCE = 200
"""The longest evidence text a report may carry, characters."""
MAX_LINEAGE = 64
"""How many ancestors of a reporter share its cap (deeper ones are charged to the 64th)."""
SETTINGS_OP = "trust.settings"
SETTINGS_INDEX = -1
"""The journal entry (pid 0, index -1) that holds a run's trust settings."""
LOCAL_NODE = "local"
"""The node a kernel on no network names in its attestations."""


def _canon(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _derive(seed: int, info: bytes) -> Any:
    """An Ed25519 private key from the kernel's seed (cryptography is imported here, lazily)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_KDF_SALT, info=info).derive(str(seed).encode())
    return Ed25519PrivateKey.from_private_bytes(raw)


def _public_raw(priv: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _ed25519_ok(public: bytes, sig: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _cert_bytes(node: str, pid: int, incarnation: int, key: str) -> bytes:
    return _CERT_DOMAIN + _canon({"node": node, "pid": pid, "incarnation": incarnation, "key": key})


def _claims_bytes(att: dict[str, Any]) -> bytes:
    return _CLAIMS_DOMAIN + _canon({k: v for k, v in att.items() if k != "sig"})


def _node_key_bytes(node_key: Any) -> bytes:
    if type(node_key) is str and _HEX64.fullmatch(node_key):
        return bytes.fromhex(node_key)
    if type(node_key) is bytes and len(node_key) == 32:
        return node_key
    raise BadArgument(f"a node key is 32 raw bytes or 64 lowercase hex digits, got {A.shown(node_key, 60)}")


def _shape_problem(att: Any) -> str | None:
    """What makes `att` not an attestation's shape, or None. Checks types and sizes before
    anything is encoded, so a hostile value costs no more than its first wrong field."""
    if type(att) is not dict:
        return f"an attestation is a dict, got {type(att).__name__}"
    # keys and values are type-checked before anything hashes or compares them, so a
    # value with a hostile __hash__ or __eq__ never runs in the kernel
    if len(att) != len(_FIELDS) or any(type(k) is not str for k in att) or set(att) != _FIELDS:
        return "the fields are not those of an attestation"
    if type(att["v"]) is not int or att["v"] != ATTESTATION_VERSION:
        return f"version {A.shown(att['v'], 30)} is not {ATTESTATION_VERSION}"
    if type(att["node"]) is not str or _NODE.fullmatch(att["node"]) is None:
        return "node is not a node name"
    for k, lo in (("pid", 1), ("incarnation", 0), ("parent", 0)):
        v = att[k]
        if type(v) is not int or not lo <= v <= _PID_MAX:
            return f"{k} must be an int in [{lo}, 2**63), got {A.shown(v, 30)}"
    t = att["issued_at"]
    if type(t) not in (int, float) or not 0 <= t < 1e300:  # NaN, inf and 10**400 fail (no float())
        return f"issued_at must be a finite time >= 0, got {A.shown(t, 30)}"
    for k, limit, optional in (("image", 256, False), ("image_ref", 512, True)):
        v = att[k]
        if v is None and optional:
            continue
        if type(v) is not str or not v or len(v) > limit or not v.isascii():
            return f"{k} must be ASCII text of 1-{limit} characters"
    p = att["persona"]
    if p is not None:
        if type(p) is not dict or len(p) != 3 or any(type(k) is not str for k in p) \
                or set(p) != {"name", "version", "digest"}:
            return "persona must be null or {name, version, digest}"
        if type(p["name"]) is not str or not 0 < len(p["name"]) <= 256 or not p["name"].isascii():
            return "persona.name must be ASCII text of 1-256 characters"
        if type(p["version"]) is not int or not 0 <= p["version"] <= _PID_MAX:
            return "persona.version must be an int >= 0"
        if type(p["digest"]) is not str or _HEX64.fullmatch(p["digest"]) is None:
            return "persona.digest must be 64 hex digits"
    if type(att["key"]) is not str or _HEX64.fullmatch(att["key"]) is None:
        return "key must be 64 lowercase hex digits"
    for k in ("cert", "sig"):
        if type(att[k]) is not str or _HEX128.fullmatch(att[k]) is None:
            return f"{k} must be 128 lowercase hex digits"
    return None


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy sharing no mutable part with `doc` (an attestation or its claims: scalars and
    the persona, a flat dict). What a process is given reaches it by reference: a shared
    persona dict would let it edit the kernel's memo of verified claims, or the
    attestation its remote sends carry."""
    p = doc.get("persona")
    return {**doc, "persona": dict(p)} if type(p) is dict else dict(doc)


def verify_attestation(att: Any, node_key: bytes | str) -> dict[str, Any]:
    """The claims of `att` (a copy, without the signatures) if the node whose public key is
    `node_key` certified its process key and that key signed every claim; otherwise an
    `AttestationError` whose `reason` is malformed, forged (the key was not certified by
    this node) or tampered (a claim was changed after it was signed)."""
    public = _node_key_bytes(node_key)
    problem = _shape_problem(att)
    if problem is not None:
        raise AttestationError("malformed", problem)
    cert_ok = _ed25519_ok(public, bytes.fromhex(att["cert"]),
                          _cert_bytes(att["node"], att["pid"], att["incarnation"], att["key"]))
    if not cert_ok:
        raise AttestationError("forged", f"the key of pid {att['pid']} on node {att['node']!r} was not "
                                         f"certified by that node's key")
    if not _ed25519_ok(bytes.fromhex(att["key"]), bytes.fromhex(att["sig"]), _claims_bytes(att)):
        raise AttestationError("tampered", f"the claims of pid {att['pid']} on node {att['node']!r} do not "
                                           f"match their signature")
    return _copy({k: v for k, v in att.items() if k not in ("cert", "sig")})


def _settings_value(st: Any) -> dict[str, Any]:
    return {"initial": st.initial, "kill_below": st.kill_below, "report_floor": st.report_floor,
            "report_weight": st.report_weight, "per_reporter_cap": st.per_reporter_cap,
            "per_target_cap": st.per_target_cap, "evidence": dict(st.evidence)}


def _settings_from(value: Any) -> Any:
    """Trust settings back from their journal entry; None if it does not hold any."""
    from ..policy.loader import TrustSettings

    def score(v: Any) -> float:  # the loader's rule: a number in [0, 1], compared before float()
        if type(v) not in (int, float) or not 0 <= v <= 1:
            raise ValueError(f"{A.shown(v, 30)} is not a score")
        return float(v)

    try:
        ev = value["evidence"]
        st = TrustSettings(score(value["initial"]), score(value["kill_below"]), score(value["report_floor"]),
                           score(value["report_weight"]), score(value["per_reporter_cap"]),
                           score(value["per_target_cap"]), tuple((str(k), score(w)) for k, w in ev.items()))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    if not st.kill_below < st.report_floor <= st.initial:  # what the loader requires: reports never kill
        return None
    return st


def _persona_of(args: Any) -> dict[str, Any] | None:
    """The persona a process was started as ({"persona": {...}} in its spawn args), named by
    name, version and the digest of its whole description; None for any other process."""
    p = args.get("persona") if type(args) is dict else None
    if type(p) is not dict:
        return None
    name, version = p.get("name"), p.get("version", 0)
    if type(name) is not str or not 0 < len(name) <= 256 or not name.isascii():
        return None
    if type(version) is not int or not 0 <= version <= _PID_MAX:
        version = 0
    try:
        digest = hashlib.sha256(_canon(p)).hexdigest()
    except (TypeError, ValueError, RecursionError):
        return None
    return {"name": name, "version": version, "digest": digest}


class _Record:
    """What the kernel knows of one process's trust."""

    __slots__ = ("kernel_penalty", "peer_penalty", "by_reporter", "key", "cert", "attestation")

    def __init__(self) -> None:
        self.kernel_penalty = 0.0
        self.peer_penalty = 0.0
        self.by_reporter: dict[int, float] | None = None   # charged pid -> penalty it took off
        self.key: Any = None                                # Ed25519 private key, made on first use
        self.cert: tuple[tuple[str, int], str, str] | None = None  # ((node, incarnation), key hex, cert hex)
        self.attestation: dict[str, Any] | None = None      # the last one issued (reused on the wire)


@dataclass
class TrustStats:
    kills: int = 0
    reports: int = 0
    refused_ingress: int = 0
    unverified_ingress: int = 0


class TrustService:
    """One kernel's trust service: install with `install(kernel)` (a default extension)."""

    def __init__(self, kernel: "Kernel") -> None:
        self.k = kernel
        self._recs: dict[int, _Record] = {}
        self._prune_at = 4096
        self._node_priv: Any = None
        self._node_pub: bytes | None = None
        self.node_keys: dict[str, bytes] = {}   # node -> its published public key (pinned)
        self._verified: dict[bytes, dict[str, Any]] = {}
        self._pol: Any = None
        self._settings: Any = None
        self._booted = False
        self.stats = TrustStats()

    # -- settings -----------------------------------------------------------------------
    def settings(self) -> Any:
        """The `trust:` section of the kernel's policy (defaults when it has none). A live
        kernel journals a section that is not the default (op "trust.settings"), and a
        replaying one reads it back from there: its policy is answered from the journal
        and may not be the engine that held the section."""
        pol = self.k.policy
        if pol is self._pol and self._settings is not None:
            return self._settings
        from ..policy.loader import TrustSettings

        self._pol = pol
        journal = self.k.journal
        if self.k.replaying:
            e = journal.lookup(KERNEL_PID, SETTINGS_INDEX) if journal is not None else None
            st = _settings_from(e.value) if e is not None and e.op == SETTINGS_OP else None
        else:
            st = getattr(pol, "trust_settings", None)
            if not isinstance(st, TrustSettings):
                st = None
            before = self._settings if self._settings is not None else TrustSettings()
            if self._booted and journal is not None and (st if st is not None else TrustSettings()) != before:
                self._journal(st if st is not None else TrustSettings())
        self._settings = st if st is not None else TrustSettings()
        return self._settings

    def _journal(self, st: Any) -> None:
        from ..kernel.journal import JournalEntry

        journal = self.k.journal
        if journal is not None:
            journal.record(JournalEntry(KERNEL_PID, SETTINGS_INDEX, SETTINGS_OP, "trust", None, None, True,
                                        _settings_value(st)))

    def booted(self) -> None:
        """The run starts (a recorder, if any, is listening): journal a section that is not
        the default, so the replay scores with it too. Called by `Kernel.boot`."""
        from ..policy.loader import TrustSettings

        self._booted = True
        if self.k.replaying:
            return
        st = self.settings()
        if st != TrustSettings():
            self._journal(st)

    # -- scores -------------------------------------------------------------------------
    def _rec(self, pid: int) -> _Record:
        rec = self._recs.get(pid)
        if rec is None:
            if len(self._recs) >= self._prune_at:  # records of exited processes go, amortised
                procs = self.k.procs
                self._recs = {p: r for p, r in self._recs.items() if p in procs}
                self._prune_at = max(4096, 2 * len(self._recs))
            rec = self._recs[pid] = _Record()
        return rec

    def _score(self, rec: _Record | None) -> float:
        st = self.settings()
        if rec is None:
            return st.initial
        base = max(0.0, round(st.initial - rec.kernel_penalty, 9))
        room = max(0.0, base - st.report_floor)
        return round(base - min(rec.peer_penalty, room), 9)

    def score(self, pid: int) -> float | None:
        """The score of live process `pid` (None if there is none)."""
        if pid not in self.k.procs:
            return None
        return self._score(self._recs.get(pid))

    def evidence(self, proc: Process, kind: str) -> None:
        """Misbehaviour the kernel saw `proc` do: lower its score by the policy's weight for
        `kind`; below the kill threshold, SIGTRUST."""
        if proc.state is EXITED or proc.pid == KERNEL_PID:
            return
        st = self.settings()
        w = st.weight_of(kind)
        if w <= 0.0:
            return
        rec = self._rec(proc.pid)
        rec.kernel_penalty = round(rec.kernel_penalty + w, 9)
        # no event of its own: the evidence is already in the log (the `policy`, `error` or
        # `exit` event that showed it), so a score is a fold of the log, and a run recorded
        # before trust scoring replays to the same bytes
        base = st.initial - rec.kernel_penalty
        if round(base, 9) < st.kill_below:
            self._sigtrust(proc, kind, self._score(rec), st.kill_below)

    def _sigtrust(self, proc: Process, kind: str, score: float, threshold: float) -> None:
        detail = f"score {score:.3f} below {threshold:g} after {kind}"
        self.stats.kills += 1
        self.k.events.emit(proc.pid, "trust_kill", {"score": score, "threshold": threshold, "evidence": kind})
        audit = self.k.audit
        if audit is not None:
            try:
                audit.note(proc.pid, "sigtrust", {"score": score, "threshold": threshold, "evidence": kind})
            except Exception as e:  # the kill stands; the recorder's failure is recorded
                self.k.events.emit(KERNEL_PID, "audit_error", f"sigtrust: {type(e).__name__}: {e}"[:300])
        self.k.signals.deliver(proc, Signal.SIGTRUST, KERNEL_PID, detail)

    def _charged(self, reporter: Process, target: Process) -> list[int]:
        """Whose caps a report by `reporter` on `target` draws on: the reporter and its
        ancestors that are not also the target's (a subtree reports as one)."""
        theirs: set[int] = set()
        p: Process | None = target
        n = 0
        while p is not None and n < 4 * MAX_LINEAGE:
            theirs.add(p.pid)
            p = p.parent
            n += 1
        out: list[int] = []
        p = reporter
        while p is not None and p.pid not in theirs and len(out) < MAX_LINEAGE:
            out.append(p.pid)
            p = p.parent
        return out or [reporter.pid]

    def report(self, reporter: Process, target: Process, evidence: str, weight: float) -> float:
        """A peer's report; returns the penalty applied (0.0 once a cap is spent)."""
        st = self.settings()
        rec = self._rec(target.pid)
        want = weight * st.report_weight * self._score(self._recs.get(reporter.pid))
        charged = self._charged(reporter, target)
        by = rec.by_reporter
        if by is None:
            by = rec.by_reporter = {}
        room = min(st.per_reporter_cap - by.get(c, 0.0) for c in charged)
        applied = round(max(0.0, min(want, room, st.per_target_cap - rec.peer_penalty)), 9)
        if applied > 0.0:
            for c in charged:
                by[c] = round(by.get(c, 0.0) + applied, 9)
            rec.peer_penalty = round(rec.peer_penalty + applied, 9)
        self.stats.reports += 1
        self.k.events.emit(target.pid, "trust_report", (reporter.pid, evidence, applied, self._score(rec)))
        return applied  # never SIGTRUST: reports alone stop at report_floor, above kill_below

    # -- keys and attestations ----------------------------------------------------------
    def node_name(self) -> str:
        name = getattr(self.k, "_net_name", None)
        return name if type(name) is str else LOCAL_NODE

    def incarnation(self) -> int:
        """The node's incarnation: the live node's, or in replay the one its journal names."""
        net = getattr(self.k, "net", None)
        inc = getattr(net, "incarnation", 0) if net is not None else getattr(self.k, "_net_incarnation", 0)
        return inc if type(inc) is int else 0

    def node_public_key(self) -> bytes:
        """This kernel's node key (raw, 32 bytes): what peers pin to verify its attestations."""
        if self._node_pub is None:
            self._node_priv = _derive(self.k.seed, b"node")
            self._node_pub = _public_raw(self._node_priv)
        return self._node_pub

    def trust_node(self, node: str, public_key: bytes | str) -> None:
        """Pin `node`'s published key: its remote sends must then carry an attestation that
        verifies against it, or they are dropped at ingress (reason `attestation`)."""
        if type(node) is not str or _NODE.fullmatch(node) is None:
            raise BadArgument(f"trust_node: {A.shown(node, 60)} is not a node name")
        key = _node_key_bytes(public_key)
        if node == self.node_name():  # its own attestations are checked with the key it holds
            if key == self.node_public_key():
                return  # a map of every node's key, this one's included: nothing to pin
            raise BadArgument(f"trust_node: {node!r} is this kernel's own node, and that is not its key "
                              f"(its own attestations are checked with the key it derives)")
        self.node_keys[node] = key
        self._verified.clear()

    def attest(self, proc: Process) -> dict[str, Any]:
        """A fresh attestation of `proc`, signed with the key the kernel holds for it."""
        rec = self._rec(proc.pid)
        node, inc = self.node_name(), self.incarnation()
        if rec.key is None:  # seed + pid + incarnation: a restarted node's processes get new keys
            rec.key = _derive(self.k.seed, b"proc:%d:%d" % (proc.pid, inc))
        if rec.cert is None or rec.cert[0] != (node, inc):  # the node certifies the key once
            key_hex = _public_raw(rec.key).hex()
            self.node_public_key()
            rec.cert = ((node, inc), key_hex, self._node_priv.sign(_cert_bytes(node, proc.pid, inc, key_hex)).hex())
        _, key_hex, cert = rec.cert
        image = proc.image
        ref = None
        main = getattr(image, "main", None)
        mod, qual = getattr(main, "__module__", None), getattr(main, "__qualname__", None)
        if type(mod) is str and type(qual) is str and (mod + qual).isascii():
            ref = f"{mod}:{qual}"[:512]
        name = image.name if type(image.name) is str and image.name.isascii() and image.name else "anonymous"
        att: dict[str, Any] = {
            "v": ATTESTATION_VERSION, "node": node, "pid": proc.pid, "incarnation": inc,
            "image": name[:256], "image_ref": ref, "persona": _persona_of(proc.args),
            "parent": proc.parent.pid if proc.parent is not None else 0,
            "issued_at": float(self.k.clock.now()), "key": key_hex, "cert": cert}
        att["sig"] = rec.key.sign(_claims_bytes(att)).hex()
        rec.attestation = att
        return att

    def wire_attestation(self, pid: int) -> dict[str, Any] | None:
        """What a remote send by `pid` carries: its last attestation if it still names this
        node and incarnation, else a new one."""
        proc = self.k.procs.get(pid)
        if proc is None:
            return None
        rec = self._recs.get(pid)
        att = rec.attestation if rec is not None else None
        if att is None or att["node"] != self.node_name() or att["incarnation"] != self.incarnation():
            att = self.attest(proc)
        return att

    def verify(self, att: Any) -> dict[str, Any]:
        """Kernel-side check: `att` against the key of the node it names (this kernel's own,
        or one pinned with `trust_node`)."""
        problem = _shape_problem(att)
        if problem is not None:
            raise AttestationError("malformed", problem)
        node = att["node"]
        key = self.node_public_key() if node == self.node_name() else self.node_keys.get(node)
        if key is None:
            raise AttestationError("unknown_node", f"no published key is pinned for node {node!r}")
        memo = hashlib.sha256(key + _canon(att)).digest()
        hit = self._verified.get(memo)
        if hit is not None:
            return _copy(hit)
        claims = verify_attestation(att, key)  # a copy: nothing in it is the caller's
        if len(self._verified) >= 4096:
            self._verified.clear()
        self._verified[memo] = claims
        return _copy(claims)

    def check_ingress(self, env: Any) -> str | None:
        """Why an envelope from another node must be dropped, or None. A node whose key is
        pinned must attest each send, for the very pid and incarnation it claims."""
        key = self.node_keys.get(env.from_node)
        att = getattr(env, "att", None)
        if key is None:
            if att is not None:
                self.stats.unverified_ingress += 1
            return None
        if att is None:
            return f"node {env.from_node!r} publishes a key but the message carries no attestation"
        try:
            claims = self.verify(att)
        except AttestationError as e:
            return str(e)
        except BadArgument as e:
            return f"malformed: {e}"
        if (claims["node"], claims["pid"], claims["incarnation"]) != (env.from_node, env.from_pid, env.incarnation):
            return (f"the attestation is of {claims['node']}/{claims['pid']} (incarnation "
                    f"{claims['incarnation']}), not of the sender {env.from_node}/{env.from_pid}")
        return None

    # -- syscalls -----------------------------------------------------------------------
    def sys_attest(self, proc: Process, req: Attest) -> dict[str, Any]:
        return _copy(self.attest(proc))  # the kernel's own is what remote sends carry

    def sys_verify(self, proc: Process, req: Verify) -> dict[str, Any]:
        return self.verify(req.attestation)

    def _target(self, proc: Process, ref: Any, what: str) -> Process:
        cap = self.k.caps.resolve(proc, ref, R_ANY, what)
        if cap.kind != PROC:
            raise CapError(f"{what}: the capability designates a {cap.describe()['kind']}, not a "
                           f"process on this kernel")
        target: Process = cap.target
        return target

    def sys_report(self, proc: Process, req: Report) -> float:
        ev = req.evidence
        if type(ev) is str and len(ev) > MAX_EVIDENCE:  # before any encoding: 50 MB costs a len()
            raise BadArgument(f"report: evidence is {len(ev)} characters; at most {MAX_EVIDENCE} are allowed")
        evidence = A.text("report: evidence", ev, empty=False, max_len=MAX_EVIDENCE)
        weight = A.number("report: weight", req.weight)
        if not 0.0 < weight <= 1.0:
            raise BadArgument(f"report: weight must be in (0, 1], got {weight!r}")
        target = self._target(proc, req.cap, "report")
        if target is proc:
            raise BadArgument("report: a process cannot report itself")
        if target.state is EXITED:
            return 0.0
        return self.report(proc, target, evidence, float(weight))

    def sys_trust(self, proc: Process, req: TrustScore) -> float:
        if req.cap is None:
            return self._score(self._recs.get(proc.pid))
        target = self._target(proc, req.cap, "trust")
        if target.state is EXITED:
            raise CapError("trust: the process has exited")
        return self._score(self._recs.get(target.pid))

    def describe(self) -> dict[str, Any]:
        st = self.settings()
        return {"kill_below": st.kill_below, "report_floor": st.report_floor, "kills": self.stats.kills,
                "reports": self.stats.reports, "refused_ingress": self.stats.refused_ingress,
                "unverified_ingress": self.stats.unverified_ingress, "pinned_nodes": sorted(self.node_keys)}


def install(kernel: "Kernel") -> TrustService:
    """The trust extension: give `kernel` a trust service and its syscalls."""
    svc = TrustService(kernel)
    kernel.trust = svc
    kernel.install_syscall(Attest, svc.sys_attest)
    kernel.install_syscall(Verify, svc.sys_verify)
    kernel.install_syscall(Report, svc.sys_report)
    kernel.install_syscall(TrustScore, svc.sys_trust)
    return svc


__all__ = ["ATTESTATION_VERSION", "LOCAL_NODE", "TrustService", "install", "verify_attestation"]
