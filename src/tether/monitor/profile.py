"""Mergeable feature profiles: what the training data looked like, and what the gateway sees.

Per numeric feature: count, missing, mean and variance (Welford's update, merged with the parallel formulas of
Chan, Golub & LeVeque 1979), and a KLL quantile sketch from Apache DataSketches (Karnin, Lang & Liberty 2016)
whose normalised rank error is known (about 1.3% at k = 200, reported by the sketch itself). Per categorical
feature: value counts up to a cap, beyond which new values go to an ``__other__`` bucket. Every part merges
by addition, so profiles from several gateway replicas or time windows combine; `update` takes a whole
micro-batch (vectorised) and equals repeated single updates.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tether.core import InvalidInputError

OTHER = "__other__"


def _kll(k: int) -> Any:
    import datasketches  # a core dependency: the Apache DataSketches KLL sketch with its known error bound

    return datasketches.kll_floats_sketch(k)


#: The largest magnitude a numeric feature's value may have to be profiled (well inside float32, whose
#: maximum is 3.4e38, and far from overflowing a sum of squares).
MAX_MAGNITUDE = 1e30


@dataclass
class NumericProfile:
    k: int = 200
    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sketch: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sketch is None:
            self.sketch = _kll(self.k)

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        # Beyond MAX_MAGNITUDE a value is a poison, not a measurement: its square overflows the moments and
        # float32 (the sketch) cannot hold it. It counts as missing (and as out_of_range in `observe`).
        present = v[np.isfinite(v) & (np.abs(v) <= MAX_MAGNITUDE)]
        self.missing += int(v.size - present.size)
        n = int(present.size)
        if n == 0:
            return
        # Chan et al.: combine the running (count, mean, M2) with the batch's.
        b_mean = float(present.mean())
        b_m2 = float(((present - b_mean) ** 2).sum())
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.m2 += b_m2 + delta * delta * self.count * n / total
        self.count = total
        self.sketch.update(present.astype(np.float32))

    def merge(self, other: NumericProfile) -> NumericProfile:
        total = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
            self.sketch.merge(other.sketch)
        self.count = total
        self.missing += other.missing
        return self

    @property
    def variance(self) -> float:
        return self.m2 / (self.count - 1) if self.count > 1 else float("nan")

    @property
    def missing_ratio(self) -> float:
        seen = self.count + self.missing
        return self.missing / seen if seen else float("nan")

    @property
    def rank_error(self) -> float:
        return float(self.sketch.normalized_rank_error(False))

    def quantile(self, q: float) -> float:
        return float(self.sketch.get_quantile(q)) if self.count else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "k": self.k,
            "count": self.count,
            "missing": self.missing,
            "mean": self.mean,
            "m2": self.m2,
            "sketch": base64.b64encode(self.sketch.serialize()).decode(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NumericProfile:
        import datasketches

        sketch = datasketches.kll_floats_sketch.deserialize(base64.b64decode(d["sketch"]))
        return cls(d["k"], d["count"], d["missing"], d["mean"], d["m2"], sketch)


@dataclass
class CategoricalProfile:
    cap: int = 1000
    count: int = 0
    missing: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def update(self, values: Any) -> None:
        s = pd.Series(values, dtype="object")
        present = s[s.notna()].astype(str)
        self.missing += int(s.size - present.size)
        self.count += int(present.size)
        for value, n in present.value_counts(sort=False).items():
            self._add(str(value), int(n))

    def _add(self, value: str, n: int) -> None:
        if value in self.counts or len(self.counts) < self.cap:
            self.counts[value] += n
        else:
            self.counts[OTHER] += n

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        for value, n in other.counts.items():
            self._add(value, n)
        self.count += other.count
        self.missing += other.missing
        return self

    @property
    def missing_ratio(self) -> float:
        seen = self.count + self.missing
        return self.missing / seen if seen else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "cap": self.cap,
            "count": self.count,
            "missing": self.missing,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CategoricalProfile:
        return cls(d["cap"], d["count"], d["missing"], Counter(d["counts"]))


Profile = NumericProfile | CategoricalProfile


@dataclass
class DatasetProfile:
    """One profile per feature; numeric dtypes get a `NumericProfile`, everything else a `CategoricalProfile`."""

    features: dict[str, Profile] = field(default_factory=dict)

    @classmethod
    def for_kinds(cls, kinds: dict[str, str], *, k: int = 200, cap: int = 1000) -> DatasetProfile:
        """Empty profiles for features of known kinds (``numeric`` or ``categorical``; see `kinds_of`)."""
        return cls(
            {n: NumericProfile(k) if kind == "numeric" else CategoricalProfile(cap) for n, kind in kinds.items()}
        )

    def observe(self, frame: pd.DataFrame) -> Counter[str]:
        """Update from live rows of any quality; returns what was wrong with them, counted, never raised.

        A numeric feature's non-numbers count as ``type_mismatch`` (and as missing), infinities as
        ``non_finite`` (and missing); columns the profile does not know count as ``unknown_feature``.
        """
        issues: Counter[str] = Counter()
        for name in frame.columns:
            if name not in self.features:
                issues[f"unknown_feature:{name}"] += int(frame[name].notna().sum())
        for name, prof in self.features.items():
            if name not in frame.columns:
                prof.missing += len(frame)
                continue
            col = frame[name]
            if isinstance(prof, NumericProfile):
                if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                    if bad := int((np.isnan(values) & col.notna().to_numpy()).sum()):
                        issues[f"type_mismatch:{name}"] += bad
                if inf := int(np.isinf(values).sum()):
                    issues[f"non_finite:{name}"] += inf
                if huge := int((np.isfinite(values) & (np.abs(values) > MAX_MAGNITUDE)).sum()):
                    issues[f"out_of_range:{name}"] += huge
                prof.update(values)
            else:
                prof.update(col)
        return issues

    @classmethod
    def of(cls, frame: pd.DataFrame, *, k: int = 200, cap: int = 1000) -> DatasetProfile:
        p = cls({c: NumericProfile(k) if _numeric(frame[c]) else CategoricalProfile(cap) for c in frame.columns})
        p.update(frame)
        return p

    def update(self, frame: pd.DataFrame) -> None:
        for name, prof in self.features.items():
            if name in frame.columns:
                col = frame[name]
                prof.update(
                    col.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(prof, NumericProfile) else col
                )
            else:  # a feature absent from the batch is missing in every row of it
                prof.missing += len(frame)

    def merge(self, other: DatasetProfile) -> DatasetProfile:
        for name, prof in other.features.items():
            mine = self.features.get(name)
            if mine is None:
                self.features[name] = prof
                continue
            kinds = [type(p).__name__.removesuffix("Profile").lower() for p in (mine, prof)]
            if kinds[0] != kinds[1]:  # a replica profiling a feature as another kind (another schema): never sum
                raise InvalidInputError(
                    f"feature {name!r}: cannot merge a {kinds[0]} profile with a {kinds[1]} profile",
                    hint="both profiles must come from the same input schema",
                )
            mine.merge(prof)  # type: ignore[arg-type]  # the same kind, checked above
        return self

    def to_json(self) -> dict[str, Any]:
        return {"format": "tether-profile-v1", "features": {k: v.to_json() for k, v in self.features.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetProfile:
        return cls(
            {
                k: NumericProfile.from_json(v) if v["kind"] == "numeric" else CategoricalProfile.from_json(v)
                for k, v in d["features"].items()
            }
        )


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


def kinds_of(input_schema: dict[str, Any], features: list[str] | None = None) -> dict[str, str]:
    """``numeric`` for a version's float and integer inputs, ``categorical`` for the rest (strings, booleans)."""
    fields = {f["name"]: f["type"] for f in input_schema.get("fields", [])}
    names = features if features is not None else list(fields)
    return {n: "numeric" if fields.get(n) in ("float", "integer") else "categorical" for n in names if n in fields}
