"""Rendezvous placement: stable, even, and a slot that goes down moves only its own versions."""

from collections import Counter

from tether.core.hashing import sha256_bytes
from tether.serving.placement import place, rank, share

VERSIONS = [sha256_bytes(str(i).encode()) for i in range(4000)]


def test_the_same_version_lands_on_the_same_slot_every_time():
    assert [place(v, [0, 1, 2, 3]) for v in VERSIONS[:50]] == [place(v, [3, 2, 1, 0]) for v in VERSIONS[:50]]
    assert place(VERSIONS[0], []) is None


def test_versions_spread_evenly_over_the_slots():
    counts = Counter(place(v, [0, 1, 2, 3]) for v in VERSIONS)
    assert set(counts) == {0, 1, 2, 3}
    # 1,000 expected per slot; a binomial's standard deviation is ~27: 6 of them either way is a broken hash.
    assert all(abs(n - 1000) < 165 for n in counts.values()), counts


def test_a_slot_that_goes_down_moves_only_its_own_versions_to_their_next_choice():
    before = {v: place(v, [0, 1, 2]) for v in VERSIONS}
    after = {v: place(v, [0, 2]) for v in VERSIONS}
    moved = [v for v in VERSIONS if before[v] != after[v]]
    assert moved and all(before[v] == 1 for v in moved)
    assert all(after[v] == next(s for s in rank(v, [0, 1, 2]) if s != 1) for v in moved)
    # ... and come home when it is back.
    assert {v: place(v, [0, 1, 2]) for v in VERSIONS} == before


def test_share_lists_every_slot():
    shares = share(VERSIONS[:10], [0, 1, 5])
    assert set(shares) == {0, 1, 5} and sum(map(len, shares.values())) == 10
