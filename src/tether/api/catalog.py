"""``/v1/registry/models``, ``/v1/registry/versions``, ``/v1/registry/compare``, ``/v1/fleet``: finding a model
among thousands, versions by metric across models, two versions side by side, the fleet at a glance.

The routes of ``tether models``, ``tether model``, ``tether versions --metric`` and ``tether compare``. Lists are
keyset-paged: a page's ``next`` is the ``after`` of the following one, so pages stay right while models are added.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.problems import RESPONSES
from tether.api.registry import ModelOut, VersionOut
from tether.registry import catalog
from tether.registry import info as info_ops

router = APIRouter(prefix="/v1", tags=["registry"], responses=RESPONSES)

KeysetLimit = Annotated[int, Query(ge=1, le=1000, description="Items per page (1 to 1000).")]


class ModelPageOut(BaseModel):
    items: list[ModelOut]
    total: int = Field(description="How many models match, over every page.")
    limit: int
    next: str | None = Field(description="Pass as 'after' for the next page; null on the last.")


class VersionPageOut(BaseModel):
    items: list[VersionOut]
    limit: int
    next: str | None = Field(description="Pass as 'after' (NAME/NUMBER) for the next page; null on the last.")


class InfoIn(BaseModel):
    """What to change (fields left out stay as they are; null clears)."""

    owner: str | None = Field(None, description="The owning team.")
    description: str | None = None
    tags: list[str] | None = Field(None, description="Replaces the tags.")
    add_tags: list[str] = []
    remove_tags: list[str] = []
    max_champion_age_days: float | None = Field(
        None, description="The fleet view flags a served champion older than this."
    )


class InfoOut(BaseModel):
    name: str
    owner: str | None
    description: str
    tags: list[str]
    max_champion_age_days: float | None
    updated_at: datetime | None
    updated_by: str | None


@router.get("/registry/models", summary="Models by name, tag, owner, stage or health, a page at a time")
def list_models(
    server: Srv,
    q: Annotated[str | None, Query(description="Part of the name (any case).")] = None,
    tag: str | None = None,
    owner: str | None = None,
    stage: Annotated[str | None, Query(description="serving, rollout, registered or retired.")] = None,
    health: Annotated[str | None, Query(description="healthy, unready, anomaly, stale or over_budget.")] = None,
    after: Annotated[str | None, Query(description="The previous page's 'next'.")] = None,
    limit: KeysetLimit = 50,
    _: Caller = need("read"),
) -> ModelPageOut:
    query = catalog.ModelQuery(q or None, tag, owner, stage, health, after, limit)
    found = catalog.search(server.registry, query, server.live())
    return ModelPageOut(
        items=[ModelOut(**m.to_json()) for m in found.items], total=found.total, limit=limit, next=found.next
    )


@router.get("/registry/models/{name}/info", summary="A model's owner, description, tags and age policy")
def get_info(server: Srv, name: str, _: Caller = need("read")) -> InfoOut:
    server.registry.versions(name)  # 404 for an unknown model
    with server.registry.store.db.connect() as conn:
        return InfoOut(**info_ops.read(conn, [name])[name].__dict__)


@router.patch("/registry/models/{name}/info", summary="Set a model's owner, description, tags or age policy")
def set_info(server: Srv, name: str, body: InfoIn, caller: Caller = need("deploy")) -> InfoOut:
    given = body.model_dump(exclude_unset=True)
    given.setdefault("add_tags", [])
    given.setdefault("remove_tags", [])
    with server.registry.store.db.begin() as conn:
        info = info_ops.write(conn, name, at=server.clock.now(), actor=caller.name, **given)
    return InfoOut(**info.__dict__)


@router.get("/registry/versions", summary="Versions of every model by a training metric, a page at a time")
def search_versions(
    server: Srv,
    metric: Annotated[str | None, Query(description="A training metric (e.g. auc).")] = None,
    metric_min: float | None = None,
    metric_max: float | None = None,
    q: Annotated[str | None, Query(description="Part of the model's name.")] = None,
    after: Annotated[str | None, Query(description="The previous page's 'next' (NAME/NUMBER).")] = None,
    limit: KeysetLimit = 50,
    _: Caller = need("read"),
) -> VersionPageOut:
    found, nxt = catalog.search_versions(
        server.registry, metric=metric, metric_min=metric_min, metric_max=metric_max, text=q, after=after, limit=limit
    )
    return VersionPageOut(items=[VersionOut.of(mv) for mv in found], limit=limit, next=nxt)


@router.get("/registry/compare", summary="Two versions side by side: triad, metrics, params, inputs, environment")
def compare(server: Srv, a: str, b: str, _: Caller = need("read")) -> dict[str, Any]:
    return catalog.compare(server.registry, a, b)


@router.get("/fleet", summary="How many models serve, are healthy, in a rollout, anomalous, over budget, stale")
def fleet(server: Srv, _: Caller = need("read")) -> dict[str, Any]:
    from tether.rollout.fleet import summary

    found = summary(server.registry, server.clock.now(), server.live())
    return {**found.to_json(), "links": found.links()}
