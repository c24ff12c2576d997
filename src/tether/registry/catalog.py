"""The registry as a catalogue: models found among thousands, versions found by filter, two versions compared.

What ``tether models``, ``tether versions``, ``GET /v1/registry/...`` and the dashboard's Models page list.
Every version shown is read back checked (`Registry.get_many`, `Registry.check_versions`), so a tampered row is
reported, never listed as intact; a model page costs the same handful of queries at ten models and at ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from tether.core.errors import InvalidInputError
from tether.registry import aliases as alias_ops
from tether.registry import info as info_ops
from tether.registry.registry import Registry
from tether.registry.version import ModelVersion
from tether.store.tables import (
    alias_events,
    anomalies,
    anomaly_resolutions,
    model_info,
    model_tags,
    model_versions,
    rollouts,
    routing,
)

#: Rollout states that hold a model's traffic (the same as `tether.rollout.record.ACTIVE`, which the registry may
#: not import).
ACTIVE = ("running", "paused", "watching")


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
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    #: serving | retired | registered (never deployed)
    stage: str = "registered"
    #: When the champion took office (its newest alias move), for the age policy.
    champion_since: datetime | None = None
    open_anomalies: int = 0

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["champion_since"] = self.champion_since.isoformat() if self.champion_since else None
        return out


STAGES = ("serving", "rollout", "registered", "retired")
HEALTH = ("healthy", "unready", "anomaly", "stale", "over_budget")


@dataclass
class ModelQuery:
    """What `search` finds: every filter given must hold. ``after`` is the keyset cursor: the last name of the
    previous page (pages stay correct while models are added, unlike an offset)."""

    text: str | None = None
    tag: str | None = None
    owner: str | None = None
    stage: str | None = None
    health: str | None = None
    after: str | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.stage is not None and self.stage not in STAGES:
            raise InvalidInputError(f"unknown stage {self.stage!r}", hint=f"use one of: {', '.join(STAGES)}")
        if self.health is not None and self.health not in HEALTH:
            raise InvalidInputError(f"unknown health {self.health!r}", hint=f"use one of: {', '.join(HEALTH)}")
        if not 1 <= self.limit <= 1000:
            raise InvalidInputError(f"limit must be within 1..1000, got {self.limit}")


@dataclass
class ModelPage:
    items: list[ModelSummary]
    #: Pass as ``after`` for the next page (None: this is the last).
    next: str | None
    #: How many models match, over every page.
    total: int


@dataclass
class Live:
    """What only a running server knows, for the health filters: models whose champion cannot answer, and those
    over an LLM budget."""

    unready: set[str] = field(default_factory=set)
    over_budget: set[str] = field(default_factory=set)


def search(registry: Registry, query: ModelQuery | None = None, live: Live | None = None) -> ModelPage:
    """One page of the models that match, each with its champion, aliases, latest rollout, owner and tags, in a
    constant number of queries whatever the number of models: the filters and the page are taken in the database,
    and only the page's versions are read back and checked to hash to their ids."""
    query, live = query or ModelQuery(), live or Live()
    mv = model_versions.c
    with registry.store.db.connect() as conn:
        names = select(mv.name.label("name"), func.count().label("n"), func.max(mv.number).label("top")).group_by(
            mv.name
        )
        q = select(names.subquery())
        sub = q.selected_columns
        conds = _filters(conn, query, live, sub.name, registry.clock.now())
        total = int(conn.execute(select(func.count()).select_from(q.where(*conds).subquery())).scalar_one())
        if query.after:
            conds.append(sub.name > query.after)
        rows = conn.execute(q.where(*conds).order_by(sub.name).limit(query.limit + 1)).all()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        page_names = [r.name for r in rows]
        aliases = alias_ops.current_of(conn, page_names)
        infos = info_ops.read(conn, page_names)
        stages = _stages(conn, page_names)
        newest = (
            select(func.max(rollouts.c.id).label("id"))
            .where(rollouts.c.model_name.in_(page_names))
            .group_by(rollouts.c.model_name)
            .subquery()
        )
        cols = (rollouts.c.model_name, rollouts.c.id, rollouts.c.state, rollouts.c.candidate_id)
        latest = {r.model_name: r for r in conn.execute(select(*cols).join(newest, rollouts.c.id == newest.c.id))}
        since = _champion_since(conn, page_names)
        anomalies_open = _open_anomalies(conn, page_names)
    named = {vid: [a] for m in aliases.values() for a, vid in m.items()}
    by_id: dict[str, list[str]] = {}
    for vid, a in named.items():
        by_id.setdefault(vid, []).extend(a)
    found, problems = registry.get_many(list(by_id), by_id)
    items = []
    for r in rows:
        current = aliases.get(r.name, {})
        refs = {a: found[v].ref for a, v in current.items() if v in found}
        own = [p for p in problems if r.name in p or any(v[:12] in p for v in current.values())]
        if int(r.n) != int(r.top):
            own.append(f"{r.name}: {int(r.top) - int(r.n)} of its {int(r.top)} version numbers are missing (deleted?)")
        ro = latest.get(r.name)
        info = infos[r.name]
        items.append(
            ModelSummary(
                name=r.name,
                versions=int(r.n),
                latest=f"{r.name}/{int(r.top)}",
                champion=refs.pop("champion", None),
                aliases=dict(sorted(refs.items())),
                rollout=None if ro is None else {"id": ro.id, "state": ro.state, "candidate": ro.candidate_id},
                problems=own,
                owner=info.owner,
                tags=info.tags,
                stage=stages.get(r.name, "registered"),
                champion_since=since.get(r.name),
                open_anomalies=anomalies_open.get(r.name, 0),
            )
        )
    return ModelPage(items, page_names[-1] if more else None, total)


