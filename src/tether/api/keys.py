"""``/v1/keys``: ``tether keys`` over HTTP (admin keys only; never with authentication off).

A new key's secret is in the creation response only; the store keeps its SHA-256.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.serving.auth import ApiKey, create_key, list_keys, revoke_key, rotate_key

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=RESPONSES)


NAME = r"^[A-Za-z0-9_.@-]+$"


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NAME)
    role: Literal["client", "viewer", "deployer", "admin"]
    tenant: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=NAME, description="Budgets and caches (default: name)."
    )
    expires_in_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    all_tenants: bool = Field(
        default=False,
        description="Viewer or deployer keys only: read every tenant's ledger, budgets, graded interactions and "
        "audit records (admin keys always do; others read their own tenant's).",
    )


class RotateIn(BaseModel):
    grace_seconds: int = Field(default=3600, ge=0, le=365 * 86400, description="How long the old key keeps working.")
    expires_in_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class KeyOut(BaseModel):
    id: str
    name: str
    tenant: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None
    all_tenants: bool


class NewKey(BaseModel):
    id: str
    name: str
    tenant: str
    role: str
    expires_at: datetime | None
    all_tenants: bool
    #: Shown once: store it now.
    secret: str


@router.get("", summary="Every API key (never their secrets)")
def keys(server: Srv, limit: Limit = 100, offset: Offset = 0, _: Caller = need("govern", held=True)) -> Page[KeyOut]:
    return page([KeyOut(**k) for k in list_keys(server.registry.store.db)], limit, offset)  # type: ignore[arg-type]


@router.post("", status_code=201, summary="Create a key: its secret is in this response only")
def create(server: Srv, body: KeyIn, _: Caller = need("govern", held=True)) -> NewKey:
    now = server.clock.now()
    expires = now + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    key, secret = create_key(
        server.registry.store.db,
        body.name,
        body.role,
        now,
        tenant=body.tenant,
        expires_at=expires,
        all_tenants=body.all_tenants,
    )
    server.refresh_keys_soon()
    return _new(key, secret)


@router.post("/{key_id}/rotate", status_code=201, summary="Replace a key; the old one works for the grace period")
def rotate(server: Srv, key_id: str, body: RotateIn, _: Caller = need("govern", held=True)) -> NewKey:
    now = server.clock.now()
    expires = now + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    key, secret = rotate_key(
        server.registry.store.db, key_id, now, grace=timedelta(seconds=body.grace_seconds), expires_at=expires
    )
    server.refresh_keys_soon()
    return _new(key, secret)


def _new(key: ApiKey, secret: str) -> NewKey:
    return NewKey(
        id=key.id,
        name=key.name,
        tenant=key.tenant,
        role=key.role,
        expires_at=key.expires_at,
        all_tenants=key.all_tenants,
        secret=secret,
    )


@router.delete("/{key_id}", status_code=204, summary="Revoke a key (effective within seconds)")
def revoke(server: Srv, key_id: str, _: Caller = need("govern", held=True)) -> None:
    revoke_key(server.registry.store.db, key_id, server.clock.now())
    server.refresh_keys_soon()
