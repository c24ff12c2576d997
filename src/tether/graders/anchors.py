"""Anchor sets: frozen interactions that every grader version re-scores, so a change of judge shows as such.

An anchor set is JSON lines of interactions (``prompt`` or ``messages``, ``answer``, optional ``context`` and
``reference``), stored as a blob and named by its digest; ``anchor_sets`` (insert-only) maps a name to its
newest digest. A *run* scores every anchor with one grader version, its rows in ``grader_scores`` under origin
``anchor:<set digest>:<run stamp>`` and trace ids ``anchor:<set digest>:<row>``. Comparing the paired scores of
two runs (the same rows, the same grader name) measures the judge, not the application: the application's
traffic plays no part (``tether.monitor.llm_watch`` tests it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, select

from tether.core.errors import InvalidInputError, NotFoundError
from tether.graders.interaction import Interaction
from tether.graders.registry import GraderVersion
from tether.graders.scores import Graded, write
from tether.store.store import Store
from tether.store.tables import anchor_sets, grader_scores

MAX_ROWS = 5000


@dataclass(frozen=True)
class AnchorSet:
    name: str
    digest: str
    rows: int
    created_at: datetime
    created_by: str

    @property
    def tag(self) -> str:
        return self.digest[:12]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "rows": self.rows,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


def parse(data: bytes) -> list[Interaction]:
    items = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(Interaction.from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValueError, TypeError) as e:
            raise InvalidInputError(
                f"anchor row {n}: {e}", hint='each line: {"prompt": ..., "answer": ..., "context": ...}'
            ) from None
    if not items:
        raise InvalidInputError("the anchor set has no rows", hint="give at least one interaction per line")
    if len(items) > MAX_ROWS:
        raise InvalidInputError(f"the anchor set has {len(items)} rows; at most {MAX_ROWS}")
    return items


def add(store: Store, name: str, data: bytes, *, actor: str, now: datetime) -> AnchorSet:
    """Register (a new version of) the anchor set ``name``; validated before anything is written."""
    if not name or len(name) > 200:
        raise InvalidInputError("an anchor set needs a name (up to 200 characters)")
    items = parse(data)
    digest = store.blobs.put_bytes(data)
    with store.db.begin() as conn:
        row = {"name": name, "digest": digest, "rows": len(items), "created_at": now, "created_by": actor}
        conn.execute(insert(anchor_sets).values(**row))
    return AnchorSet(**row)


def get(store: Store, name: str) -> AnchorSet:
    with store.db.connect() as conn:
        row = (
            conn.execute(
                select(anchor_sets).where(anchor_sets.c.name == name).order_by(anchor_sets.c.id.desc()).limit(1)
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFoundError(f"no anchor set {name!r}", hint="add one: tether llm anchors add NAME FILE.jsonl")
    return AnchorSet(row["name"], row["digest"], row["rows"], row["created_at"], row["created_by"])


def items(store: Store, anchor: AnchorSet) -> list[Interaction]:
    data = store.blobs.get_bytes(anchor.digest, what=f"anchor set {anchor.name}")
    out = parse(data)
    return [dataclasses.replace(it, trace_id=f"anchor:{anchor.tag}:{i}") for i, it in enumerate(out)]


def run(
    store: Store, anchor: AnchorSet, gv: GraderVersion, grader: Any, *, model: str, stamp: str, now: datetime
) -> str:
    """Score every anchor with ``grader`` (version ``gv``); returns the run's origin. Idempotent per stamp."""
    origin = f"anchor:{anchor.tag}:{stamp}"
    rows_in = [dataclasses.replace(it, model=model) for it in items(store, anchor)]
    result = grader.grade(rows_in)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)  # a judge: in this worker thread's own loop
    out: list[dict[str, Any]] = []
    for it, scores in zip(rows_in, result, strict=True):
        out.extend(Graded(it, scores, now, origin, "anchor", 1.0).rows())
    write(store.db, out)
    return origin


def runs(store: Store, anchor: AnchorSet, model: str) -> list[tuple[str, str, datetime]]:
    """(origin, grader id, first score time) of every run on this set for ``model``, oldest first."""
    c = grader_scores.c
    q = (
        select(c.origin, c.grader_id, c.at)
        .where(c.model_name == model, c.origin.startswith(f"anchor:{anchor.tag}:"))
        .order_by(c.id)
    )
    seen: dict[tuple[str, str], datetime] = {}
    with store.db.connect() as conn:
        for origin, grader_id, at in conn.execute(q):
            seen.setdefault((origin, grader_id), at)
    return [(o, g, at) for (o, g), at in seen.items()]
