"""``/v1/keys``: ``tether keys`` over HTTP (admin keys only; never with authentication off).

A new key's secret is in the creation response only; the store keeps its SHA-256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.serving.auth import create_key, list_keys, revoke_key

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=RESPONSES)


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["client", "viewer", "deployer", "admin"]


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


class NewKey(BaseModel):
    id: str
    name: str
    role: str
    #: Shown once: store it now.
    secret: str


@router.get("", summary="Every API key (never their secrets)")
def keys(server: Srv, limit: Limit = 100, offset: Offset = 0, _: Caller = need("govern", held=True)) -> Page[KeyOut]:
    return page([KeyOut(**k) for k in list_keys(server.registry.store.db)], limit, offset)  # type: ignore[arg-type]


@router.post("", status_code=201, summary="Create a key: its secret is in this response only")
def create(server: Srv, body: KeyIn, _: Caller = need("govern", held=True)) -> NewKey:
    key, secret = create_key(server.registry.store.db, body.name, body.role, server.clock.now())
    server.refresh_keys_soon()
    return NewKey(id=key.id, name=key.name, role=key.role, secret=secret)


@router.delete("/{key_id}", status_code=204, summary="Revoke a key (effective within seconds)")
def revoke(server: Srv, key_id: str, _: Caller = need("govern", held=True)) -> None:
    revoke_key(server.registry.store.db, key_id, server.clock.now())
    server.refresh_keys_soon()
