"""The RFC 9162 Merkle tree: roots, the compact range, inclusion and consistency proofs."""

from __future__ import annotations

import hashlib

import pytest

from ringfence.core.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# The test vectors of RFC 6962's reference implementation (certificate-transparency).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
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
CT_HASHES = [leaf_hash(x) for x in CT_LEAVES]

MAX = 70
LEAVES = [leaf_hash(f"record {i}".encode()) for i in range(MAX)]
ROOTS = [root_of(LEAVES[:n]) for n in range(MAX + 1)]
OTHER = leaf_hash(b"not a record")


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    # a leaf can never pass for an interior node with the same bytes
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_rfc6962_reference_roots() -> None:
    assert [root_of(CT_HASHES[:n]).hex() for n in range(1, 9)] == CT_ROOTS


def test_rfc6962_reference_proofs() -> None:
    assert [p.hex()[:8] for p in inclusion_proof(0, CT_HASHES)] == [
        "96a296d2",
        "5f083f0a",
        "6b47aaf2",
    ]
    assert [p.hex()[:8] for p in inclusion_proof(5, CT_HASHES)] == [
        "bc1a0643",
        "ca854ea1",
        "d37ee418",
    ]
    assert [p.hex()[:8] for p in consistency_proof(1, CT_HASHES)] == [
        "96a296d2",
        "5f083f0a",
        "6b47aaf2",
    ]
    assert [p.hex()[:8] for p in consistency_proof(6, CT_HASHES)] == [
        "0ebc5d34",
        "ca854ea1",
        "d37ee418",
    ]
    assert [p.hex()[:8] for p in consistency_proof(2, CT_HASHES[:5])] == ["5f083f0a", "bc1a0643"]


class TestCompactRange:
    def test_root_matches_root_of_for_every_size(self) -> None:
        tree = CompactRange()
        assert tree.root() == ROOTS[0]
        for n, leaf in enumerate(LEAVES, start=1):
            tree.append(leaf)
            assert tree.size == n
            assert tree.root() == ROOTS[n], n
            assert len(tree.hashes) == bin(n).count("1")

    def test_state_round_trip_and_resume(self) -> None:
        tree = CompactRange()
        for leaf in LEAVES[:37]:
            tree.append(leaf)
        state = tree.state()
        assert len(state) == 32 * bin(37).count("1")
        resumed = CompactRange.from_state(37, state)
        assert resumed.root() == ROOTS[37]
        for leaf in LEAVES[37:]:
            resumed.append(leaf)
        assert resumed.root() == ROOTS[MAX]

    @pytest.mark.parametrize(("size", "count"), [(0, 1), (1, 0), (3, 1), (4, 2)])
    def test_wrong_number_of_hashes(self, size: int, count: int) -> None:
        with pytest.raises(ValueError, match=f"a tree of size {size} needs"):
            CompactRange(size, [b"x" * 32] * count)

    def test_resuming_with_a_wrong_state_gives_a_different_root(self) -> None:
        tree = CompactRange.from_state(3, LEAVES[0] + LEAVES[1])
        assert tree.root() != ROOTS[3]


class TestInclusion:
    def test_every_leaf_of_every_size_verifies(self) -> None:
        for n in range(1, MAX + 1):
            for i in range(n):
                proof = inclusion_proof(i, LEAVES[:n])
                assert verify_inclusion(i, n, LEAVES[i], proof, ROOTS[n]), (i, n)

    def test_wrong_leaf_index_size_or_root_fails(self) -> None:
        for n in range(1, MAX + 1):
            for i in range(n):
                proof = inclusion_proof(i, LEAVES[:n])
                assert not verify_inclusion(i, n, OTHER, proof, ROOTS[n])
                assert not verify_inclusion(i, n, LEAVES[i], proof, ROOTS[n - 1])
                for j in (i - 1, i + 1):
                    if 0 <= j < n:
                        assert not verify_inclusion(j, n, LEAVES[i], proof, ROOTS[n]), (i, j, n)
                for m in (n - 1, n + 1):
                    if i < m <= MAX:
                        assert not verify_inclusion(i, m, LEAVES[i], proof, ROOTS[m]), (i, n, m)

    def test_tampered_proofs_fail(self) -> None:
        for n in range(2, MAX + 1, 7):
            for i in range(0, n, 3):
                proof = inclusion_proof(i, LEAVES[:n])
                assert not verify_inclusion(i, n, LEAVES[i], proof[:-1], ROOTS[n])
                assert not verify_inclusion(i, n, LEAVES[i], [*proof, OTHER], ROOTS[n])
                for k in range(len(proof)):
                    bad = list(proof)
                    bad[k] = OTHER
                    assert not verify_inclusion(i, n, LEAVES[i], bad, ROOTS[n])

    def test_single_leaf_tree(self) -> None:
        assert inclusion_proof(0, LEAVES[:1]) == []
        assert verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])
        assert not verify_inclusion(0, 1, LEAVES[0], [LEAVES[1]], LEAVES[0])

    @pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (0, 0)])
    def test_out_of_range(self, index: int, size: int) -> None:
        assert not verify_inclusion(index, size, LEAVES[0], [], ROOTS[size])
        with pytest.raises(ValueError):
            inclusion_proof(index, LEAVES[:size])


class TestConsistency:
    def test_every_pair_of_sizes_verifies(self) -> None:
        for n in range(1, MAX + 1):
            for m in range(1, n + 1):
                proof = consistency_proof(m, LEAVES[:n])
                assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)

    def test_wrong_roots_or_sizes_fail(self) -> None:
        for n in range(2, MAX + 1):
            for m in range(1, n):
                proof = consistency_proof(m, LEAVES[:n])
                assert not verify_consistency(
                    m, n, ROOTS[m - 1] if m > 1 else OTHER, ROOTS[n], proof
                )
                assert not verify_consistency(m, n, ROOTS[m], ROOTS[n - 1], proof)
                assert not verify_consistency(m, n, ROOTS[m], OTHER, proof)
                if n < MAX:
                    assert not verify_consistency(m, n + 1, ROOTS[m], ROOTS[n + 1], proof)
                if m + 1 < n:
                    assert not verify_consistency(m + 1, n, ROOTS[m + 1], ROOTS[n], proof)

    def test_tampered_proofs_fail(self) -> None:
        for n in range(2, MAX + 1, 5):
            for m in range(1, n, 2):
                proof = consistency_proof(m, LEAVES[:n])
                assert proof
                assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1])
                assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof, OTHER])
                for k in range(len(proof)):
                    bad = list(proof)
                    bad[k] = OTHER
                    assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], bad), (m, n, k)

    def test_a_rewritten_prefix_is_not_consistent(self) -> None:
        forged = [*LEAVES[:3], OTHER, *LEAVES[4:20]]
        proof = consistency_proof(10, forged)
        assert not verify_consistency(10, 20, ROOTS[10], root_of(forged), proof)

    def test_same_size(self) -> None:
        assert consistency_proof(5, LEAVES[:5]) == []
        assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
        assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
        assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [OTHER])

    @pytest.mark.parametrize(("old", "new"), [(0, 5), (6, 5), (-1, 5)])
    def test_invalid_sizes(self, old: int, new: int) -> None:
        assert not verify_consistency(old, new, ROOTS[0], ROOTS[5], [])
        with pytest.raises(ValueError):
            consistency_proof(old, LEAVES[:new])
