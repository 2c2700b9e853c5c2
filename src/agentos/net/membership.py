"""Cluster membership as leases: who is up, who is down, and when this node must fence.

Each node holds a lease in the membership table: a record `{incarnation, stamp}` whose
stamp it rewrites every renewal period. A peer is *up* while its stamp keeps changing; a
peer whose stamp has not changed for one lease period, as measured on this node's own
monotonic clock, is declared *down* (a key's TTL is not relied on: older servers do not
tell watchers when one expires, and comparing two machines' wall clocks would make the
detector depend on their skew). A node that could not renew its own lease for one lease
period fences itself: by then its peers may have declared it down, so it must stop
acting as a member before it does anything else.

Invariants: this module does no I/O and reads no clock; every decision takes `now` (this
node's monotonic seconds), so the detector is tested with plain numbers. A node declared
down stays refused at the incarnation it had: only a record with a higher incarnation
brings it back, so nothing from its old incarnation is ever accepted again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Peer:
    """What this node knows of one other node."""

    node: str
    incarnation: int
    stamp: Any                  # the lease value last read; only its changes matter
    changed_at: float           # this node's monotonic time at which `stamp` last changed
    up: bool = True
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A peer that went down or came up (`incarnation` is the one concerned)."""

    node: str
    incarnation: int
    up: bool


class Membership:
    """The failure detector's state for node `node` with a lease of `lease` seconds."""

    def __init__(self, node: str, lease: float, incarnation: int = 1) -> None:
        if not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a positive finite number of seconds, got {lease!r}")
        self.node = node
        self.lease = float(lease)
        self.incarnation = incarnation
        self.peers: dict[str, Peer] = {}
        self.refused: dict[str, int] = {}   # node → highest incarnation declared down
        self.last_renewed: float | None = None
        self.fenced = False

    # -- this node's own lease ----------------------------------------------------------
    def renewed(self, now: float) -> None:
        """Our lease write was acknowledged at `now`."""
        self.last_renewed = now

    def must_fence(self, now: float) -> bool:
        """True when our lease has gone unrenewed for a full lease period: peers may already
        have declared us down, so we may no longer act as a member."""
        return (not self.fenced and self.last_renewed is not None
                and now - self.last_renewed > self.lease)

    def fence(self) -> None:
        self.fenced = True

    def rejoin(self, now: float) -> int:
        """Come back as the next incarnation, whose lease was written at `now`; returns it."""
        self.incarnation += 1
        self.fenced = False
        self.last_renewed = now
        for peer in self.peers.values():  # start each peer's clock afresh: we saw nothing meanwhile
            peer.changed_at = math.inf
        return self.incarnation

    # -- peers --------------------------------------------------------------------------
    def observe(self, records: dict[str, tuple[Any, Any, dict[str, Any]]], now: float) -> list[Change]:
        """Fold a read of the membership table into what we know; returns what changed.

        `records` maps node → (incarnation, stamp, info) for every node in the table but
        us. A peer missing from the table counts as not renewing."""
        changes: list[Change] = []
        for node, (inc, stamp, info) in records.items():
            if node == self.node or type(inc) is not int:
                continue
            if inc <= self.refused.get(node, 0):
                continue  # a stale record of an incarnation we declared down
            peer = self.peers.get(node)
            if peer is None or inc > peer.incarnation:
                if peer is not None and peer.up:
                    changes.append(Change(node, peer.incarnation, False))
                    self.refused[node] = max(self.refused.get(node, 0), peer.incarnation)
                self.peers[node] = Peer(node, inc, stamp, now, True, dict(info))
                changes.append(Change(node, inc, True))
                continue
            if inc < peer.incarnation:
                continue
            if stamp != peer.stamp:
                peer.stamp = stamp
                peer.changed_at = now
                peer.info = dict(info)
            elif peer.changed_at == math.inf:
                peer.changed_at = now
        for peer in self.peers.values():
            if not peer.up:
                continue
            if peer.changed_at != math.inf and now - peer.changed_at > self.lease:
                peer.up = False
                self.refused[peer.node] = max(self.refused.get(peer.node, 0), peer.incarnation)
                changes.append(Change(peer.node, peer.incarnation, False))
        return changes

    def accepts(self, node: str, incarnation: Any) -> bool:
        """Whether a frame from `node` at `incarnation` may be acted on: the node is a live
        member at exactly that incarnation (not fenced ourselves, not an old incarnation)."""
        if self.fenced or type(incarnation) is not int:
            return False
        peer = self.peers.get(node)
        return peer is not None and peer.up and peer.incarnation == incarnation

    def up_nodes(self) -> list[str]:
        return sorted(p.node for p in self.peers.values() if p.up)


__all__ = ["Change", "Membership", "Peer"]
