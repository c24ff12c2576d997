"""The audit trail (issue 6, in progress): an RFC 9162 Merkle tree and a group-commit write-ahead log so far."""

from tether.audit.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion

__all__ = ["EMPTY_ROOT", "MerkleTree", "leaf_hash", "node_hash", "verify_consistency", "verify_inclusion"]
