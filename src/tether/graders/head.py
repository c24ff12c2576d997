"""The trainable head: a small classifier on MiniLM embeddings, fitted on labelled interactions.

A team labels interactions (by hand, or with its expensive LLM judge) and distils the labels into a grader cheap
enough for every sampled interaction. Features are the prompt's and the answer's embeddings, their product and
their absolute difference (4 x 384 numbers); the classifier is scikit-learn's L2-regularised logistic
regression. The fitted coefficients are the head's *weights* and the labelled rows its *training data*: both are
stored as blobs and their digests are inside the grader version's id, like any model's triad.

Scoring needs no scikit-learn: one matrix product and a logistic over the batch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from tether.core.errors import InvalidInputError
from tether.graders.interaction import Interaction, Score

MIN_ROWS = 20  # per class: fewer labels than this cannot say anything a reader should trust


def features(embedder: Any, items: list[Interaction]) -> np.ndarray:
    texts = [it.prompt or it.system for it in items] + [it.answer for it in items]
    vecs = embedder.encode(texts) if texts else np.zeros((0, 384), dtype=np.float32)
    p, a = vecs[: len(items)], vecs[len(items) :]
    return np.hstack([p, a, p * a, np.abs(p - a)]).astype(np.float32)


@dataclass(frozen=True)
class Fitted:
    weights: bytes  # an .npy of float64: the intercept, then the coefficients
    data: bytes  # the labelled rows, JSON lines
    report: dict[str, Any]  # rows, classes, cross-validated accuracy


def fit(embedder: Any, items: list[Interaction], labels: list[int], *, c: float = 1.0, seed: int = 0) -> Fitted:
    """Fit the head; labels are 1 (good) or 0 (bad). Refuses too few rows of either class, naming the count."""
    from tether.registry.flavors.base import require

    if len(items) != len(labels):
        raise InvalidInputError(f"{len(items)} interactions but {len(labels)} labels")
    if any(y not in (0, 1) for y in labels):
        raise InvalidInputError("labels must be 0 (bad) or 1 (good)", hint="map your judge's verdicts to 0/1")
    counts = {0: labels.count(0), 1: labels.count(1)}
    if min(counts.values()) < MIN_ROWS:
        raise InvalidInputError(
            f"the head needs at least {MIN_ROWS} labelled rows of each class; got {counts[1]} good, {counts[0]} bad",
            hint="label more interactions (or use the LLM judge to label them)",
        )
    sk = require("sklearn.linear_model", "the trainable grader head", "sklearn")
    ms = require("sklearn.model_selection", "the trainable grader head", "sklearn")
    x, y = features(embedder, items), np.asarray(labels)
    model = sk.LogisticRegression(C=c, max_iter=2000, random_state=seed)
    folds = min(5, min(counts.values()))
    cv = ms.cross_val_score(sk.LogisticRegression(C=c, max_iter=2000, random_state=seed), x, y, cv=folds)
    model.fit(x, y)
    buf = io.BytesIO()  # .npy, not .npz: a zip carries timestamps, and the same fit must give the same bytes
    np.save(buf, np.concatenate([[float(model.intercept_[0])], model.coef_[0]]).astype("<f8"), allow_pickle=False)
    data = b"".join(
        orjson.dumps({**it.to_json(), "label": int(lab)}) + b"\n" for it, lab in zip(items, labels, strict=True)
    )
    report = {
        "rows": len(items),
        "good": counts[1],
        "bad": counts[0],
        "cv_accuracy": round(float(cv.mean()), 4),
        "cv_folds": folds,
    }
    return Fitted(buf.getvalue(), data, report)


def read_labelled(data: bytes) -> tuple[list[Interaction], list[int]]:
    """Rows of JSON lines: an interaction (``prompt`` or ``messages``, ``answer``) and its ``label`` (0 or 1)."""
    items, labels = [], []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            if not isinstance(row, dict) or "label" not in row:
                raise ValueError("it has no 'label'")
            items.append(Interaction.from_json(row))
            labels.append(int(row["label"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise InvalidInputError(
                f"labelled row {n}: {e}", hint='each line: {"prompt": ..., "answer": ..., "label": 0 or 1}'
            ) from None
    return items, labels


class Head:
    def __init__(self, grader_id: str, config: dict[str, Any], weights: bytes, embedder: Any = None) -> None:
        self.grader_id = grader_id
        self.metric = str(config.get("metric") or "judged_good")
        w = np.load(io.BytesIO(weights), allow_pickle=False)
        self.intercept, self.coef = float(w[0]), w[1:].astype(np.float32)
        self._embedder = embedder

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from tether.graders.embed import shared

            self._embedder = shared()
        return self._embedder

    def metrics(self) -> list[str]:
        return [self.metric]

    def grade(self, items: list[Interaction]) -> list[list[Score]]:
        if not items:
            return []
        z = features(self.embedder, items) @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return [[Score(self.grader_id, self.metric, round(float(v), 6))] for v in p]
