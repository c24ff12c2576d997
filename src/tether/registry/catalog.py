"""The registry as a catalogue: every model with its champion and challengers, versions found by filter.

What ``tether versions``, ``GET /v1/registry/...`` and the dashboard's Models page list. Versions are read
through `Registry.check_versions`, so a tampered row is reported, never listed as intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from tether.core.errors import InvalidInputError
from tether.registry.registry import Registry
from tether.registry.version import ModelVersion
from tether.store.tables import rollouts


@dataclass
class ModelSummary:
    name: str
    versions: int
    latest: str
    champion: str | None
    #: Every other alias and the version it names (``challenger`` and custom names).
    aliases: dict[str, str] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def models(registry: Registry) -> list[ModelSummary]:
    """Every model: how many versions, the newest, the champion, the other aliases, its latest rollout."""
    listed, problems = registry.check_versions()
    by_name: dict[str, list[ModelVersion]] = {}
    for mv in listed:
        by_name.setdefault(mv.name, []).append(mv)
    with registry.store.db.connect() as conn:
        newest = select(func.max(rollouts.c.id).label("id")).group_by(rollouts.c.model_name).subquery()
        q = select(rollouts.c.model_name, rollouts.c.id, rollouts.c.state, rollouts.c.candidate_id)
        latest = {r.model_name: r for r in conn.execute(q.join(newest, rollouts.c.id == newest.c.id))}
    out = []
    for name, vs in sorted(by_name.items()):
        aliases = {a: mv.ref for mv in vs for a in mv.aliases}
        ro = latest.get(name)
        out.append(
            ModelSummary(
                name=name,
                versions=len(vs),
                latest=vs[-1].ref,
                champion=aliases.pop("champion", None),
                aliases=dict(sorted(aliases.items())),
                rollout=None if ro is None else {"id": ro.id, "state": ro.state, "candidate": ro.candidate_id},
                problems=[p for p in problems if name in p],
            )
        )
    return out


def find_versions(
    registry: Registry,
    name: str,
    *,
    alias: str | None = None,
    metric: str | None = None,
    metric_min: float | None = None,
    metric_max: float | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    newest_first: bool = True,
) -> list[ModelVersion]:
    """The intact versions of ``name`` that match: named by ``alias`` now; with training metric ``metric``
    within [metric_min, metric_max]; registered in [since, until]."""
    if (metric_min is not None or metric_max is not None) and not metric:
        raise InvalidInputError("a metric bound needs the metric's name", hint="add metric=NAME (e.g. metric=auc)")
    if since and until and since > until:
        raise InvalidInputError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    listed, _ = registry.check_versions(name)
    out = []
    for mv in listed:
        if alias is not None and alias not in mv.aliases:
            continue
        if metric:
            value = mv.metrics.get(metric)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if (metric_min is not None and value < metric_min) or (metric_max is not None and value > metric_max):
                continue
        if since is not None and mv.created_at < since:
            continue
        if until is not None and mv.created_at > until:
            continue
        out.append(mv)
    return out[::-1] if newest_first else out


def reproduce_instructions(mv: ModelVersion) -> dict[str, Any]:
    """How to rebuild a version's outputs from its triad: the commands to copy, and what they check."""
    folder = f"./{mv.name}-{mv.number}"
    return {
        "version": mv.ref,
        "id": mv.id,
        "command": f"tether reproduce {mv.ref} {folder}",
        "retrain_command": f"tether reproduce {mv.ref} {folder} --retrain" if mv.train_command else None,
        "checks": {
            "code": mv.code.digest,
            "data": mv.data.digest,
            "weights": mv.weights.digest,
        },
        "what": "writes the code archive, the data snapshot and the weights into the folder, each re-hashed "
        "against its registered digest; --retrain runs the train command and compares the new weights",
        "commit": mv.code.commit_sha,
        "repo_url": mv.code.repo_url,
    }
