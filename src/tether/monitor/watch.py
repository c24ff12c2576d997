"""The drift watch: live window against baseline, every feature, with a false-alarm budget.

Each check merges the live profile slices of the last ``window_seconds`` per model version (and segment),
and tests every watched feature against the version's baseline:

* numeric: missing ratio (two-proportion z), mean (Welch z; effect in baseline standard deviations) and the
  whole distribution (KS from the two KLL sketches net of their rank error); PSI is reported alongside;
* categorical: missing ratio and the category frequencies (chi-square with the baseline as a sample; effect:
  total variation distance; categories never seen in training are listed).

All p-values of a check (features x tests x segments) go through Holm's step-down procedure at the family
level `MonitorConfig.family_alpha`, sized so that the expected number of checks with a false alarm over 30
days of checks is at most one per watched feature (the default budget). Repeated checks on overlapping
windows are covered because the budget is spent per check (a union bound over time needs no independence).
A test alarms only when Holm rejects it *and* its effect is at least the feature's minimum shift, so heavy
traffic never alarms on trivia. An alarm becomes an anomaly row (insert-only) unless the same (version,
feature, segment, test) already has an open one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select

from tether.core import InvalidInputError, NotFoundError
from tether.core.clock import Clock, SystemClock
from tether.monitor import baseline as baseline_mod
from tether.monitor.anomaly import Anomaly as Anomaly  # re-exported: callers import it from here
from tether.monitor.assessment import FeatureStatus, Pair, Test, assess, finite, json_safe, spark_lines
from tether.monitor.config import SECONDS_PER_30_DAYS, MonitorConfig, read_config
from tether.monitor.detectors import (
    Finding,
    SliceCusum,
)
from tether.monitor.history import CheckHistory
from tether.monitor.llm_config import check_graders
from tether.monitor.profile import DatasetProfile, NumericProfile
from tether.registry import Registry
from tether.store.tables import anomalies, anomaly_resolutions, live_profiles, monitor_configs


@dataclass
class VersionStatus:
    model: str
    version_id: str
    baseline: str
    window_start: datetime
    window_end: datetime
    live_rows: int
    features: list[FeatureStatus]
    issues: dict[str, int]
    family_alpha: float
    hypotheses: int
    note: str = ""
    #: The whole-population profile of each slice in the window, and the baseline (for the sequential test).
    slices: dict[datetime, DatasetProfile] = field(default_factory=dict, repr=False)
    base: DatasetProfile | None = field(default=None, repr=False)


class Watch:
    def __init__(self, registry: Registry, *, clock: Clock | None = None) -> None:
        self.registry = registry
        self.clock = clock or SystemClock()
        self.db = registry.store.db
        self._baselines: dict[tuple[str, str], baseline_mod.Baseline] = {}
        #: Sequential state lives in the checking process: per (version, feature) CUSUM, per version the last slice.
        self._cusums: dict[tuple[str, str], SliceCusum] = {}
        self._cursor: dict[str, datetime] = {}
        #: Each check's effects against their alarm lines, for the dashboard (in memory, bounded).
        self.history = CheckHistory()
        #: Called in the transaction of every anomaly it records (the leader lease's fence, when scaled out):
        #: a deposed leader's watch records nothing.
        self.fence: Callable[[Connection], None] | None = None
        self._profile_cursor: int | None = None

    # -- configuration -------------------------------------------------------------------------------------
    def config(self, model: str) -> MonitorConfig:
        return read_config(self.registry, model)

    def set_config(self, model: str, config: MonitorConfig, *, actor: str | None = None) -> MonitorConfig:
        if not self.registry.versions(model):
            raise NotFoundError(f"no model named {model!r}", hint="see 'tether versions'")
        if config.actions.shadow is not None:
            shadow = self.registry.get(config.actions.shadow.version)
            if shadow.name != model:
                raise InvalidInputError(f"the diagnostic version {shadow.ref} belongs to {shadow.name}, not {model}")
        check_graders(self.registry, config.llm)
        row = {
            "config": config.model_dump(mode="json"),
            "updated_at": self.clock.now(),
            "updated_by": actor or self.registry.settings.actor,
        }
        with self.db.begin() as conn:
            exists = conn.execute(
                select(monitor_configs.c.model_name).where(monitor_configs.c.model_name == model)
            ).first()
            if exists:
                conn.execute(monitor_configs.update().where(monitor_configs.c.model_name == model).values(**row))
            else:
                conn.execute(insert(monitor_configs).values(model_name=model, **row))
        return config

    # -- live windows ----------------------------------------------------------------------------------------
    def _slices(self, model: str, since: datetime, until: datetime) -> list[Any]:
        with self.db.connect() as conn:
            return list(
                conn.execute(
                    select(live_profiles)
                    .where(
                        live_profiles.c.model_name == model,
                        live_profiles.c.slice_start >= since,
                        live_profiles.c.slice_start < until,
                    )
                    .order_by(live_profiles.c.slice_start)
                ).mappings()
            )

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(
        self, model: str, *, now: datetime | None = None, config: MonitorConfig | None = None
    ) -> list[VersionStatus]:
        """Test every version of ``model`` that saw traffic in the window (no records are written)."""
        config = config or self.config(model)
        now = now or self.clock.now()
        since = now - timedelta(seconds=config.window_seconds)
        by_version: dict[str, list[Any]] = {}
        for row in self._slices(model, since, now):
            by_version.setdefault(row["version_id"], []).append(row)
        return [self._evaluate_version(model, vid, rows, config, since, now) for vid, rows in by_version.items()]

    def _evaluate_version(
        self, model: str, version_id: str, rows: list[Any], config: MonitorConfig, since: datetime, now: datetime
    ) -> VersionStatus:
        merged: dict[str, DatasetProfile] = {}
        per_slice: dict[datetime, DatasetProfile] = {}
        live_rows: Counter[str] = Counter()
        issues: Counter[str] = Counter()
        for row in rows:
            prof = DatasetProfile.from_json(row["profile"])
            seg = row["segment"]
            live_rows[seg] += int(row["rows"])
            if seg == "":
                issues.update(row["issues"])
                start = row["slice_start"]
                per_slice[start] = (
                    per_slice[start].merge(prof) if start in per_slice else DatasetProfile.from_json(row["profile"])
                )
            merged[seg] = merged[seg].merge(prof) if seg in merged else prof
        try:
            base = self._baselines.get((version_id, config.baseline)) or baseline_mod.ensure(
                self.registry, version_id, config.baseline
            )
            self._baselines[(version_id, config.baseline)] = base
        except NotFoundError as e:
            return VersionStatus(
                model, version_id, config.baseline, since, now, live_rows[""], [], dict(issues), 0.0, 0, note=str(e)
            )
        segments = ["", *sorted(s for s in merged if s and s.split("=", 1)[0] in config.segments)]
        sparks = spark_lines(per_slice)
        pairs: list[Pair] = []
        for seg in segments:
            ref = base.profile if seg == "" else base.segment(*seg.split("=", 1))
            live = merged.get(seg)
            if ref is not None and live is not None:
                pairs.append((seg, ref, live, sparks if seg == "" else {}))
        statuses, alpha, tests = assess(pairs, config)
        return VersionStatus(
            model,
            version_id,
            config.baseline,
            since,
            now,
            live_rows[""],
            statuses,
            dict(issues),
            alpha,
            tests,
            slices=per_slice,
            base=base.profile,
        )

    # -- anomalies -----------------------------------------------------------------------------------------
    def profiled_since(self) -> set[str]:
        """The models with live profile slices written since the last call (the first call: since now)."""
        with self.db.connect() as conn:
            if self._profile_cursor is None:
                top = conn.execute(select(func.max(live_profiles.c.id))).scalar()
                self._profile_cursor = int(top or 0)
                since = self.clock.now() - timedelta(minutes=10)
                q = select(live_profiles.c.model_name).where(live_profiles.c.slice_start >= since).distinct()
                return {r[0] for r in conn.execute(q)}
            q = (
                select(live_profiles.c.model_name, func.max(live_profiles.c.id))
                .where(live_profiles.c.id > self._profile_cursor)
                .group_by(live_profiles.c.model_name)
            )
            rows = conn.execute(q).all()
        if rows:
            self._profile_cursor = max(int(r[1]) for r in rows)
        return {r[0] for r in rows}

    def check(self, model: str, *, now: datetime | None = None, config: MonitorConfig | None = None) -> list[Anomaly]:
        """Evaluate, and record each new alarm as an anomaly: one open anomaly per version/feature/segment/test,
        except that a medium-priority one whose effect has since grown to high priority is escalated (a new,
        high-priority anomaly naming it), so the actions that wait for high priority are not kept from acting
        by the first, milder sighting of the same shift."""
        config = config or self.config(model)
        if not config.enabled:
            return []
        now = now or self.clock.now()
        open_: dict[tuple[str, str, str, str], Anomaly] = {}
        for a in self.anomalies(model, open_only=True):
            key = (a.version_id, a.feature, a.segment, a.test)
            if key not in open_ or a.priority == "high":
                open_[key] = a
        new: list[Anomaly] = []
        versions = self.evaluate(model, now=now, config=config)
        self.history.record(model, now, versions)
        for vs in versions:
            alarms = [(fs, t) for fs in vs.features for t in fs.tests if t.alarm]
            for fs, t in alarms + self._sequential(vs, config):
                key = (vs.version_id, t.feature, t.segment, t.finding.test)
                was = open_.get(key)
                if was is not None and (was.priority == "high" or self._priority(t, config) != "high"):
                    continue
                open_[key] = self._record(model, vs, fs, t, config, now, escalates=was.id if was else None)
                new.append(open_[key])
        return new

    @staticmethod
    def _priority(t: Test, config: MonitorConfig) -> str:
        return "high" if t.finding.effect >= config.high_priority_factor * t.min_shift else "medium"

    def _sequential(self, vs: VersionStatus, config: MonitorConfig) -> list[tuple[FeatureStatus, Test]]:
        """Feed the slices this process has not seen yet to each numeric feature's CUSUM; return its alarms.

        Calibrated to the same budget as the window tests: an in-control run length of (rows per 30 days at
        the observed traffic) / budget rows, so at most ``budget`` false alarms per feature per 30 days.
        """
        if vs.base is None or not vs.slices:
            return []
        rate = vs.live_rows / config.window_seconds
        arl0 = max(1_000.0, rate * SECONDS_PER_30_DAYS / config.false_alarms_per_feature_per_30_days)
        cursor = self._cursor.get(vs.version_id)
        by_name = {fs.feature: fs for fs in vs.features if not fs.segment}
        out: list[tuple[FeatureStatus, Test]] = []
        for start in sorted(vs.slices):
            if cursor is not None and start <= cursor:
                continue
            for name, p in vs.slices[start].features.items():
                bp = vs.base.features.get(name)
                if not isinstance(p, NumericProfile) or not isinstance(bp, NumericProfile) or bp.count < 2:
                    continue
                sd = math.sqrt(bp.variance)
                if sd <= 0:
                    continue
                key = (vs.version_id, name)
                delta = config.min_shift_for(name).mean
                c = self._cusums.get(key)
                if c is None or c.delta != delta or not 0.5 <= c.arl0 / arl0 <= 2:
                    fresh = SliceCusum(bp.mean, sd, delta=delta, arl0=arl0)
                    if c is not None:  # re-calibrated to the traffic: the evidence so far carries over
                        fresh.s, fresh._run = c.s, c._run
                    c = self._cusums[key] = fresh
                if c.update(p.count, p.mean) and name in by_name:
                    shift = c.estimate()
                    finding = Finding("cusum_mean", c.statistic, math.nan, abs(shift), bp.mean, bp.mean + shift * sd)
                    t = Test(name, "", finding, delta, adjusted_p=math.nan, alarm=True)
                    by_name[name].sequential = {
                        "threshold": c.h,
                        "arl0_rows": c.arl0,
                        "expected_delay_rows": {f"{m:g} x minimum": c.expected_delay(m * delta) for m in (1.5, 2, 4)},
                    }
                    out.append((by_name[name], t))
                    c.reset()
            self._cursor[vs.version_id] = start
        return out

    def _record(
        self,
        model: str,
        vs: VersionStatus,
        fs: FeatureStatus,
        t: Test,
        config: MonitorConfig,
        now: datetime,
        escalates: int | None = None,
    ) -> Anomaly:
        f = t.finding
        priority = self._priority(t, config)
        base_v, live_v = f.baseline, f.live
        evidence = {
            "adjusted_p": t.adjusted_p,
            "family_alpha": vs.family_alpha,
            "hypotheses": vs.hypotheses,
            "window": [vs.window_start.isoformat(), vs.window_end.isoformat()],
            "baseline_source": vs.baseline,
            "baseline": fs.baseline,
            "live": fs.live,
            "psi": fs.psi,
            "new_categories": fs.new_categories,
            "issues": vs.issues,
            "sequential": fs.sequential if f.test == "cusum_mean" else None,
            "escalates": escalates,  # the open medium-priority anomaly of the same test this one supersedes
        }
        row = {
            "model_name": model,
            "version_id": vs.version_id,
            "feature": t.feature,
            "segment": t.segment,
            "test": f.test,
            "statistic": finite(f.statistic) or 0.0,
            "p_value": finite(f.p_value),
            "effect": finite(f.effect) or 0.0,
            "min_shift": t.min_shift,
            "baseline_value": finite(base_v),
            "live_value": finite(live_v),
            "live_rows": fs.live_rows,
            "priority": priority,
            "detected_at": now,
            "evidence": json_safe(evidence),
        }
        with self.db.begin() as conn:
            if self.fence is not None:
                self.fence(conn)
            aid = conn.execute(insert(anomalies).values(**row)).inserted_primary_key[0]  # type: ignore[index]
        return self._anomaly({**row, "id": aid}, None)

    def anomalies(
        self, model: str, *, open_only: bool = False, limit: int = 200, scope: str | None = None
    ) -> list[Anomaly]:
        """The newest anomalies; ``scope``: as a reader bound to that tenant sees them (not another tenant's
        prompt-drift stream: `tether.core.tenancy`)."""
        c = anomalies.c
        q = (
            select(anomalies, anomaly_resolutions.c.at.label("resolved_at"))
            .outerjoin(anomaly_resolutions, anomaly_resolutions.c.anomaly_id == c.id)
            .where(c.model_name == model)
            .order_by(c.id.desc())
            .limit(limit)
        )
        if scope is not None:
            q = q.where(or_(c.feature != "prompts", ~c.segment.startswith("tenant="), c.segment == f"tenant={scope}"))
        if open_only:
            q = q.where(anomaly_resolutions.c.anomaly_id.is_(None))
        with self.db.connect() as conn:
            return [self._anomaly(dict(r), r["resolved_at"]) for r in conn.execute(q).mappings()]

    def resolve(self, anomaly_id: int, *, reason: str, actor: str | None = None) -> Anomaly:
        with self.db.begin() as conn:
            row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"no anomaly {anomaly_id}", hint="see 'tether monitor anomalies NAME'")
            done = conn.execute(
                select(anomaly_resolutions.c.at).where(anomaly_resolutions.c.anomaly_id == anomaly_id)
            ).first()
            if done is None:
                conn.execute(
                    insert(anomaly_resolutions).values(
                        anomaly_id=anomaly_id,
                        at=self.clock.now(),
                        actor=actor or self.registry.settings.actor,
                        reason=reason,
                    )
                )
        return next(a for a in self.anomalies(row["model_name"], limit=10_000) if a.id == anomaly_id)

    @staticmethod
    def _anomaly(row: dict[str, Any], resolved_at: datetime | None) -> Anomaly:
        return Anomaly(
            id=int(row["id"]),
            model=row["model_name"],
            version_id=row["version_id"],
            feature=row["feature"],
            segment=row["segment"],
            test=row["test"],
            statistic=row["statistic"],
            p_value=row["p_value"],
            effect=row["effect"],
            min_shift=row["min_shift"],
            baseline_value=row["baseline_value"],
            live_value=row["live_value"],
            live_rows=int(row["live_rows"]),
            priority=row["priority"],
            detected_at=row["detected_at"],
            evidence=row["evidence"],
            resolved_at=resolved_at,
        )
