"""The statistical part of the gate: pure functions from labels and model outputs to test results.

Nothing here loads a model or touches storage: `evaluate` takes the gold frame, the labels and each model's
outputs, and returns `TestResult`s whose p-values `tether.gate.results.decide` turns into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import beta, binom, norm

from tether.gate import bootstrap as bs
from tether.gate import fairness
from tether.gate.delong import delong
from tether.gate.mcnemar import mcnemar
from tether.gate.metrics import BINARY, REGRESSION, multiclass_value, threshold_at_recall
from tether.gate.results import TestResult, allowed
from tether.gate.spec import GateSpec, MetricSpec

MAX_CLASSES = 20
#: Fewer discordant events than this and a paired rate comparison also needs the exact test (see `_metric`).
FEW_DISCORDANT = 10
#: Rates whose denominator depends on the labels only (the same rows for both models), so their paired
#: difference is bounded by the share of rows only one model counts.
LABEL_DENOMINATOR = frozenset(
    {"accuracy", "error_rate", "false_positive_rate", "recall", "false_negative_rate", "fpr_at_recall"}
)

# Cell codes for binary decisions: label * 4 + candidate decision * 2 + champion decision.
_TP_C, _FP_C, _TN_C, _FN_C = [6, 7], [2, 3], [0, 1], [4, 5]
_TP_P, _FP_P, _TN_P, _FN_P = [5, 7], [1, 3], [0, 2], [4, 6]


@dataclass
class Outputs:
    """One model's outputs on the gold rows: decisions (class or value) and, for binary tasks, scores."""

    decision: np.ndarray
    score: np.ndarray | None = None


