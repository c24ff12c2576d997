"""Gate metrics: what each one computes, and which direction is better.

Confusion-count metrics are vectorised over bootstrap resamples: every function takes arrays of true
positives, false positives, true negatives and false negatives (any shape) and returns an array; undefined
values (0/0) are NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Counts = np.ndarray


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str
    #: "confusion" (from tp, fp, tn, fn), "auc" (DeLong), "at_recall" (threshold chosen at a recall, then
    #: confusion), "multiclass" (from a confusion matrix), "regression" (from per-row values).
    kind: str
    fn: Callable[..., np.ndarray] | None = None
    #: For proportions: (events, trials) from (tp, fp, tn, fn), so bounds can be exact (Clopper-Pearson) and a
    #: scope with too few trials is "no evidence" instead of a degenerate bootstrap.
    counts: Callable[..., tuple[Any, Any]] | None = None


def _binary() -> dict[str, Metric]:
    m = [
        Metric(
            "accuracy",
            True,
            "share of correct decisions",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(tp + tn, tp + fp + tn + fn),
            lambda tp, fp, tn, fn: (tp + tn, tp + fp + tn + fn),
        ),
        Metric(
            "error_rate",
            False,
            "share of wrong decisions",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(fp + fn, tp + fp + tn + fn),
            lambda tp, fp, tn, fn: (fp + fn, tp + fp + tn + fn),
        ),
        Metric(
            "false_positive_rate",
            False,
            "negatives flagged / negatives",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(fp, fp + tn),
            lambda tp, fp, tn, fn: (fp, fp + tn),
        ),
        Metric(
            "recall",
            True,
            "positives flagged / positives",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(tp, tp + fn),
            lambda tp, fp, tn, fn: (tp, tp + fn),
        ),
        Metric(
            "false_negative_rate",
            False,
            "positives missed / positives",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(fn, tp + fn),
            lambda tp, fp, tn, fn: (fn, tp + fn),
        ),
        Metric(
            "precision",
            True,
            "positives among flagged",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(tp, tp + fp),
            lambda tp, fp, tn, fn: (tp, tp + fp),
        ),
        Metric(
            "f1",
            True,
            "harmonic mean of precision and recall",
            "confusion",
            lambda tp, fp, tn, fn: _ratio(2 * tp, 2 * tp + fp + fn),
        ),
        Metric("auc", True, "area under the ROC curve (DeLong)", "auc"),
        Metric(
            "fpr_at_recall",
            False,
            "false-positive rate at the threshold reaching params.recall",
            "at_recall",
            lambda tp, fp, tn, fn: _ratio(fp, fp + tn),
            lambda tp, fp, tn, fn: (fp, fp + tn),
        ),
    ]
    return {x.name: x for x in m}


BINARY = _binary()

MULTICLASS = {
    x.name: x
    for x in [
        Metric("accuracy", True, "share of correct predictions", "multiclass"),
        Metric("error_rate", False, "share of wrong predictions", "multiclass"),
        Metric("macro_recall", True, "mean per-class recall", "multiclass"),
        Metric("macro_precision", True, "mean per-class precision", "multiclass"),
        Metric("macro_f1", True, "mean per-class F1", "multiclass"),
    ]
}

REGRESSION = {
    x.name: x
    for x in [
        Metric("mae", False, "mean absolute error", "regression"),
        Metric("rmse", False, "root mean squared error", "regression"),
    ]
}

BY_TASK = {"binary": BINARY, "multiclass": MULTICLASS, "regression": REGRESSION}


def multiclass_value(name: str, confusion: np.ndarray) -> np.ndarray:
    """A multiclass metric from confusion matrices of shape (..., K, K) indexed [true, predicted]."""
    c = np.asarray(confusion, dtype=float)
    total = c.sum(axis=(-2, -1))
    correct = np.trace(c, axis1=-2, axis2=-1)
    if name == "accuracy":
        return _ratio(correct, total)
    if name == "error_rate":
        return _ratio(total - correct, total)
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    recall = _ratio(diag, c.sum(axis=-1))
    precision = _ratio(diag, c.sum(axis=-2))
    if name == "macro_recall":
        return np.nanmean(recall, axis=-1)
    if name == "macro_precision":
        return np.nanmean(precision, axis=-1)
    if name == "macro_f1":
        with np.errstate(invalid="ignore"):
            f1 = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision), 0.0)
        return np.nanmean(f1, axis=-1)
    raise KeyError(name)


def threshold_at_recall(labels: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """The highest threshold t such that flagging ``scores >= t`` reaches at least ``recall``."""
    pos = np.sort(np.asarray(scores)[np.asarray(labels).astype(bool)])[::-1]
    if pos.size == 0:
        return float("inf")
    k = max(1, int(np.ceil(recall * pos.size)))
    return float(pos[k - 1])
