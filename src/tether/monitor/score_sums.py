"""An epoch's scores summed in the database: one row per (metric, grader version), whatever the traffic.

The LLM watch checks every few seconds over an epoch of up to hours. Reading the epoch's score rows back
into Python at each check costs time in proportion to the traffic (the deterministic checks score every
interaction: several rows per request) and holds the serving process's interpreter while it runs; the
weighted rates and decay tests need only a dozen sums per metric (`tether.monitor.rates.Sums`), which SQLite
and PostgreSQL add up where the rows are, on the ``grader_scores_model_version_at`` index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select

from tether.monitor.rates import CENSUS, Sums
from tether.store.database import Database
from tether.store.tables import grader_scores

__all__ = ["epoch_sums"]


def epoch_sums(
    db: Database, model: str, version_id: str, since: datetime, until: datetime
) -> dict[tuple[str, str], Sums]:
    """(metric, grader id) -> the sums of that version's scores with ``since <= at < until``. Rows without a
    value count as grader errors when they carry one (as the row-by-row path counts them)."""
    c = grader_scores.c
    y, pi = c.value, c.inclusion
    scored = y.is_not(None)
    w = 1.0 / pi
    a = (1.0 - pi) / (pi * pi)

    def total(expr: Any) -> Any:  # over the scored rows; 0 where there are none
        return func.coalesce(func.sum(case((scored, expr), else_=0.0)), 0.0)

    def count(where: Any) -> Any:
        return func.coalesce(func.sum(case((where, 1), else_=0)), 0)

    q = (
        select(
            c.metric,
            c.grader_id,
            count(scored),
            total(w),
            total(y * w),
            total(w * w),
            total(a),
            total(a * y),
            total(a * y * y),
            total(y),
            total(y * y),
            count(and_(scored, y != 0.0, y != 1.0)),
            count(and_(scored, pi < CENSUS)),
            count(and_(y.is_(None), c.error.is_not(None), c.error != "")),
        )
        .where(c.model_name == model, c.version_id == version_id, c.at >= since, c.at < until)
        .group_by(c.metric, c.grader_id)
    )
    out: dict[tuple[str, str], Sums] = {}
    with db.connect() as conn:
        for metric, grader_id, n, w, wy, w2, a_, ay, ay2, y_, y2, non_binary, weighted, errors in conn.execute(q):
            out[(metric, grader_id)] = Sums(
                n=int(n),
                w=float(w),
                wy=float(wy),
                w2=float(w2),
                a=float(a_),
                ay=float(ay),
                ay2=float(ay2),
                y=float(y_),
                y2=float(y2),
                non_binary=int(non_binary),
                weighted=int(weighted),
                errors=int(errors),
            )
    return out