class Evaluation:
    def __init__(
        self, spec: GateSpec, frame: pd.DataFrame, labels: np.ndarray, cand: Outputs, champ: Outputs | None
    ) -> None:
        self.spec = spec
        self.frame = frame
        self.y = np.asarray(labels)
        self.cand = cand
        self.champ = champ
        self.rng = np.random.default_rng(spec.bootstrap.seed)
        self.B = spec.bootstrap.resamples
        self.level = 1 - 2 * spec.alpha  # two-sided interval whose ends are the one-sided alpha bounds
        self.z = float(norm.ppf(1 - spec.alpha))
        self.results: list[TestResult] = []
        self.notes: list[str] = []
        self._thresholds: dict[float, tuple[float, float | None]] = {}

    # -- entry ------------------------------------------------------------------------------------------
    def run(self) -> list[TestResult]:
        n = len(self.y)
        if n < self.spec.min_rows:
            self.results.append(
                TestResult(
                    "data",
                    "gold rows",
                    rows=n,
                    reason=f"the gold set has {n} rows, fewer than "
                    f"min_rows={self.spec.min_rows}; add rows or lower min_rows",
                )
            )
            return self.results
        everything = np.ones(n, dtype=bool)
        for ms in self.spec.metrics:
            self._metric(ms, everything, "overall", "metric")
        if self.champ is not None and self.spec.mcnemar and self.spec.task != "regression":
            self._mcnemar()
        for sl in self.spec.slices:
            for scope, mask in self._slice_masks(sl.column, sl.expr, sl.label):
                rows = int(mask.sum())
                if rows < sl.min_rows:
                    msg = f"{rows} rows, fewer than min_rows={sl.min_rows}"
                    if sl.skip_small:
                        self.notes.append(f"slice {scope} skipped: {msg}")
                        continue
                    self.results.append(
                        TestResult(
                            "data",
                            "slice rows",
                            scope=scope,
                            rows=rows,
                            reason=f"{msg}; add gold rows, lower min_rows or set skip_small",
                        )
                    )
                    continue
                for ms in sl.metrics:
                    self._metric(ms, mask, scope, "slice")
        for fs in self.spec.fairness:
            fairness.test(self, fs)
        return self.results

    def _slice_masks(self, column: str | None, expr: str | None, label: str) -> list[tuple[str, np.ndarray]]:
        if column is not None:
            values = self.frame[column]
            return [(f"{column}={v}", (values == v).to_numpy()) for v in sorted(values.dropna().unique(), key=str)]
        mask = self.frame.eval(expr)
        return [(label, np.asarray(mask, dtype=bool))]

    # -- one metric in one scope ------------------------------------------------------------------------
    def _metric(self, ms: MetricSpec, mask: np.ndarray, scope: str, kind: str) -> None:
        metric = self.spec.metric(ms.name)
        rows = int(mask.sum())
        if metric.kind == "auc":
            self._auc(ms, mask, scope, kind, rows)
            return
        if self.spec.task == "regression":
            cand_s, champ_s, cand_v, champ_v = self._regression(ms.name, mask)
        elif self.spec.task == "multiclass":
            cand_s, champ_s, cand_v, champ_v = self._multiclass(ms.name, mask)
        else:
            cand_s, champ_s, cand_v, champ_v = self._binary(ms, mask)
        sign = 1.0 if metric.higher_is_better else -1.0
        method = f"paired bootstrap, {self.B} resamples"
        counts = self._counts(ms) if metric.counts is not None and self.spec.task == "binary" else None
        if counts is not None and counts[1] < self.spec.min_class_rows:
            self._no_evidence(ms, kind, scope, rows, f"{counts[1]} rows in its denominator")
            return
        if champ_s is not None and champ_v is not None:
            diff = cand_s - champ_s
            oriented = sign * diff
            p_ok = bs.p_at_most(oriented, -ms.margin)
            if counts is not None and ms.name in LABEL_DENOMINATOR and counts[2] + counts[3] < FEW_DISCORDANT:
                # Few discordant events: the bootstrap cannot see the tail it is asked about (with none it is a
                # point mass at 0). The difference is at most the share of rows only the worse side counts, so
                # an exact one-sided binomial test on that share must agree before "within the margin".
                worse = counts[2] if sign < 0 else counts[3]
                p_ok = max(p_ok, float(binom.cdf(worse, counts[1], ms.margin)) if ms.margin > 0 else 1.0)
            self.results.append(
                TestResult(
                    kind,
                    ms.name,
                    scope,
                    method,
                    cand_v,
                    champ_v,
                    cand_v - champ_v,
                    bs.percentile_interval(diff, self.level),
                    allowed(metric.higher_is_better, ms.margin),
                    p_harm=bs.p_at_least(oriented, -ms.margin),
                    p_ok=p_ok,
                    rows=rows,
                )
            )
        if counts is not None:
            self._exact_bounds(ms, cand_v, counts[0], counts[1], scope, rows)
        else:
            self._bounds(ms, metric.higher_is_better, cand_s, cand_v, scope, rows, method)

    def _counts(self, ms: MetricSpec) -> tuple[int, int, int, int]:
        """(candidate events, trials, events only the candidate has, events only the champion has) of a rate,
        from the cell counts of the scope just evaluated."""
        metric = self.spec.metric(ms.name)
        assert metric.counts is not None
        c = self._base

        def cells(idx: list[int]) -> int:
            return int(c[idx].sum())

        k, n = metric.counts(cells(_TP_C), cells(_FP_C), cells(_TN_C), cells(_FN_C))
        if self.champ is None:
            return int(k), int(n), 0, 0
        # Rows counted as events by one model only: the candidate's events minus both's, and vice versa.
        ev_c = _event_cells(metric, champion=False)
        ev_p = _event_cells(metric, champion=True)
        only_c = int(c[sorted(set(ev_c) - set(ev_p))].sum())
        only_p = int(c[sorted(set(ev_p) - set(ev_c))].sum())
        return int(k), int(n), only_c, only_p

    def _no_evidence(self, ms: MetricSpec, kind: str, scope: str, rows: int, why: str) -> None:
        for what, present in (
            ("vs champion", self.champ is not None),
            ("floor", ms.floor is not None),
            ("ceiling", ms.ceiling is not None),
        ):
            if present:
                self.results.append(
                    TestResult(
                        kind if what == "vs champion" else "bound",
                        ms.name,
                        scope,
                        rows=rows,
                        reason=f"no evidence ({what}): {why}, fewer than min_class_rows={self.spec.min_class_rows}; "
                        "add gold rows of that class",
                    )
                )

    def _exact_bounds(self, ms: MetricSpec, value: float, k: int, n: int, scope: str, rows: int) -> None:
        """Floors and ceilings of a rate by exact binomial tests, with Clopper-Pearson intervals: exact at any
        count, zero events included (0 of 29 bounds a rate at 9.8%, not 0%)."""
        a = (1 - self.level) / 2
        lo = float(beta.ppf(a, k, n - k + 1)) if k > 0 else 0.0
        hi = float(beta.ppf(1 - a, k + 1, n - k)) if k < n else 1.0
        method = f"exact binomial ({k} of {n}), Clopper-Pearson"
        for bound, floor in ((ms.floor, True), (ms.ceiling, False)):
            if bound is None:
                continue
            at_most = float(binom.cdf(k, n, bound))  # small when the rate is shown below the bound
            at_least = float(binom.sf(k - 1, n, bound))  # small when the rate is shown above the bound
            self.results.append(
                TestResult(
                    "bound",
                    ms.name,
                    scope,
                    method,
                    value,
                    interval=(lo, hi),
                    allowed=f"{'floor' if floor else 'ceiling'} {bound}",
                    p_harm=at_most if floor else at_least,
                    p_ok=at_least if floor else at_most,
                    rows=rows,
                    extra={"events": k, "trials": n},
                )
            )

    def _bounds(
        self, ms: MetricSpec, higher: bool, samples: np.ndarray, value: float, scope: str, rows: int, method: str
    ) -> None:
        if ms.floor is not None:
            self._bound("bound", ms.name, scope, method, value, samples, ms.floor, True, f"floor {ms.floor}", rows)
        if ms.ceiling is not None:
            self._bound(
                "bound", ms.name, scope, method, value, samples, ms.ceiling, False, f"ceiling {ms.ceiling}", rows
            )

    def _bound(
        self,
        kind: str,
        name: str,
        scope: str,
        method: str,
        value: float,
        samples: np.ndarray,
        bound: float,
        floor: bool,
        allowed: str,
        rows: int,
    ) -> None:
        """An absolute bound on bootstrap samples: a floor is shown met from below, a ceiling from above."""
        at_least, at_most = bs.p_at_least(samples, bound), bs.p_at_most(samples, bound)
        self.results.append(
            TestResult(
                kind,
                name,
                scope,
                method,
                value,
                interval=bs.percentile_interval(samples, self.level),
                allowed=allowed,
                p_harm=at_least if floor else at_most,
                p_ok=at_most if floor else at_least,
                rows=rows,
            )
        )

    # -- binary ----------------------------------------------------------------------------------------
    def _decisions(self, ms: MetricSpec) -> tuple[np.ndarray, np.ndarray | None]:
        if BINARY[ms.name].kind != "at_recall":
            return self.cand.decision, None if self.champ is None else self.champ.decision
        recall = float(ms.params["recall"])
        if recall not in self._thresholds:
            t_c = threshold_at_recall(self.y, _scores(self.cand), recall)
            t_p = None if self.champ is None else threshold_at_recall(self.y, _scores(self.champ), recall)
            self._thresholds[recall] = (t_c, t_p)
        t_c, t_p = self._thresholds[recall]
        dc = (_scores(self.cand) >= t_c).astype(np.int64)
        dp = None if self.champ is None or t_p is None else (_scores(self.champ) >= t_p).astype(np.int64)
        return dc, dp

    def _binary(self, ms: MetricSpec, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float, float | None]:
        dc, dp = self._decisions(ms)
        y = self.y[mask].astype(np.int64)
        code = y * 4 + dc[mask].astype(np.int64) * 2 + (dp[mask].astype(np.int64) if dp is not None else 0)
        base = bs.cell_counts(code, 8)
        boot = bs.resample_cells(base, self.B, self.rng)
        fn = BINARY[ms.name].fn
        assert fn is not None

        def value(c: np.ndarray, champion: bool) -> np.ndarray:
            tp, fp, tn, fneg = (_TP_P, _FP_P, _TN_P, _FN_P) if champion else (_TP_C, _FP_C, _TN_C, _FN_C)
            return fn(c[..., tp].sum(-1), c[..., fp].sum(-1), c[..., tn].sum(-1), c[..., fneg].sum(-1))

        cand_v = float(value(base, False))
        self._base = base
        if dp is None:
            return value(boot, False), None, cand_v, None
        return value(boot, False), value(boot, True), cand_v, float(value(base, True))

    def _auc(self, ms: MetricSpec, mask: np.ndarray, scope: str, kind: str, rows: int) -> None:
        y = self.y[mask]
        pos = int(np.sum(y == 1))
        if min(pos, rows - pos) < self.spec.min_class_rows:
            self.results.append(
                TestResult(
                    kind,
                    ms.name,
                    scope,
                    "DeLong",
                    rows=rows,
                    reason=f"no evidence: AUC needs at least min_class_rows={self.spec.min_class_rows} rows of "
                    f"each class; this scope has {pos} positives and {rows - pos} negatives",
                )
            )
            return
        scores = [_scores(self.cand)[mask]] + ([] if self.champ is None else [_scores(self.champ)[mask]])
        r = delong(y, *scores)
        if self.champ is not None:
            d, se = r.difference, r.difference_se
            p_harm, p_ok = _normal_ps(d + ms.margin, se)
            self.results.append(
                TestResult(
                    kind,
                    ms.name,
                    scope,
                    "DeLong",
                    r.auc[0],
                    r.auc[1],
                    d,
                    (d - self.z * se, d + self.z * se),
                    allowed(True, ms.margin),
                    p_harm=p_harm,
                    p_ok=p_ok,
                    rows=rows,
                    extra={"se": se},
                )
            )
        if ms.floor is not None:
            a, se = r.auc[0], r.se(0)
            p_harm, p_ok = _normal_ps(a - ms.floor, se)
            self.results.append(
                TestResult(
                    "bound",
                    ms.name,
                    scope,
                    "DeLong",
                    a,
                    interval=(a - self.z * se, a + self.z * se),
                    allowed=f"floor {ms.floor}",
                    p_harm=p_harm,
                    p_ok=p_ok,
                    rows=rows,
                    extra={"se": se},
                )
            )

    def _mcnemar(self) -> None:
        assert self.champ is not None
        wrong_c = self.cand.decision != self.y
        wrong_p = self.champ.decision != self.y
        b = int(np.sum(wrong_c & ~wrong_p))
        c = int(np.sum(~wrong_c & wrong_p))
        r = mcnemar(b, c, mid_p=True)
        self.results.append(
            TestResult(
                "mcnemar",
                "decisions",
                "overall",
                "McNemar mid-p",
                p_harm=r.greater,
                rows=len(self.y),
                allowed="candidate errs no more often than the champion",
                extra={"b": b, "c": c, "two_sided": r.two_sided},
            )
        )

    # -- multiclass ------------------------------------------------------------------------------------
    def _multiclass(self, name: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float, float | None]:
        y = self.y[mask]
        pc = self.cand.decision[mask]
        pp = self.champ.decision[mask] if self.champ is not None else pc
        classes = np.unique(
            np.concatenate([self.y, self.cand.decision] + ([self.champ.decision] if self.champ is not None else []))
        )
        k = len(classes)
        if k > MAX_CLASSES:
            raise ValueError(f"the multiclass gate supports up to {MAX_CLASSES} classes, found {k}")
        idx = {c: i for i, c in enumerate(classes.tolist())}
        code = (
            np.array([idx[v] for v in y.tolist()]) * k * k
            + np.array([idx[v] for v in pc.tolist()]) * k
            + np.array([idx[v] for v in pp.tolist()])
        )
        base = bs.cell_counts(code, k**3).reshape(k, k, k)
        boot = bs.resample_cells(base.ravel(), self.B, self.rng).reshape(-1, k, k, k)
        cand_s = multiclass_value(name, boot.sum(axis=3))
        cand_v = float(multiclass_value(name, base.sum(axis=2)))
        if self.champ is None:
            return cand_s, None, cand_v, None
        return cand_s, multiclass_value(name, boot.sum(axis=2)), cand_v, float(multiclass_value(name, base.sum(axis=1)))

    # -- regression ------------------------------------------------------------------------------------
    def _regression(self, name: str, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float, float | None]:
        y = self.y[mask].astype(float)
        errs = [np.abs(y - self.cand.decision[mask].astype(float))]
        if self.champ is not None:
            errs.append(np.abs(y - self.champ.decision[mask].astype(float)))
        e = np.vstack(errs if name == "mae" else [x**2 for x in errs])  # (models, rows)
        n = e.shape[1]
        sums = np.concatenate([w @ e.T for w in bs.row_weights(n, self.B, self.rng)])  # (B, models)
        vals = sums / n
        point = e.mean(axis=1)
        if name == "rmse":
            vals, point = np.sqrt(vals), np.sqrt(point)
        assert name in REGRESSION
        if self.champ is None:
            return vals[:, 0], None, float(point[0]), None
        return vals[:, 0], vals[:, 1], float(point[0]), float(point[1])

    # -- fairness --------------------------------------------------------------------------------------


