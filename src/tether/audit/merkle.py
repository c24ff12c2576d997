"""An append-only Merkle tree as specified by RFC 9162 (Certificate Transparency 2.0), section 2.1.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``, the split at the largest
power of two smaller than the size, inclusion proofs (section 2.1.3) and consistency proofs (section 2.1.4),
with the verification algorithms of the RFC. Checked against the published Certificate Transparency test
vectors (`tests/audit/test_merkle.py`).

The tree keeps every complete (power-of-two, aligned) subtree hash, level by level, updated as leaves are
appended (amortised one hash per append), so a root, an inclusion proof or a consistency proof for any size
costs O(log^2 n) hashes instead of rehashing the leaves. Hand-written because no maintained Python package
implements RFC 9162 proofs (pymerkle's hashing differs in its defaults and it is not maintained); the
algorithms are short and the vectors pin them down.
"""

from __future__ import annotations

import hashlib

LEAF = b"\x00"
NODE = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    def __init__(self) -> None:
        #: levels[h][j]: the hash of the complete subtree of 2**h leaves starting at leaf j * 2**h.
        self.levels: list[list[bytes]] = [[]]

    @classmethod
    def of_leaf_hashes(cls, hashes: list[bytes]) -> MerkleTree:
        tree = cls()
        for h in hashes:
            tree.append_hash(h)
        return tree

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, data: bytes) -> int:
        """Append a record's bytes; returns its leaf index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> int:
        index = len(self.levels[0])
        self.levels[0].append(h)
        level, j = 0, index
        while j % 2 == 1:  # a right child completed its parent: carry upwards
            parent = node_hash(self.levels[level][j - 1], self.levels[level][j])
            level, j = level + 1, j // 2
            if len(self.levels) == level:
                self.levels.append([])
            self.levels[level].append(parent)
        return index

    def extend_hashes(self, hashes: list[bytes]) -> None:
        """Append many leaf hashes: the same tree as `append_hash` one by one, built a level at a time (each
        level's new parents in one pass, about three times faster in Python)."""
        self.levels[0].extend(hashes)
        level = 0
        while True:
            nodes = self.levels[level]
            if len(self.levels) == level + 1:
                self.levels.append([])
            parents = self.levels[level + 1]
            have, pairs = len(parents), len(nodes) // 2
            if pairs <= have:
                break
            sha, pre = hashlib.sha256, NODE
            parents.extend([sha(pre + nodes[2 * j] + nodes[2 * j + 1]).digest() for j in range(have, pairs)])
            level += 1
        while len(self.levels) > 1 and not self.levels[-1]:
            self.levels.pop()  # as append_hash leaves it: no empty level above the highest complete subtree

    def leaf(self, index: int) -> bytes:
        return self.levels[0][index]

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi), from the stored complete subtrees where the range is one."""
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            return self.levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_size(size)
        return self._mth(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 section 2.1.3.1."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        out: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                out.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                out.append(self._mth(lo, lo + k))
                lo = lo + k
        out.reverse()  # the recursion appends from the root down; the proof lists from the leaf up
        return out

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[second]) of RFC 9162 section 2.1.4.1."""
        second = self.size if second is None else second
        self._check_size(second)
        if not 0 < first <= second:
            raise ValueError(f"no consistency proof from size {first} to {second}")
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` place ``leaf`` (a leaf hash) at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of size ``second`` an append-only extension of size ``first``?"""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the first root is a node of the second tree
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