def models(registry: Registry) -> list[ModelSummary]:
    """Every model (all pages of `search`): for small stores and tests; a fleet pages with `search`."""
    out: list[ModelSummary] = []
    query = ModelQuery(limit=1000)
    while True:
        found = search(registry, query)
        out += found.items
        if found.next is None:
            return out
        query = ModelQuery(limit=1000, after=found.next)


def _filters(conn: Connection, query: ModelQuery, live: Live, name: Any, now: datetime) -> list[Any]:
    conds: list[Any] = []
    if query.text:
        conds.append(func.lower(name).contains(query.text.lower(), autoescape=True))
    if query.tag:
        conds.append(name.in_(select(model_tags.c.model_name).where(model_tags.c.tag == query.tag)))
    if query.owner:
        conds.append(name.in_(select(model_info.c.name).where(model_info.c.owner == query.owner)))
    serving = select(routing.c.model_name).where(routing.c.retired.is_(False))
    if query.stage == "serving":
        conds.append(name.in_(serving))
    elif query.stage == "retired":
        conds.append(name.in_(select(routing.c.model_name).where(routing.c.retired.is_(True))))
    elif query.stage == "registered":
        conds.append(name.not_in(select(routing.c.model_name)))
    elif query.stage == "rollout":
        conds.append(name.in_(select(rollouts.c.model_name).where(rollouts.c.state.in_(ACTIVE))))
    if query.health == "anomaly":
        conds.append(name.in_(_open_anomaly_models()))
    elif query.health == "unready":
        conds.append(name.in_(sorted(live.unready)))
    elif query.health == "over_budget":
        conds.append(name.in_(sorted(live.over_budget)))
    elif query.health == "stale":
        conds.append(name.in_(sorted(stale(conn, now))))
    elif query.health == "healthy":
        conds += [name.in_(serving), name.not_in(_open_anomaly_models()), name.not_in(sorted(live.unready))]
    return conds


def _open_anomaly_models() -> Any:
    a, r = anomalies.c, anomaly_resolutions.c
    return (
        select(a.model_name)
        .outerjoin(anomaly_resolutions, r.anomaly_id == a.id)
        .where(r.anomaly_id.is_(None))
        .distinct()
    )


def _open_anomalies(conn: Connection, names: list[str]) -> dict[str, int]:
    a, r = anomalies.c, anomaly_resolutions.c
    q = (
        select(a.model_name, func.count())
        .outerjoin(anomaly_resolutions, r.anomaly_id == a.id)
        .where(r.anomaly_id.is_(None), a.model_name.in_(names))
        .group_by(a.model_name)
    )
    return {m: int(n) for m, n in conn.execute(q)}


def _stages(conn: Connection, names: list[str]) -> dict[str, str]:
    q = select(routing.c.model_name, routing.c.retired).where(routing.c.model_name.in_(names))
    return {m: "retired" if retired else "serving" for m, retired in conn.execute(q)}


def _champion_since(conn: Connection, names: list[str] | None) -> dict[str, datetime]:
    """When each model's champion took office: its newest ``champion`` alias move (models with one)."""
    e = alias_events.c
    newest = select(func.max(e.id)).where(e.alias == "champion").group_by(e.model_name)
    if names is not None:
        newest = newest.where(e.model_name.in_(names))
    q = select(e.model_name, e.at, e.version_id).where(e.id.in_(newest))
    return {m: at for m, at, vid in conn.execute(q) if vid is not None}


