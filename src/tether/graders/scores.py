"""Scores on the store: insert-only rows, one per (interaction, grader version, metric, origin).

Each row carries what an honest rate needs: the stratum the interaction was sampled from and its inclusion
probability, the version and arm that answered, the tenant and the cache outcome; and what governance needs:
the grader version's id (``grader_versions``) and the origin (``live``, ``anchor:<run>``, ``gate:<run>``). A grader
error is a row with ``value`` empty and ``error`` set. The audit bridge copies the rows onto the trail, one
record per (interaction, grader, origin), bound to the interaction's trace id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tether.graders.interaction import Interaction, Score
from tether.store.database import Database
from tether.store.tables import grader_scores, prompt_samples


@dataclass(frozen=True)
class Graded:
    """One interaction's scores from one grading pass, with how it came to be graded."""

    interaction: Interaction
    scores: list[Score]
    at: datetime
    origin: str = "live"
    stratum: str = ""
    inclusion: float = 1.0

    def rows(self) -> list[dict[str, Any]]:
        it = self.interaction
        return [
            {
                "trace_id": it.trace_id,
                "grader_id": s.grader_id,
                "metric": s.metric[:120],
                "value": s.value,
                "error": s.error,
                "origin": self.origin,
                "at": self.at,
                "model_name": it.model,
                "version_id": it.version_id,
                "tenant": it.tenant,
                "arm": it.arm,
                "cache": it.cache,
                "stratum": self.stratum[:300],
                "inclusion": self.inclusion,
                "detail": s.detail,
            }
            for s in self.scores
        ]


def write(db: Database, rows: list[dict[str, Any]], table: Any = grader_scores) -> int:
    """Insert rows; a row already there (the same interaction, grader, metric and origin) is skipped, so a pass
    retried after a crash never counts twice. Returns the rows inserted."""
    if not rows:
        return 0
    try:
        with db.begin() as conn:
            conn.execute(insert(table), rows)
        return len(rows)
    except SAIntegrityError:
        pass
    n = 0
    for row in rows:  # a duplicate in the batch: one at a time, the duplicates left out
        try:
            with db.begin() as conn:
                conn.execute(insert(table).values(**row))
            n += 1
        except SAIntegrityError:
            continue
    return n


def read(
    db: Database,
    model: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    version_id: str | None = None,
    metric: str | None = None,
    origin: str | None = "live",
    grader_id: str | None = None,
    trace_id: str | None = None,
    tenant: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    c = grader_scores.c
    q = select(grader_scores).where(c.model_name == model).order_by(c.id)
    if trace_id is not None:
        q = select(grader_scores).where(c.trace_id == trace_id).order_by(c.id)
    if since is not None:
        q = q.where(c.at >= since)
    if until is not None:
        q = q.where(c.at < until)
    if version_id is not None:
        q = q.where(c.version_id == version_id)
    if metric is not None:
        q = q.where(c.metric == metric)
    if origin is not None:
        q = q.where(c.origin == origin) if not origin.endswith("*") else q.where(c.origin.startswith(origin[:-1]))
    if grader_id is not None:
        q = q.where(c.grader_id == grader_id)
    if tenant is not None:
        q = q.where(c.tenant == tenant)
    if limit is not None:
        q = q.limit(limit)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


#: Prompts longer than this are kept by their first characters (the embedding reads 256 tokens at most).
PROMPT_CHARS = 4000


def prompt_row(it: Interaction, at: datetime, inclusion: float) -> dict[str, Any]:
    return {
        "trace_id": it.trace_id,
        "model_name": it.model,
        "version_id": it.version_id,
        "tenant": it.tenant,
        "at": at,
        "prompt": it.prompt[:PROMPT_CHARS],
        "inclusion": inclusion,
    }


def write_prompts(db: Database, rows: list[dict[str, Any]]) -> int:
    """The sampled prompts the prompt-drift test reads (insert-only, once per interaction)."""
    return write(db, rows, prompt_samples)


def read_prompts(
    db: Database,
    model: str,
    since: datetime,
    until: datetime,
    *,
    tenant: str | None = None,
    limit: int = 2000,
    oldest: bool = False,
) -> list[dict[str, Any]]:
    """Sampled prompts in [since, until), oldest first: the newest ``limit`` of them (the oldest with ``oldest``)."""
    c = prompt_samples.c
    q = select(prompt_samples).where(c.model_name == model, c.at >= since, c.at < until)
    if tenant is not None:
        q = q.where(c.tenant == tenant)
    q = q.order_by(c.id if oldest else c.id.desc()).limit(limit)
    with db.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    return rows if oldest else rows[::-1]
