"""The token ledger and budgets.

**Budgets** are set per scope (``tenant:NAME`` or ``key:KEY_ID``): requests per minute, tokens per UTC day,
cost per calendar month (UTC). Before a request is dispatched its *maximum* use is reserved in every scope it
belongs to: the prompt's tokens plus ``max_tokens``, at the version's prices. The check and the reservation
happen in one step with no await in between (the gateway's event loop is the lock), so any number of
concurrent requests can never hold more than a budget allows. When the answer is in, the reservation is
replaced by the real use (never more than reserved when the token counts are the backend's own); a request that
failed before spending anything gives its tokens and cost back (it still counts as a request).

Over budget is a `BudgetExceeded` naming the budget, its limit, what is used and reserved, and when it resets
(HTTP 429 with ``Retry-After``).

**The ledger** is one insert-only row per interaction (``llm_ledger``): input, cached and output tokens, cost,
tokens and cost saved by a cache hit, tokens trimmed. Rows are written in batches by `LedgerWriter`; at start
the day's tokens and the month's cost of every scope are summed back from it, so a restart forgets nothing but
the last minute's request count. Every interaction is also on the audit trail (see `tether.llm.gateway`).

Several gateway replicas share one budget through Redis (`tether.llm.shared_budgets`, TETHER_REDIS_URL).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from tether.core.errors import InvalidInputError
from tether.store.database import Database
from tether.store.tables import llm_budgets, llm_ledger

log = logging.getLogger("tether.llm")


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    cost_per_month: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_day": self.tokens_per_day,
            "cost_per_month": self.cost_per_month,
        }


class BudgetExceeded(Exception):
    def __init__(self, scope: str, budget: str, limit: float, used: float, resets: datetime) -> None:
        self.scope, self.budget, self.limit, self.used, self.resets = scope, budget, limit, used, resets
        super().__init__(
            f"{scope} is over its {budget} budget: {_fmt(used)} used or reserved of {_fmt(limit)}; "
            f"it resets at {resets.isoformat(timespec='seconds')}"
        )

    def retry_after(self, now: datetime) -> int:
        return max(1, math.ceil((self.resets - now).total_seconds()))


def _fmt(x: float) -> str:
    return f"{x:,.4f}".rstrip("0").rstrip(".") if isinstance(x, float) and not x.is_integer() else f"{int(x):,}"


def check_scope(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if kind not in ("tenant", "key") or not name:
        raise InvalidInputError(f"budget scope {scope!r} is not tenant:NAME or key:KEY_ID")
    return scope


@dataclass
class Reservation:
    scopes: list[str]
    tokens: int
    cost: float
    day: str
    month: str
    settled: bool = False
    #: Held only by this replica's own count (the shared store was unreachable; see ``llm.shared_budgets``).
    local: bool = False


@dataclass
class _Use:
    requests: deque[float] = field(default_factory=deque)
    tokens: dict[str, int] = field(default_factory=dict)  # UTC day -> tokens used or reserved
    cost: dict[str, float] = field(default_factory=dict)  # UTC month -> cost used or reserved


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def _month(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def _next_day(at: datetime) -> datetime:
    d = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return d + timedelta(days=1)


def _next_month(at: datetime) -> datetime:
    d = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)


class Budgets:
    """In-process budget accounting for one gateway."""

    def __init__(self) -> None:
        self.limits: dict[str, Limits] = {}
        self._use: dict[str, _Use] = {}

    def set_limits(self, limits: dict[str, Limits]) -> None:
        self.limits = dict(limits)

    def seed(self, scope: str, day: str, tokens: int, month: str, cost: float) -> None:
        use = self._use.setdefault(scope, _Use())
        use.tokens[day] = use.tokens.get(day, 0) + tokens
        use.cost[month] = use.cost.get(month, 0.0) + cost

    def reserve(self, scopes: list[str], tokens: int, cost: float, now: datetime) -> Reservation:
        """Reserve in every scope at once, or raise `BudgetExceeded` for the first budget that would overflow."""
        t = now.timestamp()
        day, month = _day(now), _month(now)
        for scope in scopes:
            lim = self.limits.get(scope)
            if lim is None:
                continue
            use = self._use.setdefault(scope, _Use())
            while use.requests and use.requests[0] <= t - 60:
                use.requests.popleft()
            if lim.requests_per_minute is not None and len(use.requests) + 1 > lim.requests_per_minute:
                resets = datetime.fromtimestamp(use.requests[0] + 60, UTC)
                raise BudgetExceeded(scope, "requests per minute", lim.requests_per_minute, len(use.requests), resets)
            if lim.tokens_per_day is not None and use.tokens.get(day, 0) + tokens > lim.tokens_per_day:
                raise BudgetExceeded(
                    scope, "tokens per day", lim.tokens_per_day, use.tokens.get(day, 0) + tokens, _next_day(now)
                )
            if lim.cost_per_month is not None and use.cost.get(month, 0.0) + cost > lim.cost_per_month:
                raise BudgetExceeded(
                    scope, "cost per month", lim.cost_per_month, use.cost.get(month, 0.0) + cost, _next_month(now)
                )
        self._record(scopes, tokens, cost, now)
        return Reservation(scopes, tokens, cost, day, month)

    def _record(self, scopes: list[str], tokens: int, cost: float, now: datetime) -> None:
        day, month = _day(now), _month(now)
        for scope in scopes:
            use = self._use.setdefault(scope, _Use())
            use.requests.append(now.timestamp())
            use.tokens[day] = use.tokens.get(day, 0) + tokens
            use.cost[month] = use.cost.get(month, 0.0) + cost

    def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        """Replace the reservation by the real use (0, 0 gives it back)."""
        if res.settled:
            return
        res.settled = True
        for scope in res.scopes:
            use = self._use.setdefault(scope, _Use())
            use.tokens[res.day] = use.tokens.get(res.day, 0) - res.tokens + tokens
            use.cost[res.month] = use.cost.get(res.month, 0.0) - res.cost + cost

    def usage(self, scope: str, now: datetime) -> dict[str, Any]:
        use = self._use.get(scope, _Use())
        t = now.timestamp()
        return {
            "requests_last_minute": sum(1 for r in use.requests if r > t - 60),
            "tokens_today": use.tokens.get(_day(now), 0),
            "cost_this_month": round(use.cost.get(_month(now), 0.0), 6),
            "limits": self.limits.get(scope, Limits()).to_json(),
        }


# -- persistence ----------------------------------------------------------------------------------------------
def read_limits(db: Database) -> dict[str, Limits]:
    with db.connect() as conn:
        rows = conn.execute(select(llm_budgets)).mappings().all()
    return {r["scope"]: Limits(r["requests_per_minute"], r["tokens_per_day"], r["cost_per_month"]) for r in rows}


def write_limits(db: Database, scope: str, limits: Limits, at: datetime, actor: str) -> None:
    check_scope(scope)
    for name, v in limits.to_json().items():
        if v is not None and v < 0:
            raise InvalidInputError(f"{name} must be zero or more, got {v}")
    row = {**limits.to_json(), "scope": scope, "updated_at": at, "updated_by": actor}
    with db.begin() as conn:
        conn.execute(llm_budgets.delete().where(llm_budgets.c.scope == scope))
        if any(v is not None for v in limits.to_json().values()):
            conn.execute(insert(llm_budgets).values(**row))


def seed_from_ledger(db: Database, budgets: Budgets, now: datetime) -> None:
    """Count back this day's tokens and this month's cost of every scope from the ledger."""
    day0 = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month0 = day0.replace(day=1)
    with db.connect() as conn:
        for col, prefix in ((llm_ledger.c.tenant, "tenant:"), (llm_ledger.c.key_id, "key:")):
            tok = func.sum(llm_ledger.c.input_tokens + llm_ledger.c.output_tokens)
            for who, tokens in conn.execute(
                select(col, tok).where(llm_ledger.c.at >= day0, col.is_not(None)).group_by(col)
            ):
                budgets.seed(prefix + who, _day(now), int(tokens or 0), _month(now), 0.0)
            for who, cost in conn.execute(
                select(col, func.sum(llm_ledger.c.cost))
                .where(llm_ledger.c.at >= month0, col.is_not(None))
                .group_by(col)
            ):
                budgets.seed(prefix + who, _day(now), 0, _month(now), float(cost or 0.0))


class LedgerWriter:
    """Batches ledger rows into the database (one transaction per flush)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: list[dict[str, Any]] = []
        self.written = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def flush(self) -> int:
        rows, self._rows = self._rows, []
        if not rows:
            return 0
        try:
            with self.db.begin() as conn:
                conn.execute(insert(llm_ledger), rows)
        except Exception:
            self._rows[:0] = rows  # kept for the next flush
            raise
        self.written += len(rows)
        return len(rows)


