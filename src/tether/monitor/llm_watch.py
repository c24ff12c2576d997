"""The LLM watch: alignment decay, canary against champion, prompt drift and judge drift, as anomalies.

One `check` per model, run by `tether serve`'s monitor loop (or `tether llm drift check`):

* **decay** (``tether.monitor.decay``): each served version's graded metrics in the current epoch against the
  version's own baseline (its first ``baseline_seconds`` of graded traffic), within one grader version;
* **canary against champion**: the same test between the two arms' scores of the epoch, during a rollout;
* **prompt drift** (``tether.monitor.prompt_drift``): the window's sampled prompts against the baseline prompts
  (the champion's registered prompt set when it has a ``prompt`` column, else the model's first
  ``baseline_seconds`` of sampled prompts), for the model as a whole and, with ``per_tenant``, for each tenant;
* **judge drift**: the anchor set re-scored by every grader version when it first appears and then every
  ``anchor_every_seconds``; paired differences against the reference run. Reported as judge drift (feature
  ``judge:...``), never as the application's: live scores are only ever compared within one grader version.

Each confirmed alarm is an anomaly row (one open anomaly per version, feature, segment and test) with its
evidence: the interactions and their scores, the statistic, the window. ``tether serve`` carries out the
model's actions (``llm.actions``). An empty window is "no data", never "healthy".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from tether.core.clock import Clock, SystemClock
from tether.core.errors import TetherError
from tether.graders.registry import Graders
from tether.graders.scores import read
from tether.monitor import judge_drift, prompt_drift
from tether.monitor.decay import DecayTest, compare, epoch_alpha
from tether.monitor.llm_config import LLMEvalConfig
from tether.monitor.rates import Rate, ppi_mean, weighted_rate
from tether.monitor.watch import Anomaly, Watch, json_safe
from tether.registry import Registry
from tether.store.tables import anomalies, routing

EVIDENCE_ROWS = 20


@dataclass
class LLMStatus:
    model: str
    at: datetime
    epoch: tuple[datetime, datetime]
    champion: str | None
    canary: str | None
    decay: dict[str, list[DecayTest]] = field(default_factory=dict)  # version id -> tests
    canary_vs_champion: list[DecayTest] = field(default_factory=list)
    prompt_drift: dict[str, Any] = field(default_factory=lambda: {"decision": "no data"})
    judge: list[dict[str, Any]] = field(default_factory=list)
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> metric -> rate
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = json_safe(
            {
                "model": self.model,
                "at": self.at.isoformat(),
                "epoch": [self.epoch[0].isoformat(), self.epoch[1].isoformat()],
                "champion": self.champion,
                "canary": self.canary,
                "decay": {v: [t.to_json() for t in ts] for v, ts in self.decay.items()},
                "canary_vs_champion": [t.to_json() for t in self.canary_vs_champion],
                "prompt_drift": self.prompt_drift,
                "judge": self.judge,
                "rates": self.rates,
                "notes": self.notes,
            }
        )
        return out


class LLMWatch:
    def __init__(
        self, registry: Registry, *, clock: Clock | None = None, embedder: Callable[[], Any] | None = None
    ) -> None:
        self.registry = registry
        self.db = registry.store.db
        self.clock = clock or SystemClock()
        self.watch = Watch(registry, clock=self.clock)
        self.graders = Graders(registry.store)
        self._embedder = embedder
        self._last_prompt_check: dict[str, float] = {}
        self.judges = judge_drift.JudgeGovernance(registry.store, self.graders, embedder)

    def embedder(self) -> Any:
        if self._embedder is None:
            from tether.graders.embed import shared

            return shared()
        return self._embedder()

    def config(self, model: str) -> LLMEvalConfig:
        return self.watch.config(model).llm

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self, model: str, *, now: datetime | None = None, prompts: bool = True) -> LLMStatus:
        cfg = self.config(model)
        now = now or self.clock.now()
        champion, canary = self._arms(model)
        w = cfg.decay.window_seconds
        start = datetime.fromtimestamp(math.floor(now.timestamp() / w) * w, tz=now.tzinfo)
        status = LLMStatus(model, now, (start, now), champion, canary)
        if champion is None:
            status.notes.append("no routing table: nothing is served")
            return status
        watched = self._watched(model, cfg, [v for v in (champion, canary) if v], start, now)
        alpha = epoch_alpha(cfg.false_alarms_per_metric_per_30_days, w, max(1, len(watched)))
        for vid in [v for v in (champion, canary) if v]:
            status.decay[vid] = self._decay(model, vid, cfg, start, now, alpha, status)
            status.rates[vid] = self._rates(model, vid, cfg, start, now)
        if canary:
            status.canary_vs_champion = self._versus(model, champion, canary, cfg, start, now, alpha)
        if prompts:
            status.prompt_drift = self._prompts(model, cfg, champion, now)
        return status

    def _arms(self, model: str) -> tuple[str | None, str | None]:
        with self.db.connect() as conn:
            row = conn.execute(select(routing).where(routing.c.model_name == model)).mappings().first()
        return (None, None) if row is None else (row["champion_id"], row["canary_id"])

    def _watched(
        self, model: str, cfg: LLMEvalConfig, versions: list[str], start: datetime, now: datetime
    ) -> set[tuple[str, str]]:
        keys = set()
        for vid in versions:
            for r in read(self.db, model, version_id=vid, since=start, until=now):
                if self._is_watched(r["metric"], cfg):
                    keys.add((r["metric"], r["grader_id"]))
        return keys

    @staticmethod
    def _is_watched(metric: str, cfg: LLMEvalConfig) -> bool:
        return metric in cfg.decay.metrics or metric.startswith("rule:")

    def _split(
        self, rows: list[dict[str, Any]], cfg: LLMEvalConfig
    ) -> dict[tuple[str, str], tuple[list[float], list[float], int]]:
        out: dict[tuple[str, str], tuple[list[float], list[float], int]] = {}
        for r in rows:
            if not self._is_watched(r["metric"], cfg):
                continue
            v, p, e = out.setdefault((r["metric"], r["grader_id"]), ([], [], 0))
            if r["value"] is None:
                out[(r["metric"], r["grader_id"])] = (v, p, e + (1 if r["error"] else 0))
                continue
            v.append(float(r["value"]))
            p.append(float(r["inclusion"]))
        return out

    def _decay(
        self,
        model: str,
        vid: str,
        cfg: LLMEvalConfig,
        start: datetime,
        now: datetime,
        alpha: float,
        status: LLMStatus,
    ) -> list[DecayTest]:
        first = self._first_score(model, vid)
        if first is None:
            status.notes.append(f"{vid[:12]}: no graded traffic yet")
            return []
        base_end = first + timedelta(seconds=cfg.decay.baseline_seconds)
        live_start = max(start, base_end)
        base = self._split(read(self.db, model, version_id=vid, since=first, until=base_end), cfg)
        live = (
            self._split(read(self.db, model, version_id=vid, since=live_start, until=now), cfg)
            if now > live_start
            else {}
        )
        if now <= base_end:
            status.notes.append(f"{vid[:12]}: baseline forming until {base_end.isoformat(timespec='seconds')}")
        out = []
        for key in sorted(set(base) | set(live)):
            b = base.get(key, ([], [], 0))
            lv = live.get(key, ([], [], 0))
            out.append(
                compare(
                    key[0],
                    key[1],
                    (b[0], b[1]),
                    (lv[0], lv[1]),
                    min_shift=cfg.decay.min_shift,
                    alpha=alpha,
                    min_samples=cfg.decay.min_samples,
                    errors=lv[2],
                )
            )
        return out

    def _versus(
        self, model: str, champion: str, canary: str, cfg: LLMEvalConfig, start: datetime, now: datetime, alpha: float
    ) -> list[DecayTest]:
        old = self._split(read(self.db, model, version_id=champion, since=start, until=now), cfg)
        new = self._split(read(self.db, model, version_id=canary, since=start, until=now), cfg)
        out = []
        for key in sorted(set(old) & set(new)):
            o, n = old[key], new[key]
            out.append(
                compare(
                    key[0],
                    key[1],
                    (o[0], o[1]),
                    (n[0], n[1]),
                    min_shift=cfg.decay.min_shift,
                    alpha=alpha,
                    min_samples=cfg.decay.min_samples,
                    errors=n[2],
                )
            )
        return out

    def _rates(self, model: str, vid: str, cfg: LLMEvalConfig, start: datetime, now: datetime) -> dict[str, Any]:
        """Every metric's rate over the epoch's traffic (weighted by inclusion) with its interval; where a judge
        scored a share of what a cheap grader scored, also the prediction-powered estimate of the judge's mean."""
        rows = read(self.db, model, version_id=vid, since=start, until=now)
        by: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by.setdefault((r["metric"], r["grader_id"]), []).append(r)
        out: dict[str, Any] = {}
        for (metric, gid), rs in sorted(by.items()):
            ok = [r for r in rs if r["value"] is not None]
            rate: Rate = weighted_rate(
                [r["value"] for r in ok], [r["inclusion"] for r in ok], errors=sum(1 for r in rs if r["error"])
            )
            out[f"{metric}@{gid[:12]}"] = rate.to_json()
        if cfg.judge is not None:
            out.update(self._ppi(rows, cfg))
        return out

    def _ppi(self, rows: list[dict[str, Any]], cfg: LLMEvalConfig) -> dict[str, Any]:
        try:
            judge = self.graders.get(cfg.judge or "")
        except TetherError:
            return {}
        judged = {r["trace_id"]: r["value"] for r in rows if r["grader_id"] == judge.id and r["value"] is not None}
        out = {}
        for metric, gid in {(r["metric"], r["grader_id"]) for r in rows if r["grader_id"] != judge.id}:
            if metric not in ("relevance", "grounding", "judged_good") and not metric.startswith("judged"):
                continue
            cheap = {
                r["trace_id"]: r["value"]
                for r in rows
                if r["grader_id"] == gid and r["metric"] == metric and r["value"] is not None
            }
            both = [t for t in judged if t in cheap]
            if len(both) < 10:
                continue
            r = ppi_mean(list(cheap.values()), [cheap[t] for t in both], [judged[t] for t in both])
            out[f"judge (PPI with {metric}@{gid[:12]})"] = r.to_json()
        return out

    def _first_score(self, model: str, vid: str) -> datetime | None:
        rows = read(self.db, model, version_id=vid, limit=1)
        return rows[0]["at"] if rows else None

    # -- prompt drift ---------------------------------------------------------------------------------------
    def _prompts(self, model: str, cfg: LLMEvalConfig, champion: str, now: datetime) -> dict[str, Any]:
        return prompt_drift.window(self.registry, self.embedder, model, cfg, champion, now)

    # -- judge governance -----------------------------------------------------------------------------------
    def anchors(self, model: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Re-score the anchor set where due and compare each grader with its reference run
        (``tether.monitor.judge_drift``)."""
        return self.judges.check(model, self.config(model), now or self.clock.now())

    def _name_of(self, grader_id: str) -> str:
        return self.judges.name_of(grader_id)

    def _reference_run(self, model: str, name: str, runs: list[tuple[str, str, datetime]]) -> str:
        return self.judges.reference_run(model, name, runs)

    # -- anomalies ------------------------------------------------------------------------------------------
    def check(self, model: str, *, now: datetime | None = None) -> list[Anomaly]:
        """Evaluate and record each new alarm as an anomaly (one open anomaly per version, feature, segment and
        test); prompt drift runs every ``prompt_drift.check_seconds``, the anchor check as configured."""
        cfg = self.config(model)
        if not cfg.enabled:
            return []
        now = now or self.clock.now()
        last = self._last_prompt_check.get(model)
        prompts = last is None or now.timestamp() - last >= cfg.prompt_drift.check_seconds
        if prompts:
            self._last_prompt_check[model] = now.timestamp()
        status = self.evaluate(model, now=now, prompts=prompts)
        if status.champion is None:
            return []
        open_ = {(a.version_id, a.feature, a.segment, a.test) for a in self.watch.anomalies(model, open_only=True)}
        new: list[Anomaly] = []

        def record(version: str, feature: str, segment: str, test: str, **row: Any) -> None:
            key = (version, feature, segment, test)
            if key in open_:
                return
            open_.add(key)
            new.append(self._record(model, version, feature, segment, test, now, **row))

        for vid, tests in status.decay.items():
            for d in tests:
                if d.alarm:
                    record(
                        vid,
                        f"llm:{d.metric}",
                        f"grader={self._label(d.grader_id)}",
                        "decay",
                        **self._decay_row(model, vid, d, cfg, status),
                    )
        for d in status.canary_vs_champion:
            if d.alarm and status.canary:
                record(
                    status.canary,
                    f"llm:{d.metric}",
                    f"vs champion, grader={self._label(d.grader_id)}",
                    "decay_vs_champion",
                    **self._decay_row(model, status.canary, d, cfg, status),
                )
        pd = status.prompt_drift
        for tenant, tp in (pd.get("tenants") or {}).items():
            if tp.get("decision") == "drifted":
                record(
                    status.champion,
                    "prompts",
                    f"tenant={tenant}",
                    "mmd",
                    statistic=tp["statistic"],
                    p_value=tp["p_value"],
                    effect=tp["statistic"],
                    min_shift=tp["min_shift"],
                    baseline_value=None,
                    live_value=None,
                    live_rows=tp["n_live"],
                    evidence=tp,
                )
        if pd.get("decision") == "drifted":
            record(
                status.champion,
                "prompts",
                "all",
                "mmd",
                statistic=pd["statistic"],
                p_value=pd["p_value"],
                effect=pd["statistic"],
                min_shift=pd["min_shift"],
                baseline_value=None,
                live_value=None,
                live_rows=pd["n_live"],
                evidence=pd,
            )
        for j in self.anchors(model, now=now):
            if j.get("decision") == "judge drift":
                record(
                    status.champion,
                    f"judge:{j['grader_name']}:{j['metric']}",
                    f"anchor={j['anchor']}",
                    "anchor_paired",
                    statistic=j["mean_difference"],
                    p_value=j["p_value"],
                    effect=abs(j["mean_difference"]),
                    min_shift=j["min_shift"],
                    baseline_value=None,
                    live_value=None,
                    live_rows=j["pairs"],
                    evidence=j,
                )
        return new

    def _label(self, grader_id: str) -> str:
        try:
            return self.graders.get(grader_id).ref
        except TetherError:
            return grader_id[:12]

    def _decay_row(self, model: str, vid: str, d: DecayTest, cfg: LLMEvalConfig, status: LLMStatus) -> dict[str, Any]:
        """The anomaly's numbers and its evidence sample: the window's interactions with the worst scores."""
        rows = read(
            self.db,
            model,
            version_id=vid,
            metric=d.metric,
            grader_id=d.grader_id,
            since=status.epoch[0],
            until=status.at,
        )
        worst = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["value"])[:EVIDENCE_ROWS]
        evidence = {
            **d.to_json(),
            "epoch": [status.epoch[0].isoformat(), status.epoch[1].isoformat()],
            "sample": [{"trace_id": r["trace_id"], "value": r["value"], "detail": r["detail"]} for r in worst],
        }
        return {
            "statistic": d.difference or 0.0,
            "p_value": None,
            "effect": abs(d.difference or 0.0),
            "min_shift": d.min_shift,
            "baseline_value": d.baseline_mean,
            "live_value": d.live_mean,
            "live_rows": d.live_n,
            "evidence": evidence,
        }

    def _record(
        self, model: str, version: str, feature: str, segment: str, test: str, now: datetime, **row: Any
    ) -> Anomaly:
        effect, min_shift = float(row["effect"]), float(row["min_shift"])
        values = {
            "model_name": model,
            "version_id": version,
            "feature": feature[:300],
            "segment": segment[:300],
            "test": test,
            "statistic": float(row["statistic"]),
            "p_value": row["p_value"],
            "effect": effect,
            "min_shift": min_shift,
            "baseline_value": row["baseline_value"],
            "live_value": row["live_value"],
            "live_rows": int(row["live_rows"]),
            "priority": "high" if effect >= 2 * min_shift else "medium",
            "detected_at": now,
            "evidence": json_safe(row["evidence"]),
        }
        with self.db.begin() as conn:
            if self.watch.fence is not None:
                self.watch.fence(conn)
            aid = conn.execute(insert(anomalies).values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Watch._anomaly({**values, "id": aid}, None)
