"""Group fairness in the gate: demographic parity and equalized odds differences of the candidate's decisions,
against a bound and against the champion's, from one paired bootstrap of per-group cell counts (group, label,
candidate decision, champion decision), so both models see the same resampled rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tether.gate import bootstrap as bs
from tether.gate.results import TestResult, allowed
from tether.gate.spec import FairnessSpec

if TYPE_CHECKING:
    from tether.gate.evaluate import Evaluation


def test(ev: Evaluation, fs: FairnessSpec) -> None:
    """Group fairness of the candidate's decisions: its bound (``max``) and, with a champion, no worse than the
    champion's by more than ``margin``, from a paired bootstrap of (group, label, decisions) cell counts."""
    groups = ev.frame[fs.attribute].astype(str).to_numpy()
    values, g_idx, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    kept = sizes >= fs.min_group_rows
    if kept.sum() < 2:
        ev.results.append(
            TestResult(
                "fairness",
                fs.metric,
                fs.attribute,
                rows=len(groups),
                reason=f"fewer than two groups of {fs.attribute} have {fs.min_group_rows}+ rows",
            )
        )
        return
    dropped = [str(v) for v, k in zip(values, kept, strict=True) if not k]
    if dropped:
        ev.notes.append(f"fairness {fs.attribute}: groups {dropped} have fewer than {fs.min_group_rows} rows")
    remap = -np.ones(len(values), dtype=np.int64)
    remap[kept] = np.arange(int(kept.sum()))
    g = remap[g_idx]
    use = g >= 0
    G = int(kept.sum())
    dp = ev.champ.decision if ev.champ is not None else ev.cand.decision
    code = (
        g[use] * 8
        + ev.y[use].astype(np.int64) * 4
        + ev.cand.decision[use].astype(np.int64) * 2
        + dp[use].astype(np.int64)
    )
    base = bs.cell_counts(code, G * 8).reshape(G, 8)
    boot = bs.resample_cells(base.ravel(), ev.B, ev.rng).reshape(-1, G, 8)
    diff_fn = _dp_difference if fs.metric == "demographic_parity_difference" else _eo_difference
    cand_s, cand_v = diff_fn(boot, False), float(diff_fn(base, False))
    method = f"paired bootstrap, {ev.B} resamples"
    scope = f"{fs.attribute} ({G} groups)"
    if fs.max is not None:
        ev._bound(
            "fairness", fs.metric, scope, method, cand_v, cand_s, fs.max, False, f"at most {fs.max}", int(use.sum())
        )
    if fs.margin is not None and ev.champ is not None:
        champ_s, champ_v = diff_fn(boot, True), float(diff_fn(base, True))
        oriented = champ_s - cand_s
        ev.results.append(
            TestResult(
                "fairness",
                fs.metric,
                scope,
                method,
                cand_v,
                champ_v,
                cand_v - champ_v,
                bs.percentile_interval(cand_s - champ_s, ev.level),
                allowed(False, fs.margin),
                p_harm=bs.p_at_least(oriented, -fs.margin),
                p_ok=bs.p_at_most(oriented, -fs.margin),
                rows=int(use.sum()),
            )
        )


def _group_rates(c: np.ndarray, champion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group positive rate, TPR and FPR from (..., G, 8) cell counts."""
    flagged = [2, 3, 6, 7] if not champion else [1, 3, 5, 7]
    tp = [6, 7] if not champion else [5, 7]
    fp = [2, 3] if not champion else [1, 3]
    total = c.sum(-1).astype(float)
    pos = c[..., 4:].sum(-1).astype(float)
    neg = c[..., :4].sum(-1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = c[..., flagged].sum(-1) / total
        tpr = np.where(pos > 0, c[..., tp].sum(-1) / np.where(pos > 0, pos, 1), np.nan)
        fpr = np.where(neg > 0, c[..., fp].sum(-1) / np.where(neg > 0, neg, 1), np.nan)
    return rate, tpr, fpr


def _spread(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmax(x, axis=-1) - np.nanmin(x, axis=-1)


def _dp_difference(c: np.ndarray, champion: bool) -> np.ndarray:
    return _spread(_group_rates(c, champion)[0])


def _eo_difference(c: np.ndarray, champion: bool) -> np.ndarray:
    _, tpr, fpr = _group_rates(c, champion)
    return np.fmax(_spread(tpr), _spread(fpr))
