"""Prompt drift: are users asking about other things than the baseline's users did?

A two-sample test on MiniLM prompt embeddings: the unbiased squared maximum mean discrepancy (MMD^2, Gretton et
al., "A kernel two-sample test", JMLR 2012) with a Gaussian kernel whose bandwidth is the baseline's median
pairwise distance (fixed by the baseline, so the statistic is comparable from one check to the next), and a
permutation null: ``PERMUTATIONS`` relabellings computed in one matrix product. Where fewer than ``TAIL_HITS``
permutations reach the observed statistic, the p-value is the tail of a gamma distribution fitted to the
permutation statistics by moments (the usual approximation of the MMD null, Gretton et al. 2009), so that the
small per-check levels of a 30-day false-alarm budget can be reached at all. A window alarms only when the
p-value is under its level *and* MMD^2 is at least ``min_shift``: with heavy traffic, trivia do not alarm.

What moved is shown, not only measured: the live prompts where the witness function (mean kernel to the live
window minus mean kernel to the baseline) is highest are the examples nearest to the shifted region, and the
high-witness prompts are grouped into topics (leader clustering on cosine similarity), each named by its most
central prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from tether.core.errors import TetherError
from tether.graders.scores import read_prompts

if TYPE_CHECKING:
    from tether.monitor.llm_config import LLMEvalConfig
    from tether.registry import Registry

EVIDENCE_ROWS = 20
SECONDS_PER_30_DAYS = 30 * 86_400

PERMUTATIONS = 1000
TAIL_HITS = 10
MAX_SIDE = 400  # prompts per side: the newest, beyond this (the kernel matrix is (2 x 400)^2)
TOPIC_SIMILARITY = 0.55


@dataclass(frozen=True)
class DriftResult:
    statistic: float  # MMD^2 (unbiased)
    p_value: float
    bandwidth: float
    n_baseline: int
    n_live: int
    examples: list[dict[str, Any]] = field(default_factory=list)  # the prompts nearest the shifted region
    topics: list[dict[str, Any]] = field(default_factory=list)  # new topic clusters, named by their centre
    method: str = "mmd2, permutation"

    def to_json(self) -> dict[str, Any]:
        return {
            "statistic": round(self.statistic, 6),
            "p_value": self.p_value,
            "bandwidth": round(self.bandwidth, 4),
            "n_baseline": self.n_baseline,
            "n_live": self.n_live,
            "examples": self.examples,
            "topics": self.topics,
            "method": self.method,
        }


def bandwidth(baseline: np.ndarray) -> float:
    """The median pairwise Euclidean distance within the baseline (the median heuristic)."""
    sq = np.maximum(0.0, 2.0 - 2.0 * (baseline @ baseline.T))  # unit vectors: |a-b|^2 = 2 - 2 a.b
    iu = np.triu_indices(len(baseline), 1)
    med = float(np.sqrt(np.median(sq[iu]))) if len(iu[0]) else 1.0
    return med if med > 1e-6 else 1.0


def _mmd2(k: np.ndarray, n: int) -> float:
    """Unbiased MMD^2 of the first ``n`` rows of kernel matrix ``k`` against the rest."""
    m = len(k) - n
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )


def _permuted(k0: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The permutation statistic ``s K0 s`` (s = +1/n on one side, -1/m on the other, K0 without its diagonal)
    for each row of 0/1 ``labels``: one matrix product for a block of relabellings. It orders relabellings as
    the unbiased MMD^2 does, up to terms that do not depend on the labels."""
    m = labels.shape[1] - n
    s = labels / n - (1.0 - labels) / m
    result: np.ndarray = ((s @ k0) * s).sum(axis=1)
    return result


