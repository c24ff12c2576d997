"""Baseline profiles: what a version's inputs looked like in its training data (or its gold set).

A baseline is computed once per (version, source) from the stored, immutable data snapshot, written to the
blob store as canonical JSON (so it is named by its digest) and recorded in ``baseline_profiles``, an
insert-only table: the reference a drift alarm is judged against is as fixed as the version itself.

Besides the whole data, the artifact holds a profile per value of every categorical input with at most
`MAX_SEGMENT_VALUES` values, so any of those columns can later be chosen as a monitoring segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tether.core import InvalidInputError, NotFoundError
from tether.monitor.profile import DatasetProfile, kinds_of
from tether.registry import ModelVersion, Registry
from tether.store.tables import baseline_profiles

MAX_SEGMENT_VALUES = 20
SOURCES = ("training", "gold")


@dataclass
class Baseline:
    version_id: str
    source: str
    data_digest: str
    profile_digest: str
    rows: int
    created_at: datetime
    profile: DatasetProfile
    segments: dict[str, dict[str, DatasetProfile]]

    def segment(self, column: str, value: str) -> DatasetProfile | None:
        return self.segments.get(column, {}).get(value)


def compute(mv: ModelVersion, frame: pd.DataFrame) -> tuple[DatasetProfile, dict[str, dict[str, DatasetProfile]]]:
    kinds = kinds_of(mv.input_schema)
    inputs = frame[[c for c in kinds if c in frame.columns]]
    whole = DatasetProfile.for_kinds(kinds)
    whole.observe(inputs)
    segments: dict[str, dict[str, DatasetProfile]] = {}
    for col, kind in kinds.items():
        if kind != "categorical" or col not in frame.columns:
            continue
        values = frame[col].astype("string")
        if not 2 <= values.nunique(dropna=True) <= MAX_SEGMENT_VALUES:
            continue
        segments[col] = {}
        for value, part in inputs.groupby(values, sort=True, dropna=True):
            prof = DatasetProfile.for_kinds(kinds)
            prof.observe(part)
            segments[col][str(value)] = prof
    return whole, segments


def _artifact(source: str, data_digest: str, rows: int, whole: DatasetProfile, segments: dict[str, Any]) -> bytes:
    doc = {
        "format": "tether-baseline-v1",
        "source": source,
        "data_digest": data_digest,
        "rows": rows,
        "profile": whole.to_json(),
        "segments": {c: {v: p.to_json() for v, p in vals.items()} for c, vals in segments.items()},
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def ensure(registry: Registry, ref: str, source: str = "training", data: str | Path | None = None) -> Baseline:
    """The version's baseline from ``source``, computing and storing it the first time.

    ``training`` profiles the version's own data snapshot. ``gold`` needs ``data`` the first time: a path
    (snapshotted like ``tether data add``) or the digest of a registered snapshot.
    """
    from tether.gate.run import load_gold  # the verified loader of a stored data snapshot

    if source not in SOURCES:
        raise InvalidInputError(f"unknown baseline source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
    mv = registry.get(ref)
    existing = _read(registry, mv.id, source)
    if existing is not None:
        return existing
    if source == "training":
        digest = mv.data.digest
    elif data is None:
        raise NotFoundError(
            f"{mv.ref} has no gold baseline yet",
            hint=f"compute it from the gold set: tether monitor baseline {mv.ref} --gold PATH",
        )
    elif Path(str(data)).exists():
        digest = registry.add_data(Path(str(data))).digest
    else:
        digest = registry.data_snapshot(_resolve_digest(registry, str(data))).digest
    frame = load_gold(registry, [digest])
    whole, segments = compute(mv, frame)
    blob = registry.store.blobs.put_bytes(_artifact(source, digest, len(frame), whole, segments))
    try:
        with registry.store.db.begin() as conn:
            conn.execute(
                insert(baseline_profiles).values(
                    version_id=mv.id,
                    source=source,
                    data_digest=digest,
                    profile_digest=blob,
                    rows=len(frame),
                    created_at=registry.clock.now(),
                )
            )
    except SAIntegrityError:
        pass  # computed concurrently elsewhere: the first one recorded is the baseline
    found = _read(registry, mv.id, source)
    assert found is not None
    return found


def _resolve_digest(registry: Registry, ref: str) -> str:
    from tether.gate.run import _is_digest_ref
    from tether.store.tables import data_snapshots

    if not _is_digest_ref(ref):
        raise InvalidInputError(f"{ref} is neither a file nor a data snapshot digest", hint="pass a path or digest")
    with registry.store.db.connect() as conn:
        rows = conn.execute(select(data_snapshots.c.digest).where(data_snapshots.c.digest.startswith(ref))).all()
    if len(rows) != 1:
        raise NotFoundError(
            f"{'no' if not rows else 'more than one'} data snapshot matches {ref}",
            hint="pass the gold set's path, or a digest from 'tether data add'",
        )
    return str(rows[0][0])


def _read(registry: Registry, version_id: str, source: str) -> Baseline | None:
    with registry.store.db.connect() as conn:
        row = (
            conn.execute(
                select(baseline_profiles).where(
                    baseline_profiles.c.version_id == version_id, baseline_profiles.c.source == source
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    doc = orjson.loads(registry.store.blobs.get_bytes(row["profile_digest"], what=f"{source} baseline profile"))
    return Baseline(
        version_id=version_id,
        source=source,
        data_digest=row["data_digest"],
        profile_digest=row["profile_digest"],
        rows=int(row["rows"]),
        created_at=row["created_at"],
        profile=DatasetProfile.from_json(doc["profile"]),
        segments={c: {v: DatasetProfile.from_json(p) for v, p in vals.items()} for c, vals in doc["segments"].items()},
    )
