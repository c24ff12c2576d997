"""Where a pooled version lives: rendezvous (highest-random-weight) hashing over the pool's slots.

Every slot gets a weight ``blake2b(version || slot)`` for a version, and the version lives on the slot of highest
weight among those that are up (Thaler and Ravishankar, "Using name-based mappings to increase hit rates", 1998).
The choice needs no table and no coordination: every process computes the same slot. When a slot goes down,
only its own versions move, each to its next-ranked slot, so the rest of the pool keeps what it has loaded; when
it comes back, exactly those versions move home. Consistent hashing on a ring gives the same property but needs
virtual nodes to spread evenly over a handful of slots; rendezvous hashing spreads evenly with none.

Pure functions: the pool (`tether.serving.pool`) and the Ray pool call them with the slots that are up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def weight(version_id: str, slot: int) -> int:
    """The version's weight on ``slot``: uniform over 64 bits, stable across processes and runs.

    >>> weight("3f2a", 0) == weight("3f2a", 0) and weight("3f2a", 0) != weight("3f2a", 1)
    True
    """
    digest = hashlib.blake2b(f"{version_id}\0{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(version_id: str, slots: Iterable[int]) -> list[int]:
    """The slots in the version's order of preference (highest weight first; ties by slot number)."""
    return sorted(slots, key=lambda s: (-weight(version_id, s), s))


def place(version_id: str, up: Sequence[int]) -> int | None:
    """The slot the version lives on among the slots that are ``up`` (None when none is)."""
    best: int | None = None
    best_w = -1
    for s in up:
        w = weight(version_id, s)
        if w > best_w or (w == best_w and best is not None and s < best):
            best, best_w = s, w
    return best


def share(version_ids: Iterable[str], up: Sequence[int]) -> dict[int, list[str]]:
    """Each slot's versions (every slot of ``up`` present, perhaps with none)."""
    out: dict[int, list[str]] = {s: [] for s in up}
    for vid in version_ids:
        slot = place(vid, up)
        if slot is not None:
            out[slot].append(vid)
    return out
