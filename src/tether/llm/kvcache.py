"""Prefix key/value reuse: the vLLM block design, for the embedded engine.

A prompt's token ids are cut into fixed-size blocks; block i is named by a hash chain
``h_i = SHA-256(h_{i-1} || token ids of block i)``, so a name stands for the whole prefix up to and including
that block (two prompts share block i's name only if they agree on every token before it). Each cached block
holds its keys and values for every layer. A new prompt walks its chain and reuses the longest run of cached
blocks; only the rest is computed.

The blocks live in one LRU bounded by bytes, shared by every request of the process. A hit touches the
matched blocks from the last to the first, so a prefix's first block is always more recent than its
descendants: eviction takes leaves before the blocks they hang from, and never strands a reachable chain.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROOT = b"tether-prefix-v1"


def block_hashes(tokens: Sequence[int], block: int, *, salt: bytes = b"", shared: int = 0) -> list[bytes]:
    """The chain hash of every full block of ``tokens`` (a trailing partial block has none).

    Blocks that lie wholly within the first ``shared`` tokens (the version's pinned prefix: system prompt,
    tools) hash alike for everyone; from the first block past it, ``salt`` (the tenant's) enters the chain, as
    vLLM's ``cache_salt`` does, so one tenant's cached blocks can neither serve nor reveal another's prompt
    (``cached_tokens`` would tell whether someone else sent it)."""
    out: list[bytes] = []
    prev = ROOT
    for start in range(0, len(tokens) - block + 1, block):
        h = hashlib.sha256(prev)
        if salt and start + block > shared:
            h.update(b"salt:" + salt + b";")
        h.update(b",".join(str(t).encode() for t in tokens[start : start + block]))
        prev = h.digest()
        out.append(prev)
    return out


@dataclass
class Block:
    keys: list[Any]  # per layer: tensor [1, heads, block, head_dim]
    values: list[Any]
    nbytes: int


class PrefixCache:
    """Thread-safe LRU of KV blocks with a memory cap in bytes."""

    def __init__(self, block_tokens: int = 16, max_bytes: int = 256 << 20) -> None:
        self.block_tokens = block_tokens
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0  # blocks reused
        self.misses = 0  # blocks computed
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, hashes: Sequence[bytes]) -> list[Block]:
        """The cached blocks of the longest cached prefix of ``hashes`` (touched as most recent)."""
        with self._lock:
            found: list[Block] = []
            for h in hashes:
                b = self._blocks.get(h)
                if b is None:
                    break
                found.append(b)
            for h in reversed(hashes[: len(found)]):
                self._blocks.move_to_end(h)
            self.hits += len(found)
            self.misses += len(hashes) - len(found)
            return found

    def put_chain(self, hashes: Sequence[bytes], new: dict[int, tuple[list[Any], list[Any]]]) -> None:
        """Add the blocks ``new`` (index in ``hashes`` -> per-layer keys, values) of one prompt's chain, then
        touch the whole chain from last to first so that parents stay more recent than their children."""
        with self._lock:
            for i, (keys, values) in new.items():
                h = hashes[i]
                if h in self._blocks:
                    continue
                nbytes = sum(t.numel() * t.element_size() for t in (*keys, *values))
                self._blocks[h] = Block(keys, values, nbytes)
                self.bytes += nbytes
            for h in reversed(hashes):
                if h in self._blocks:
                    self._blocks.move_to_end(h)
            while self.bytes > self.max_bytes and self._blocks:
                _, old = self._blocks.popitem(last=False)
                self.bytes -= old.nbytes
                self.evictions += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "blocks": len(self._blocks),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "block_tokens": self.block_tokens,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
