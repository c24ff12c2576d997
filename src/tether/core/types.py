"""Distinct types for values that are all strings underneath, so they cannot be mixed up by accident."""

from __future__ import annotations

from typing import NewType

#: Lower-case hex SHA-256 of canonical content (64 characters).
Digest = NewType("Digest", str)
#: A model version's id: the digest over its triad, flavor, signature, parameters and metrics.
VersionId = NewType("VersionId", str)
#: A 32-hex-character, time-sortable trace id (UUIDv7 layout, W3C trace-context compatible).
TraceId = NewType("TraceId", str)


def short(digest: str, n: int = 12) -> str:
    """The first ``n`` characters of a digest, for display."""
    return digest[:n]
