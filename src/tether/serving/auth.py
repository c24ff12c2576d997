"""API keys with roles. A key is shown once at creation; only its SHA-256 is stored.

Roles: ``client`` may predict and send feedback; ``viewer`` may read metrics and status; ``deployer`` may
also change rollouts; ``admin`` may do everything, including managing keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from tether.core.errors import InvalidInputError, NotFoundError
from tether.store.database import Database
from tether.store.tables import api_keys

ROLES = ("client", "viewer", "deployer", "admin")
#: What each action needs: the set of roles allowed.
ALLOWED = {
    "predict": {"client", "admin"},
    "read": {"viewer", "deployer", "admin"},
    "deploy": {"deployer", "admin"},
    "govern": {"admin"},  # gate policies: what may become champion
}


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(db: Database, name: str, role: str, at: datetime) -> tuple[ApiKey, str]:
    """A new key: returns the record and the secret, which is not stored and cannot be shown again."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    secret = "tk_" + secrets.token_urlsafe(32)
    key_id = secrets.token_hex(6)
    with db.begin() as conn:
        conn.execute(insert(api_keys).values(id=key_id, name=name, key_hash=_hash(secret), role=role, created_at=at))
    return ApiKey(key_id, name, role), secret


def revoke_key(db: Database, key_id: str, at: datetime) -> None:
    with db.begin() as conn:
        if conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=at)).rowcount == 0:
            raise NotFoundError(f"no API key {key_id!r}", hint="list keys with 'tether keys list'")


def list_keys(db: Database) -> list[dict[str, object]]:
    with db.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                select(api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.created_at, api_keys.c.revoked_at)
            ).mappings()
        ]


class KeyRing:
    """The active keys, cached by hash for the hot path; refreshed by the server periodically."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}

    def refresh(self) -> None:
        with self.db.connect() as conn:
            rows = conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))).mappings()
            by_hash = {r["key_hash"]: ApiKey(r["id"], r["name"], r["role"]) for r in rows}
        self._by_hash, self._by_id = by_hash, {k.id: k for k in by_hash.values()}

    def active(self, key_id: str) -> ApiKey | None:
        """The key with this id while it is not revoked (a dashboard session names its key by id)."""
        return self._by_id.get(key_id)

    def check(self, authorization: str | None, action: str) -> tuple[int, str] | ApiKey:
        """The key, or (HTTP status, message) when the request may not do ``action``."""
        if not authorization or not authorization.startswith("Bearer "):
            return 401, "missing API key: send 'Authorization: Bearer <key>' (create one with 'tether keys create')"
        key = self._by_hash.get(_hash(authorization[7:].strip()))
        if key is None:
            return 401, "unknown or revoked API key"
        if key.role not in ALLOWED[action]:
            return 403, f"role {key.role!r} may not {action}; it needs one of {sorted(ALLOWED[action])}"
        return key