def stale(conn: Connection, now: datetime) -> set[str]:
    """Served models whose champion is older than their ``max_champion_age_days``."""
    limits = {
        n: d
        for n, d in conn.execute(
            select(model_info.c.name, model_info.c.max_champion_age_days).where(
                model_info.c.max_champion_age_days.is_not(None)
            )
        )
    }
    if not limits:
        return set()
    since = _champion_since(conn, sorted(limits))
    served = {m for (m,) in conn.execute(select(routing.c.model_name).where(routing.c.retired.is_(False)))}
    return {m for m, d in limits.items() if m in served and m in since and now - since[m] > timedelta(days=d)}


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


def search_versions(
    registry: Registry,
    *,
    metric: str | None = None,
    metric_min: float | None = None,
    metric_max: float | None = None,
    text: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> tuple[list[ModelVersion], str | None]:
    """Versions of every model (whose name contains ``text``) with training metric ``metric`` within
    [metric_min, metric_max], by model and number, a page at a time: the filter runs in the database (JSON
    extraction on SQLite and PostgreSQL alike), and only the page is read back checked. Returns the page and the
    ``after`` of the next one (``NAME/NUMBER``; None on the last page)."""
    if (metric_min is not None or metric_max is not None) and not metric:
        raise InvalidInputError("a metric bound needs the metric's name", hint="add metric=NAME (e.g. metric=auc)")
    if not 1 <= limit <= 1000:
        raise InvalidInputError(f"limit must be within 1..1000, got {limit}")
    c = model_versions.c
    q = select(c.id, c.name, c.number)
    if metric:
        value = c.metrics[metric].as_float()
        q = q.where(value.is_not(None))
        if metric_min is not None:
            q = q.where(value >= metric_min)
        if metric_max is not None:
            q = q.where(value <= metric_max)
    if text:
        q = q.where(func.lower(c.name).contains(text.lower(), autoescape=True))
    if after:
        name, _, num = after.rpartition("/")
        if not name or not num.isdigit():
            raise InvalidInputError(f"after must be NAME/NUMBER, got {after!r}", hint="pass the 'next' of a page")
        q = q.where((c.name > name) | ((c.name == name) & (c.number > int(num))))
    with registry.store.db.connect() as conn:
        rows = conn.execute(q.order_by(c.name, c.number).limit(limit + 1)).all()
        aliases = alias_ops.current_of(conn, sorted({r.name for r in rows[:limit]}))
    by_id: dict[str, list[str]] = {}
    for current in aliases.values():
        for a, vid in current.items():
            by_id.setdefault(vid, []).append(a)
    found, _ = registry.get_many([r.id for r in rows[:limit]], by_id)
    page = [found[r.id] for r in rows[:limit] if r.id in found]
    nxt = f"{rows[limit - 1].name}/{rows[limit - 1].number}" if len(rows) > limit else None
    return page, nxt


def compare(registry: Registry, a: str, b: str) -> dict[str, Any]:
    """Two versions side by side: the triad, metrics (with the difference), parameters, inputs and outputs, and
    the environment packages that differ. What ``tether versions compare``, the API and the dashboard show."""
    from tether.registry.environment import environment_diff

    left, right = registry.get(a), registry.get(b)

    def rows(x: dict[str, Any], y: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for k in sorted(set(x) | set(y)):
            lv, rv = x.get(k), y.get(k)
            row: dict[str, Any] = {"name": k, "left": lv, "right": rv, "same": lv == rv}
            if isinstance(lv, int | float) and isinstance(rv, int | float) and not isinstance(lv, bool):
                row["delta"] = rv - lv
            out.append(row)
        return out

    def fields(schema: dict[str, Any]) -> dict[str, Any]:
        return {f["name"]: f for f in schema.get("fields", [])}

    return {
        "left": {"ref": left.ref, "id": left.id, "aliases": left.aliases, "created_at": left.created_at.isoformat()},
        "right": {
            "ref": right.ref,
            "id": right.id,
            "aliases": right.aliases,
            "created_at": right.created_at.isoformat(),
        },
        "triad": {
            "commit": {"left": left.code.commit_sha, "right": right.code.commit_sha},
            "code": {
                "left": left.code.digest,
                "right": right.code.digest,
                "same": left.code.digest == right.code.digest,
            },
            "data": {
                "left": left.data.digest,
                "right": right.data.digest,
                "same": left.data.digest == right.data.digest,
                "rows": {"left": left.data.row_count, "right": right.data.row_count},
            },
            "weights": {
                "left": left.weights.digest,
                "right": right.weights.digest,
                "same": left.weights.digest == right.weights.digest,
            },
        },
        "flavor": {"left": left.flavor, "right": right.flavor},
        "metrics": rows(left.metrics, right.metrics),
        "params": rows(left.params, right.params),
        "inputs": rows(fields(left.input_schema), fields(right.input_schema)),
        "outputs": rows(fields(left.output_schema), fields(right.output_schema)),
        "environment": environment_diff(left.code.environment, right.code.environment),
    }


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
