"""Checking what a listing shows: every row must still hash to its id, and no version may be missing.

A version row changed behind tether's back no longer hashes to its id (`ModelVersion.expected_id`); a deleted
one leaves a gap in its model's numbers, or a reference (an alias move, a gate report, a rollout, a baseline)
to an id that is gone. A listing reports both instead of showing forged metrics or quietly shrinking.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from tether.core.types import short
from tether.registry.version import ModelVersion
from tether.store.tables import alias_events, baseline_profiles, gate_reports, model_versions, rollouts

#: (table, model-name column, version-id columns) that point at versions.
_REFERENCES = (
    (alias_events, "model_name", ("version_id", "previous_version_id")),
    (gate_reports, "model_name", ("candidate_id", "champion_id")),
    (rollouts, "model_name", ("candidate_id", "champion_id")),
)


def row_problem(mv: ModelVersion) -> str | None:
    """Why ``mv``'s stored rows cannot be trusted, or None."""
    if mv.expected_id() != mv.id:
        return f"{mv.ref} ({short(mv.id)}…): its database row was changed (it no longer hashes to its id)"
    c = mv.code
    from tether.registry.code import CodeRef

    if CodeRef.compute_digest(c.commit_sha, c.tree_digest, c.diff_blob, c.environment_digest, c.subdir) != c.digest:
        return f"{mv.ref} ({short(mv.id)}…): its code record was changed in the database"
    return None


def missing(conn: Connection, listed: Iterable[ModelVersion], name: str | None) -> list[str]:
    """Versions that should exist but do not: gaps in the numbering, and ids that other records point at."""
    by_model: dict[str, list[int]] = {}
    ids = set()
    for mv in listed:
        by_model.setdefault(mv.name, []).append(mv.number)
        ids.add(mv.id)
    problems: list[str] = []
    for model, numbers in sorted(by_model.items()):
        gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        if gaps:
            problems.append(f"{model}: version(s) {', '.join(f'{model}/{n}' for n in gaps)} are missing (deleted?)")
    known = {r[0] for r in conn.execute(select(model_versions.c.id))}
    seen: set[str] = set()
    for table, model_col, cols in _REFERENCES:
        q = select(table.c[model_col], *(table.c[c] for c in cols))
        if name is not None:
            q = q.where(table.c[model_col] == name)
        for model, *vids in conn.execute(q):
            for vid in vids:
                if vid and vid not in known and vid not in seen:
                    seen.add(vid)
                    problems.append(
                        f"{model}: version {short(vid)}… is named by {table.name} but is missing (deleted?)"
                    )
    q2 = select(baseline_profiles.c.version_id)
    for (vid,) in conn.execute(q2):
        if vid not in known and vid not in seen:
            seen.add(vid)
            problems.append(f"version {short(vid)}… has a baseline profile but is missing (deleted?)")
    return problems