def _scores(o: Outputs) -> np.ndarray:
    if o.score is None:
        raise ValueError("this metric needs scores, and the model output has none")
    return o.score


def _normal_ps(distance: float, se: float) -> tuple[float, float]:
    """(p_harm, p_ok) for an estimate ``distance`` above a bound with standard error ``se``."""
    if se <= 0:
        return (1.0, 0.0) if distance > 0 else (0.0, 1.0) if distance < 0 else (1.0, 1.0)
    z = distance / se
    return float(norm.cdf(z)), float(norm.sf(z))


def evaluate(
    spec: GateSpec, frame: pd.DataFrame, labels: np.ndarray, cand: Outputs, champ: Outputs | None
) -> tuple[list[TestResult], list[str]]:
    """All statistical tests of ``spec`` (not yet decided: see `tether.gate.results.decide`), and notes."""
    ev = Evaluation(spec, frame, labels, cand, champ)
    return ev.run(), ev.notes


def _event_cells(metric: object, *, champion: bool) -> list[int]:
    """The cell codes in which one model counts an event of a rate metric (e.g. its false positives)."""
    tp, fp, tn, fn = (_TP_P, _FP_P, _TN_P, _FN_P) if champion else (_TP_C, _FP_C, _TN_C, _FN_C)
    parts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    out = []
    for code in range(8):
        one = {k: int(code in v) for k, v in parts.items()}
        events, _ = metric.counts(one["tp"], one["fp"], one["tn"], one["fn"])  # type: ignore[attr-defined]
        if events:
            out.append(code)
    return out
