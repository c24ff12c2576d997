"""API keys with roles. A key is shown once at creation; only its SHA-256 is stored.

Roles: ``client`` may predict and send feedback; ``viewer`` may read metrics and status; ``deployer`` may
also change rollouts; ``admin`` may do everything, including managing keys.

A key's *name* says who holds it; its *tenant* (its name unless given) is what its LLM budgets, caches and
ledger rows are partitioned by, so several keys of one team share one budget and one team's keys can be
rotated without touching its history. A key may expire (``expires_at``): from then on it is refused with a
401 that says so, checked on every request against the server's clock, not only when the key ring refreshes.
Rotation creates a new key with the same name, tenant, role and reach and lets the old one live on for a grace
period (so clients can switch over), after which it expires.

What a key may *read* of tenants' data (the ledger, budgets, graded interactions, and the prediction, LLM, cache
and score records of the audit trail) is its own tenant's, unless it reaches ``all_tenants``: admin keys always,
viewer and deployer keys when created so (an operator's dashboard). Models, versions, rollouts, gate reports,
drift and the trail's platform records are not any tenant's and every reader sees them (`scope`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from tether.core.clock import Clock, SystemClock
from tether.core.errors import ConflictError, InvalidInputError, NotFoundError
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
    tenant: str = ""
    expires_at: datetime | None = None
    #: Reads every tenant's data, not only its own (always so for admin keys).
    all_tenants: bool = False

    def __post_init__(self) -> None:
        if not self.tenant:
            object.__setattr__(self, "tenant", self.name)
        if self.role == "admin":
            object.__setattr__(self, "all_tenants", True)

    @property
    def scope(self) -> str | None:
        """The one tenant whose data this key reads, or None for every tenant's."""
        return None if self.all_tenants else self.tenant


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` (a whole number and one unit)."""
    t = text.strip().lower()
    if len(t) >= 2 and t[-1] in _UNITS and t[:-1].isdigit():
        return timedelta(seconds=int(t[:-1]) * _UNITS[t[-1]])
    raise InvalidInputError(f"cannot read {text!r} as a duration", hint="a whole number and s, m, h, d or w: 90d, 1h")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    db: Database,
    name: str,
    role: str,
    at: datetime,
    *,
    tenant: str | None = None,
    expires_at: datetime | None = None,
    rotated_from: str | None = None,
    all_tenants: bool = False,
) -> tuple[ApiKey, str]:
    """A new key: returns the record and the secret, which is not stored and cannot be shown again."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    if all_tenants and role == "client":
        raise InvalidInputError(
            "a client key calls as one tenant and reads nothing: --all-tenants is for viewer and deployer keys",
            hint="drop --all-tenants, or give the key the viewer or deployer role",
        )
    all_tenants = all_tenants or role == "admin"
    if expires_at is not None and expires_at <= at:
        raise InvalidInputError(
            f"the key would expire at {expires_at:%Y-%m-%d %H:%M:%S}Z, which is not in the future",
            hint="give a positive --expires-in, e.g. 90d",
        )
    secret = "tk_" + secrets.token_urlsafe(32)
    key_id = secrets.token_hex(6)
    with db.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                name=name,
                key_hash=_hash(secret),
                role=role,
                created_at=at,
                tenant=tenant or name,
                expires_at=expires_at,
                rotated_from=rotated_from,
                all_tenants=all_tenants,
            )
        )
    return ApiKey(key_id, name, role, tenant or name, expires_at, all_tenants), secret


def rotate_key(
    db: Database, key_id: str, at: datetime, *, grace: timedelta, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key for the same holder, tenant and role; the old one expires ``grace`` from now (or sooner, if it
    was going to). Both in one transaction: never two live replacements, never none."""
    if grace < timedelta(0):
        raise InvalidInputError("the grace period cannot be negative", hint="e.g. --grace 1h, or 0s to end it now")
    with db.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id).with_for_update()).mappings().first()
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}", hint="list keys with 'tether keys list'")
        if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= at):
            raise InvalidInputError(
                f"API key {key_id} is revoked or expired: there is nothing to rotate",
                hint=f"create a new one: tether keys create {row['name']} --role {row['role']}",
            )
        successor = conn.execute(select(api_keys.c.id).where(api_keys.c.rotated_from == key_id)).scalar()
        if successor is not None:  # one replacement per key: rotating twice would leave two live successors
            raise ConflictError(
                f"API key {key_id} was already rotated: {successor} replaces it",
                hint=f"rotate the replacement instead: tether keys rotate {successor}",
            )
        ends = at + grace
        if row["expires_at"] is not None:
            ends = min(ends, row["expires_at"])
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(expires_at=ends))
    # The new key in its own transaction after the old one's end is set: a failure here leaves the old key
    # working to its (shortened) end, and the rotation can be run again.
    return create_key(
        db,
        row["name"],
        row["role"],
        at,
        tenant=row["tenant"] or row["name"],
        expires_at=expires_at,
        rotated_from=key_id,
        all_tenants=bool(row["all_tenants"]),
    )


def revoke_key(db: Database, key_id: str, at: datetime) -> None:
    with db.begin() as conn:
        if conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=at)).rowcount == 0:
            raise NotFoundError(f"no API key {key_id!r}", hint="list keys with 'tether keys list'")


def list_keys(db: Database) -> list[dict[str, object]]:
    c = api_keys.c
    with db.connect() as conn:
        rows = conn.execute(
            select(
                c.id, c.name, c.tenant, c.role, c.created_at, c.expires_at, c.revoked_at, c.rotated_from, c.all_tenants
            )
        ).mappings()
        return [{**r, "tenant": r["tenant"] or r["name"], "all_tenants": bool(r["all_tenants"])} for r in rows]


def key_tenants(db: Database) -> dict[str, str]:
    """Every key's id and tenant, revoked and expired ones included (budgets and ledger rows outlive keys)."""
    c = api_keys.c
    with db.connect() as conn:
        return {r.id: r.tenant or r.name for r in conn.execute(select(c.id, c.tenant, c.name))}


class KeyRing:
    """The active keys, cached by hash for the hot path; refreshed by the server periodically."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}

    def refresh(self) -> None:
        with self.db.connect() as conn:
            rows = conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None))).mappings()
            by_hash = {
                r["key_hash"]: ApiKey(
                    r["id"], r["name"], r["role"], r["tenant"] or r["name"], r["expires_at"], bool(r["all_tenants"])
                )
                for r in rows
            }
        self._by_hash, self._by_id = by_hash, {k.id: k for k in by_hash.values()}

    def active(self, key_id: str) -> ApiKey | None:
        """The key with this id while it is neither revoked nor expired (a dashboard session names its key)."""
        key = self._by_id.get(key_id)
        return None if key is None or self._expired(key) else key

    def _expired(self, key: ApiKey) -> bool:
        return key.expires_at is not None and self.clock.now() >= key.expires_at

    def check(self, authorization: str | None, action: str) -> tuple[int, str] | ApiKey:
        """The key, or (HTTP status, message) when the request may not do ``action``."""
        if not authorization or not authorization.startswith("Bearer "):
            return 401, "missing API key: send 'Authorization: Bearer <key>' (create one with 'tether keys create')"
        key = self._by_hash.get(_hash(authorization[7:].strip()))
        if key is None:
            return 401, "unknown or revoked API key"
        if self._expired(key):
            assert key.expires_at is not None
            return 401, (
                f"API key {key.id} expired at {key.expires_at:%Y-%m-%d %H:%M:%S}Z: use its replacement, or ask an "
                f"admin for one (tether keys rotate {key.id})"
            )
        if key.role not in ALLOWED[action]:
            return 403, f"role {key.role!r} may not {action}; it needs one of {sorted(ALLOWED[action])}"
        return key