def two_sample(
    baseline: np.ndarray,
    live: np.ndarray,
    *,
    live_texts: list[str] | None = None,
    examples: int = 5,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> DriftResult:
    """MMD^2 between unit-length embeddings ``baseline`` and ``live``, with its permutation p-value."""
    baseline, live = baseline[-MAX_SIDE:], live[-MAX_SIDE:]
    if live_texts is not None:
        live_texts = live_texts[-MAX_SIDE:]
    n, m = len(baseline), len(live)
    if n < 2 or m < 2:
        raise ValueError("prompt drift needs at least 2 prompts on each side")
    h = bandwidth(baseline)
    pooled = np.vstack([baseline, live]).astype(np.float64)
    sq = np.maximum(0.0, 2.0 - 2.0 * (pooled @ pooled.T))
    k = np.exp(-sq / (2 * h * h))
    mmd2 = _mmd2(k, n)
    k0 = k - np.diag(np.diag(k))
    labels = np.zeros((1, n + m))
    labels[0, :n] = 1.0
    observed = float(_permuted(k0, labels, n)[0])
    rng = np.random.default_rng(seed)
    perms = np.zeros((permutations, n + m))
    rows = np.arange(permutations)[:, None]
    perms[rows, np.argsort(rng.random((permutations, n + m)), axis=1)[:, :n]] = 1.0
    null = _permuted(k0, perms, n)
    hits = int((null >= observed).sum())
    method = "mmd2, permutation"
    if hits >= TAIL_HITS:
        p = (hits + 1) / (permutations + 1)
    else:
        # Gamma fitted by moments to the null statistics shifted to be positive (the unbiased MMD^2 can be < 0).
        shift = float(null.min())
        x = null - shift
        mean, var = float(x.mean()), float(x.var())
        if var <= 0 or mean <= 0:
            p = 1.0 / (permutations + 1)
        else:
            shape, scale = mean * mean / var, var / mean
            p = float(stats.gamma.sf(observed - shift, shape, scale=scale))
        method = "mmd2, permutation with a gamma tail"
    witness = k[n:, n:].mean(axis=1) - k[n:, :n].mean(axis=1)
    shown: list[dict[str, Any]] = []
    topics: list[dict[str, Any]] = []
    if live_texts is not None:
        order = np.argsort(-witness)
        shown = [{"prompt": live_texts[i][:300], "witness": round(float(witness[i]), 5)} for i in order[:examples]]
        topics = _topics(live, live_texts, witness, examples)
    return DriftResult(mmd2, p, h, n, m, shown, topics, method)


def _topics(live: np.ndarray, texts: list[str], witness: np.ndarray, limit: int) -> list[dict[str, Any]]:
    """Leader clustering of the live prompts with a positive witness (where the live window has more mass
    than the baseline); each topic named by its medoid, biggest first."""
    idx = [int(i) for i in np.argsort(-witness) if witness[i] > 0]
    leaders: list[int] = []
    members: dict[int, list[int]] = {}
    for i in idx:
        if leaders:
            sims = live[leaders] @ live[i]
            j = int(np.argmax(sims))
            if sims[j] >= TOPIC_SIMILARITY:
                members[leaders[j]].append(i)
                continue
        leaders.append(i)
        members[i] = [i]
    out = []
    for group in sorted(members.values(), key=len, reverse=True)[:limit]:
        if len(group) < 2:
            continue
        vecs = live[group]
        medoid = group[int(np.argmax((vecs @ vecs.T).sum(axis=1)))]
        out.append({"name": texts[medoid][:200], "prompts": len(group)})
    return out


def window(
    registry: Registry, embedder: Callable[[], Any], model: str, cfg: LLMEvalConfig, champion: str, now: datetime
) -> dict[str, Any]:
    """The window's sampled prompts against the baseline prompts (see ``tether.monitor.llm_watch``)."""
    pd_cfg = cfg.prompt_drift
    since = now - timedelta(seconds=pd_cfg.window_seconds)
    live = read_prompts(registry.store.db, model, since, now)
    base_texts, source = baseline_prompts(registry, model, cfg, champion, since)
    if len(base_texts) < pd_cfg.min_prompts or len(live) < pd_cfg.min_prompts:
        return {
            "decision": "no data",
            "baseline_prompts": len(base_texts),
            "live_prompts": len(live),
            "needed": pd_cfg.min_prompts,
            "baseline": source,
        }
    tenants: dict[str, list[dict[str, Any]]] = {}
    if pd_cfg.per_tenant:
        for r in live:
            tenants.setdefault(r["tenant"], []).append(r)
        tenants = {k: v for k, v in tenants.items() if len(v) >= pd_cfg.min_prompts}
    # The budget is per stream (the model as a whole, each tenant), as the feature watch's is per feature.
    checks = SECONDS_PER_30_DAYS / pd_cfg.check_seconds
    alpha = min(0.5, cfg.false_alarms_per_metric_per_30_days / checks)
    emb = embedder()
    base = emb.encode(base_texts)
    seed = int(now.timestamp()) % 2**31

    def one(rows: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [r["prompt"] for r in rows]
        result = two_sample(base, emb.encode(texts), live_texts=texts, examples=pd_cfg.examples, seed=seed)
        alarm = result.p_value < alpha and result.statistic >= pd_cfg.min_shift
        return {
            "decision": "drifted" if alarm else "stable",
            "alpha": alpha,
            "min_shift": pd_cfg.min_shift,
            "baseline": source,
            "window": [since.isoformat(), now.isoformat()],
            "traces": [r["trace_id"] for r in rows[-EVIDENCE_ROWS:]],
            **result.to_json(),
        }

    overall = one(live)
    if tenants:
        overall["tenants"] = {name: one(rows) for name, rows in sorted(tenants.items())}
    return overall


def baseline_prompts(
    registry: Registry, model: str, cfg: LLMEvalConfig, champion: str, before: datetime
) -> tuple[list[str], str]:
    pd_cfg = cfg.prompt_drift
    digest = pd_cfg.baseline_prompts
    if digest is None:
        mv = registry.get(champion)
        digest = mv.data.digest
    try:
        from tether.gate.run import load_gold

        frame = load_gold(registry, [digest])
        if "prompt" in frame.columns and len(frame) >= pd_cfg.min_prompts:
            return [str(p) for p in frame["prompt"]][-MAX_SIDE:], f"prompt set {digest[:12]}"
    except TetherError:
        if pd_cfg.baseline_prompts is not None:
            raise
    first = read_prompts(registry.store.db, model, before - timedelta(days=3650), before, limit=1, oldest=True)
    if not first:
        return [], "live (none yet)"
    start = first[0]["at"]
    end = min(before, start + timedelta(seconds=pd_cfg.baseline_seconds))
    rows = read_prompts(registry.store.db, model, start, end, limit=MAX_SIDE, oldest=True)
    return [
        r["prompt"] for r in rows
    ], f"live {start.isoformat(timespec='seconds')} to {end.isoformat(timespec='seconds')}"
