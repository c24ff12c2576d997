"""Deterministic, monotone traffic splitting.

Every request gets a bucket in [0, 10000) from ``blake2b(salt || key)``, where the key is the request's entity
key (a customer id, say) or, without one, its trace id. The canary serves buckets below its weight in basis
points, so the 1% cohort (buckets < 100) is inside the 5% cohort (< 500) and the 25% cohort (< 2500): as the
weight grows, nobody who saw the canary is moved back, and an entity keeps its version while weights grow.
Shadow copies use an independent bucket (a different salt), so shadowing does not correlate with the canary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

BUCKETS = 10_000


def bucket(key: str, salt: str) -> int:
    """A bucket in [0, 10000), uniform over keys, stable for a (key, salt) pair.

    >>> bucket("customer-42", "fraud") == bucket("customer-42", "fraud")
    True
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=salt.encode()[:16].ljust(16, b"\0")).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Route:
    version_id: str
    #: "champion" or "canary": which side of the split served the request.
    arm: str
    shadow_version_id: str | None = None
    #: The canary, when this champion-arm request is also mirrored to it (see `RoutingTable.mirror_bp`).
    mirror_version_id: str | None = None


@dataclass(frozen=True)
class RoutingTable:
    """Who serves a model's traffic: the champion, optionally a canary at a weight, optionally a shadow."""

    model: str
    champion: str
    canary: str | None = None
    #: Canary share in basis points (100 = 1%).
    canary_bp: int = 0
    shadow: str | None = None
    shadow_bp: int = 0
    #: Salts the split; a rollout sets its own, so the same cohort does not carry every rollout's risk.
    salt: str = ""
    #: Share of the champion's requests also copied to the canary (responses discarded), so the canary's
    #: instance runs at the champion's rate and their latencies compare like with like.
    mirror_bp: int = 0

    def __post_init__(self) -> None:
        for name, bp in (("canary", self.canary_bp), ("shadow", self.shadow_bp), ("mirror", self.mirror_bp)):
            if not 0 <= bp <= BUCKETS:
                raise ValueError(f"{name} weight must be within 0..{BUCKETS} basis points, got {bp}")

    def route(self, key: str) -> Route:
        salt = self.salt or self.model
        arm, version = "champion", self.champion
        if self.canary is not None and self.canary_bp > 0 and bucket(key, salt) < self.canary_bp:
            arm, version = "canary", self.canary
        shadow = None
        if self.shadow is not None and self.shadow_bp > 0 and bucket(key, salt + "/shadow") < self.shadow_bp:
            shadow = self.shadow
        mirror = None
        mirrored = arm == "champion" and self.canary is not None and self.mirror_bp > 0
        if mirrored and bucket(key, salt + "/mirror") < self.mirror_bp:
            mirror = self.canary
        return Route(version, arm, shadow, mirror)
