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
from tether.monitor.assessment import json_safe
from tether.monitor.decay import DecayTest, compare, epoch_alpha
from tether.monitor.llm_config import LLMEvalConfig
from tether.monitor.rates import Sums, ppi_mean, rate_of
from tether.monitor.score_sums import epoch_sums
from tether.monitor.watch import Anomaly, Watch
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
        versions = [v for v in (champion, canary) if v]
        # Each version's epoch, summed in the database once per check (see tether.monitor.score_sums).
        epoch = {vid: epoch_sums(self.db, model, vid, start, now) for vid in versions}
        watched = {key for sums in epoch.values() for key in sums if self._is_watched(key[0], cfg)}
        alpha = epoch_alpha(cfg.false_alarms_per_metric_per_30_days, w, max(1, len(watched)))
        for vid in versions:
            status.decay[vid] = self._decay(model, vid, cfg, start, now, alpha, status, epoch[vid])
            status.rates[vid] = self._rates(model, vid, cfg, start, now, epoch[vid])
        if canary:
            status.canary_vs_champion = self._versus(epoch[champion], epoch[canary], cfg, alpha)
        if prompts:
            status.prompt_drift = self._prompts(model, cfg, champion, now)
        return status

    def _arms(self, model: str) -> tuple[str | None, str | None]:
        with self.db.connect() as conn:
            q = select(routing).where(routing.c.model_name == model, routing.c.retired.is_(False))
            row = conn.execute(q).mappings().first()
        return (None, None) if row is None else (row["champion_id"], row["canary_id"])

    @staticmethod
    def _is_watched(metric: str, cfg: LLMEvalConfig) -> bool:
        return metric in cfg.decay.metrics or metric.startswith("rule:")

    def _watched_only(self, sums: dict[tuple[str, str], Sums], cfg: LLMEvalConfig) -> dict[tuple[str, str], Sums]:
        return {key: v for key, v in sums.items() if self._is_watched(key[0], cfg)}

    def _decay(
        self,
        model: str,
        vid: str,
        cfg: LLMEvalConfig,
        start: datetime,
        now: datetime,
        alpha: float,
        status: LLMStatus,
        epoch: dict[tuple[str, str], Sums],
    ) -> list[DecayTest]:
        first = self._first_score(model, vid)
        if first is None:
            status.notes.append(f"{vid[:12]}: no graded traffic yet")
            return []
        base_end = first + timedelta(seconds=cfg.decay.baseline_seconds)
        live_start = max(start, base_end)
        base = self._watched_only(epoch_sums(self.db, model, vid, first, base_end), cfg)
        if now <= live_start:
            live = {}
        elif live_start == start:
            live = self._watched_only(epoch, cfg)
        else:
            live = self._watched_only(epoch_sums(self.db, model, vid, live_start, now), cfg)
        if now <= base_end:
            status.notes.append(f"{vid[:12]}: baseline forming until {base_end.isoformat(timespec='seconds')}")
        return self._compare(sorted(set(base) | set(live)), base, live, cfg, alpha)

    def _versus(
        self,
        champion: dict[tuple[str, str], Sums],
        canary: dict[tuple[str, str], Sums],
        cfg: LLMEvalConfig,
        alpha: float,
    ) -> list[DecayTest]:
        old, new = self._watched_only(champion, cfg), self._watched_only(canary, cfg)
        return self._compare(sorted(set(old) & set(new)), old, new, cfg, alpha)

    @staticmethod
    def _compare(
        keys: list[tuple[str, str]],
        before: dict[tuple[str, str], Sums],
        after: dict[tuple[str, str], Sums],
        cfg: LLMEvalConfig,
        alpha: float,
    ) -> list[DecayTest]:
        """One decay test per (metric, grader): ``after`` against ``before`` (absent: no scores)."""
        out = []
        for metric, grader_id in keys:
            b, a = before.get((metric, grader_id), Sums()), after.get((metric, grader_id), Sums())
            out.append(
                compare(
                    metric,
                    grader_id,
                    b,
                    a,
                    min_shift=cfg.decay.min_shift,
                    alpha=alpha,
                    min_samples=cfg.decay.min_samples,
                    errors=a.errors,
                )
            )
        return out

    def _rates(
        self,
        model: str,
        vid: str,
        cfg: LLMEvalConfig,
        start: datetime,
        now: datetime,
        epoch: dict[tuple[str, str], Sums],
    ) -> dict[str, Any]:
        """Every metric's rate over the epoch's traffic (weighted by inclusion) with its interval; where a judge
        scored a share of what a cheap grader scored, also the prediction-powered estimate of the judge's mean
        (the one estimate that needs the rows themselves, paired by interaction)."""
        out: dict[str, Any] = {
            f"{metric}@{gid[:12]}": rate_of(sums).to_json() for (metric, gid), sums in sorted(epoch.items())
        }
        if cfg.judge is not None:
            out.update(self._ppi(read(self.db, model, version_id=vid, since=start, until=now), cfg))
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
        open_: dict[tuple[str, str, str, str], Anomaly] = {}
        for a in self.watch.anomalies(model, open_only=True):
            key = (a.version_id, a.feature, a.segment, a.test)
            if key not in open_ or a.priority == "high":
                open_[key] = a
        new: list[Anomaly] = []

        def record(version: str, feature: str, segment: str, test: str, **row: Any) -> None:
            """Once per open (version, feature, segment, test); a medium one grown to high is escalated."""
            key = (version, feature, segment, test)
            was = open_.get(key)
            if was is not None and (was.priority == "high" or _priority(row) != "high"):
                return
            if was is not None:
                row["evidence"] = {**row["evidence"], "escalates": was.id}
            open_[key] = self._record(model, version, feature, segment, test, now, **row)
            new.append(open_[key])

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
            "priority": _priority(row),
            "detected_at": now,
            "evidence": json_safe(row["evidence"]),
        }
        with self.db.begin() as conn:
            if self.watch.fence is not None:
                self.watch.fence(conn)
            aid = conn.execute(insert(anomalies).values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Watch._anomaly({**values, "id": aid}, None)


def _priority(row: dict[str, Any]) -> str:
    """High when the effect is at least twice the smallest change that matters (as the drift watch's default)."""
    return "high" if float(row["effect"]) >= 2 * float(row["min_shift"]) else "medium"
