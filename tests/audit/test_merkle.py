"""RFC 9162 Merkle tree hash and inclusion proofs, checked against an implementation
written here straight from the RFC's definitions (recursive, no shared code) and against
the published Certificate Transparency test vectors."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentos.audit.merkle import (
    EMPTY_ROOT, Frontier, inclusion_path, leaf_hash, node_hash, root_of, verify_inclusion,
)


# -- the RFC, transcribed ---------------------------------------------------------------------
def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def rfc_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, over leaf *data*."""
    n = len(d)
    if n == 0:
        return H(b"")
    if n == 1:
        return H(b"\x00" + d[0])
    k = 1
    while k * 2 < n:   # the largest power of two smaller than n
        k *= 2
    return H(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:]))


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return rfc_path(m, d[:k]) + [rfc_mth(d[k:])]
    return rfc_path(m - k, d[k:]) + [rfc_mth(d[:k])]


# The inputs and roots of the Certificate Transparency reference test (merkle_tree_test).
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_hash_prefixes_are_the_rfcs() -> None:
    assert leaf_hash(b"abc") == H(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == H(b"\x01" + b"L" * 32 + b"R" * 32)
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("n", range(1, 9))
def test_ct_reference_vectors(n: int) -> None:
    leaves = [leaf_hash(x) for x in CT_LEAVES[:n]]
    assert root_of(leaves).hex() == CT_ROOTS[n - 1]
    assert rfc_mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]  # the transcription agrees too


def test_frontier_root_equals_the_rfc_definition_for_every_size_to_200() -> None:
    data = [i.to_bytes(4, "big") * (i % 5) for i in range(200)]
    f = Frontier()
    assert f.root() == rfc_mth([])
    for n in range(1, 201):
        f.append(leaf_hash(data[n - 1]))
        assert f.size == n
        assert f.root() == rfc_mth(data[:n]), n


def test_frontier_survives_a_dump_and_load() -> None:
    f = Frontier()
    for i in range(37):
        f.append(leaf_hash(bytes([i])))
    g = Frontier.load(f.size, f.dump())
    assert g.root() == f.root()
    g.append(leaf_hash(b"next"))
    f.append(leaf_hash(b"next"))
    assert g.root() == f.root()
    with pytest.raises(ValueError):
        Frontier.load(36, f.dump())   # sizes that the subtrees cannot add up to


def test_inclusion_paths_equal_the_rfc_and_verify_for_every_leaf_to_64() -> None:
    for n in range(1, 65):
        data = [b"rec%d" % i for i in range(n)]
        leaves = [leaf_hash(x) for x in data]
        root = rfc_mth(data)
        for m in range(n):
            path = inclusion_path(m, leaves)
            assert path == rfc_path(m, data), (n, m)
            assert verify_inclusion(m, n, leaves[m], path, root), (n, m)


def test_inclusion_proofs_fail_for_the_wrong_leaf_index_size_path_or_root() -> None:
    data = [b"r%d" % i for i in range(13)]
    leaves = [leaf_hash(x) for x in data]
    root = root_of(leaves)
    path = inclusion_path(5, leaves)
    assert verify_inclusion(5, 13, leaves[5], path, root)
    assert not verify_inclusion(5, 13, leaves[6], path, root)          # another record
    assert not verify_inclusion(6, 13, leaves[5], path, root)          # another position
    assert not verify_inclusion(5, 6, leaves[5], path, root)           # a tree size of another shape
    assert not verify_inclusion(5, 13, leaves[5], path[:-1], root)     # a short path
    assert not verify_inclusion(5, 13, leaves[5], path + [root], root)  # a long path
    assert not verify_inclusion(5, 13, leaves[5], list(reversed(path)), root)
    assert not verify_inclusion(13, 13, leaves[5], path, root)         # index past the end
    assert not verify_inclusion(-1, 13, leaves[5], path, root)
    bad = [bytes(32)] + path[1:]
    assert not verify_inclusion(5, 13, leaves[5], bad, root)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(data=st.lists(st.binary(max_size=8), min_size=1, max_size=70), pick=st.integers(0, 10**6))
def test_any_log_any_leaf(data: list[bytes], pick: int) -> None:
    m = pick % len(data)
    leaves = [leaf_hash(x) for x in data]
    root = rfc_mth(data)
    assert root_of(leaves) == root
    assert verify_inclusion(m, len(data), leaves[m], inclusion_path(m, leaves), root)
