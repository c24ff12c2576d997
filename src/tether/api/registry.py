"""``/v1/registry``: models, versions with their triad, aliases and their history, reproduce instructions.

The routes of ``tether versions``, ``tether show``, ``tether alias`` and ``tether reproduce`` (which answers
with the command to run where the files should land: rebuilding writes files, so the server does not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES, Refused
from tether.registry import catalog
from tether.registry.aliases import AliasEvent
from tether.registry.version import ModelVersion

router = APIRouter(prefix="/v1/registry", tags=["registry"], responses=RESPONSES)


class ModelOut(BaseModel):
    name: str
    versions: int
    latest: str
    champion: str | None
    aliases: dict[str, str]
    rollout: dict[str, Any] | None
    problems: list[str]
    owner: str | None
    tags: list[str]
    stage: str = Field(description="serving, retired, or registered (never deployed).")
    champion_since: datetime | None
    open_anomalies: int


class VersionOut(BaseModel):
    """A version with its triad: ``code`` (commit, archive digest), ``data`` (snapshot digest), ``weights``."""

    id: str
    name: str
    number: int
    ref: str
    aliases: list[str]
    flavor: str
    code: dict[str, Any]
    data: dict[str, Any]
    weights: dict[str, Any]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    train_command: str | None
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, mv: ModelVersion) -> VersionOut:
        return cls(**mv.to_json())


class AliasEventOut(BaseModel):
    id: int
    alias: str
    version_id: str | None
    previous_version_id: str | None
    actor: str
    reason: str
    at: datetime
    gate_report_id: str | None
    forced: bool

    @classmethod
    def of(cls, e: AliasEvent) -> AliasEventOut:
        return cls(**{k: v for k, v in e.__dict__.items() if k != "model_name"})


class AliasMove(BaseModel):
    version: str = Field(description="The version the alias should name (a ref such as fraud/3, or an id prefix).")
    reason: str = Field(min_length=1, description="Why (recorded on the audit trail).")
    force: bool = Field(False, description="Move 'champion' without a PASS gate report (recorded as forced).")


class Reproduce(BaseModel):
    version: str
    id: str
    command: str
    retrain_command: str | None
    checks: dict[str, str]
    what: str
    commit: str | None
    repo_url: str | None


@router.get("/models/{name}/versions", summary="A model's versions, newest first, by alias, metric or time")
def list_versions(
    server: Srv,
    name: str,
    alias: Annotated[str | None, Query(description="Only the version this alias names now.")] = None,
    metric: Annotated[str | None, Query(description="A training metric to filter on (e.g. auc).")] = None,
    metric_min: Annotated[float | None, Query(description="The metric at least this.")] = None,
    metric_max: Annotated[float | None, Query(description="The metric at most this.")] = None,
    since: Annotated[datetime | None, Query(description="Registered at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Registered at or before (ISO 8601).")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    _: Caller = need("read"),
) -> Page[VersionOut]:
    found = catalog.find_versions(
        server.registry,
        name,
        alias=alias,
        metric=metric,
        metric_min=metric_min,
        metric_max=metric_max,
        since=since,
        until=until,
    )
    return page([VersionOut.of(mv) for mv in found[offset : offset + limit]], limit, offset, total=len(found))


@router.get("/versions/{ref:path}/reproduce", summary="How to rebuild a version from its triad")
def reproduce(server: Srv, ref: str, _: Caller = need("read")) -> Reproduce:
    return Reproduce(**catalog.reproduce_instructions(server.registry.get(ref)))


@router.get("/versions/{ref:path}", summary="A version (ref such as fraud/3, or an id prefix) with its triad")
def get_version(server: Srv, ref: str, _: Caller = need("read")) -> VersionOut:
    return VersionOut.of(server.registry.get(ref))


@router.get("/models/{name}/aliases", summary="Every alias move of a model, oldest first")
def alias_history(
    server: Srv,
    name: str,
    alias: Annotated[str | None, Query(description="Only this alias.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    _: Caller = need("read"),
) -> Page[AliasEventOut]:
    return page([AliasEventOut.of(e) for e in server.registry.alias_history(name, alias)], limit, offset)


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias at a version (champion needs a PASS)")
def move_alias(server: Srv, name: str, alias: str, body: AliasMove, caller: Caller = need("deploy")) -> AliasEventOut:
    if body.force and not caller.may("govern"):
        raise Refused(403, f"role {caller.role!r} may not force an alias move; it needs an admin key")
    e = server.registry.set_alias(name, alias, body.version, reason=body.reason, force=body.force, actor=caller.name)
    return AliasEventOut.of(e)
