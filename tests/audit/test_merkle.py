"""The Merkle tree against the published Certificate Transparency (RFC 6962/9162) test vectors, and properties."""

import random

import pytest

from tether.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The reference inputs and tree heads of the Certificate Transparency test suite (RFC 6962 trees).
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (first size, second size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def _tree():
    tree = MerkleTree()
    for d in LEAVES:
        tree.append(d)
    return tree


def test_roots_match_the_reference_for_every_size():
    tree = _tree()
    assert EMPTY_ROOT.hex() == ROOTS[0] and tree.root(0) == EMPTY_ROOT
    for n in range(1, 9):
        assert tree.root(n).hex() == ROOTS[n], n
        assert MerkleTree.of_leaf_hashes([leaf_hash(d) for d in LEAVES[:n]]).root().hex() == ROOTS[n]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index, size, path):
    tree = _tree()
    proof = tree.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(ROOTS[size])
    assert verify_inclusion(index, size, leaf_hash(LEAVES[index]), proof, root)
    assert not verify_inclusion(index, size, leaf_hash(LEAVES[index]), proof, bytes.fromhex(ROOTS[size - 1]))
    assert not verify_inclusion(index ^ 1, size, leaf_hash(LEAVES[index]), proof, root)


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(first, second, path):
    tree = _tree()
    proof = tree.consistency_proof(first, second)
    assert [p.hex() for p in proof] == path
    a, b = bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second])
    assert verify_consistency(first, second, proof, a, b)
    if first != second:
        assert not verify_consistency(first, second, proof, bytes.fromhex(ROOTS[first - 1]), b)


def _naive_root(hashes):
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(_naive_root(hashes[:k]), _naive_root(hashes[k:]))


def test_every_proof_verifies_and_every_tampering_fails_for_many_shapes():
    rng = random.Random(9162)
    hashes = [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(70)]
    tree = MerkleTree.of_leaf_hashes(hashes)
    for n in range(1, 71):
        root = tree.root(n)
        assert root == _naive_root(hashes[:n]), n  # incremental storage equals the RFC's definition
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            assert verify_inclusion(i, n, hashes[i], proof, root)
            assert not verify_inclusion(i, n, leaf_hash(b"forged"), proof, root)
            if proof:
                bad = [*proof]
                bad[rng.randrange(len(bad))] = leaf_hash(b"x")
                assert not verify_inclusion(i, n, hashes[i], bad, root)
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert verify_consistency(m, n, proof, tree.root(m), root), (m, n)
            if m < n:  # a rewritten history (leaf m-1 changed) cannot be shown consistent
                forged = MerkleTree.of_leaf_hashes([*hashes[: m - 1], leaf_hash(b"rewritten")])
                assert not verify_consistency(m, n, proof, forged.root(), root)


def test_bad_arguments_are_refused():
    tree = _tree()
    with pytest.raises(ValueError, match="not in a tree of size 8"):
        tree.inclusion_proof(8)
    with pytest.raises(ValueError, match="has 8 leaves, not 9"):
        tree.root(9)
    with pytest.raises(ValueError, match="no consistency proof from size 0"):
        tree.consistency_proof(0, 4)
    assert not verify_inclusion(5, 3, leaf_hash(b""), [], EMPTY_ROOT)
    assert not verify_consistency(4, 3, [], EMPTY_ROOT, EMPTY_ROOT)


def test_extending_many_hashes_builds_the_same_tree_as_appending_one_by_one():
    rng = random.Random(5)
    for _ in range(40):
        one, many = MerkleTree(), MerkleTree()
        leaves = [leaf_hash(str(i).encode()) for i in range(rng.randrange(0, 300))]
        for h in leaves:
            one.append_hash(h)
        i = 0
        while i < len(leaves):
            k = rng.randrange(1, 70)
            many.extend_hashes(leaves[i : i + k])
            i += k
        assert many.levels == one.levels and many.root() == one.root()