def summary(db: Database, *, since: datetime, tenant: str | None = None) -> list[dict[str, Any]]:
    """Per tenant, model and cache layer: requests, tokens, cost and savings since a time."""
    c = llm_ledger.c
    q = (
        select(
            c.tenant,
            c.model_name,
            c.cache,
            func.count().label("requests"),
            func.sum(c.input_tokens).label("input_tokens"),
            func.sum(c.cached_tokens).label("cached_tokens"),
            func.sum(c.output_tokens).label("output_tokens"),
            func.sum(c.cost).label("cost"),
            func.sum(c.saved_tokens).label("saved_tokens"),
            func.sum(c.saved_cost).label("saved_cost"),
            func.sum(c.trimmed_tokens).label("trimmed_tokens"),
        )
        .where(c.at >= since)
        .group_by(c.tenant, c.model_name, c.cache)
        .order_by(c.tenant, c.model_name, c.cache)
    )
    if tenant is not None:
        q = q.where(c.tenant == tenant)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def series(
    db: Database,
    *,
    since: datetime,
    bucket_seconds: int = 60,
    model: str | None = None,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Per time bucket and cache layer: requests, tokens, cost, saved tokens and cost, trimmed tokens (what the
    dashboard charts). Bucketed here rather than in SQL: the same on SQLite and PostgreSQL."""
    if bucket_seconds < 1:
        raise InvalidInputError(f"bucket_seconds must be at least 1, got {bucket_seconds}")
    c = llm_ledger.c
    q = select(
        c.at, c.cache, c.input_tokens, c.output_tokens, c.cost, c.saved_tokens, c.saved_cost, c.trimmed_tokens
    ).where(c.at >= since)
    if model is not None:
        q = q.where(c.model_name == model)
    if tenant is not None:
        q = q.where(c.tenant == tenant)
    out: dict[tuple[int, str], dict[str, Any]] = {}
    with db.connect() as conn:
        for r in conn.execute(q):
            b = int(r.at.timestamp()) // bucket_seconds * bucket_seconds
            row = out.setdefault(
                (b, r.cache),
                {
                    "t": b,
                    "cache": r.cache,
                    "requests": 0,
                    "tokens": 0,
                    "cost": 0.0,
                    "saved_tokens": 0,
                    "saved_cost": 0.0,
                    "trimmed_tokens": 0,
                },
            )
            row["requests"] += 1
            row["tokens"] += r.input_tokens + r.output_tokens
            row["cost"] += r.cost
            row["saved_tokens"] += r.saved_tokens
            row["saved_cost"] += r.saved_cost
            row["trimmed_tokens"] += r.trimmed_tokens
    return [out[k] for k in sorted(out)]
