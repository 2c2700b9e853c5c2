"""The Merkle tree hash of RFC 9162 (Certificate Transparency 2.0), over audit records.

    leaf hash  = SHA-256(0x00 || leaf data)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256()
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])) for k the largest power of two < n

`Frontier` keeps only the roots of the perfect subtrees (one per set bit of the size), so
appending is O(log n) and the root of the whole log is always at hand; folding those roots
right to left gives exactly the RFC's split. `inclusion_path` and `verify_inclusion` are
RFC 9162 §2.1.3.1 and §2.1.3.2.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """An append-only Merkle tree that remembers only what the next root needs."""

    __slots__ = ("size", "nodes")

    def __init__(self, size: int = 0, nodes: Sequence[tuple[int, bytes]] = ()) -> None:
        self.size = size
        self.nodes: list[tuple[int, bytes]] = list(nodes)   # (height, hash), tallest first
        if sum(1 << h for h, _ in self.nodes) != size:
            raise ValueError(f"a frontier of {len(self.nodes)} subtrees cannot hold {size} leaves")

    def append(self, leaf: bytes) -> None:
        """Add one leaf *hash*."""
        h, height = leaf, 0
        nodes = self.nodes
        while nodes and nodes[-1][0] == height:
            h = node_hash(nodes.pop()[1], h)
            height += 1
        nodes.append((height, h))
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        h = self.nodes[-1][1]
        for _height, left in reversed(self.nodes[:-1]):
            h = node_hash(left, h)
        return h

    def copy(self) -> "Frontier":
        return Frontier(self.size, self.nodes)

    def dump(self) -> list[list[object]]:
        return [[h, x.hex()] for h, x in self.nodes]

    @classmethod
    def load(cls, size: int, data: Iterable[Sequence[object]]) -> "Frontier":
        nodes = []
        for item in data:
            h, x = item
            if not isinstance(h, int) or not isinstance(x, str):
                raise ValueError("a frontier entry is [height, hex]")
            nodes.append((h, bytes.fromhex(x)))
        return cls(size, nodes)


def root_of(leaves: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes, in linear time and logarithmic memory."""
    f = Frontier()
    for leaf in leaves:
        f.append(leaf)
    return f.root()


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the sibling hashes from leaf `index` up to the root of `leaves`."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is not in a tree of {n}")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    while hi - lo > 1:  # descend; the siblings are collected from the top
        k = _split(hi - lo)
        if m < k:
            path.append(root_of(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root_of(leaves[lo:lo + k]))
            lo, m = lo + k, m - k
    path.reverse()  # the RFC lists them from the leaf up
    return path


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `path` prove leaf hash `leaf` at `index` in the tree `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


__all__ = ["EMPTY_ROOT", "Frontier", "inclusion_path", "leaf_hash", "node_hash", "root_of", "verify_inclusion"]
