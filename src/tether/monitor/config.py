"""What the drift watch of one model checks, how often, how sure it must be, and what it does on an alarm.

Stored per model (``tether monitor set NAME --config monitor.yaml``); a model without one is watched with the
defaults below. Every field is checked strictly: a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from tether.core.durations import MAX_SECONDS
from tether.monitor.llm_config import LLMEvalConfig
from tether.store.tables import monitor_configs

if TYPE_CHECKING:
    from tether.registry import Registry

SECONDS_PER_30_DAYS = 30 * 86_400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MinShift(_Strict):
    """The smallest change that matters, per statistic; smaller shifts never alarm, however much traffic."""

    #: Mean shift in baseline standard deviations.
    mean: float = Field(default=0.1, gt=0)
    #: Kolmogorov-Smirnov distance beyond the sketches' rank error.
    ks: float = Field(default=0.05, gt=0, le=1)
    #: Total variation distance between the category frequencies.
    categories: float = Field(default=0.05, gt=0, le=1)
    #: Absolute change of the missing ratio.
    missing: float = Field(default=0.02, gt=0, le=1)


class ShadowAction(_Strict):
    #: The diagnostic version that receives copies of the traffic (a ref: NAME/N, NAME@alias, an id).
    version: str = Field(min_length=1)
    percent: float = Field(default=100.0, gt=0, le=100)


class Actions(_Strict):
    #: POSTed a JSON description of every new anomaly (retried with backoff; never blocks serving).
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    #: Start shadow routing to a diagnostic instance (live users stay on the champion).
    shadow: ShadowAction | None = None
    #: A rollout running for the model when a high-priority anomaly appears: hold (pause) it, roll it back, or
    #: leave it. Drift is a guardrail: a canary's evidence on a population the gate never saw proves little.
    rollout: Literal["hold", "rollback", "none"] = "hold"
    #: Which anomalies act (webhooks always notify every anomaly).
    min_priority: Literal["high", "medium"] = "high"


class MonitorConfig(_Strict):
    enabled: bool = True
    #: The reference: the version's training data snapshot, or its gold set profile (tether monitor baseline).
    baseline: Literal["training", "gold"] = "training"
    #: Input features to watch (default: every input of the version's schema).
    features: list[str] | None = None
    #: Columns whose values split the traffic into segments, each watched on its own (capped at 20 values).
    segments: list[str] = Field(default_factory=list)
    #: Live profiles are kept in slices of this length and compared over the last ``window_seconds``.
    slice_seconds: float = Field(default=10, gt=0, le=3600)
    window_seconds: float = Field(default=300, gt=0, le=MAX_SECONDS)
    check_seconds: float = Field(default=10, gt=0, le=MAX_SECONDS)
    #: Live rows a feature needs in the window before it is tested.
    min_rows: int = Field(default=200, ge=10)
    #: The false-alarm budget: expected false alarms per watched feature in 30 days of checks.
    false_alarms_per_feature_per_30_days: float = Field(default=1.0, gt=0, le=1000)
    min_shift: MinShift = MinShift()
    #: Per-feature overrides of the minimum shifts.
    feature_min_shift: dict[str, MinShift] = Field(default_factory=dict)
    #: An anomaly whose effect is at least this many times its minimum shift is high priority.
    high_priority_factor: float = Field(default=2.0, ge=1)
    actions: Actions = Actions()
    #: The LLM evaluation loop (graders, sampling, decay, prompt drift): ``tether.monitor.llm_config``.
    llm: LLMEvalConfig = LLMEvalConfig()

    @model_validator(mode="after")
    def _window_holds_slices(self) -> MonitorConfig:
        if self.window_seconds < self.slice_seconds:
            raise ValueError(f"window_seconds ({self.window_seconds}) is shorter than slice_seconds")
        return self

    def min_shift_for(self, feature: str) -> MinShift:
        return self.feature_min_shift.get(feature, self.min_shift)

    def family_alpha(self, features: int) -> float:
        """The chance of any false alarm in one check over ``features`` features (Holm's family-wise level).

        Checks in 30 days: 30 d / check_seconds. With this level per check, the expected number of checks with a
        false alarm in 30 days is at most ``features x budget``: one per feature per 30 days by default.
        """
        checks = SECONDS_PER_30_DAYS / self.check_seconds
        return min(0.5, features * self.false_alarms_per_feature_per_30_days / checks)


def read_config(registry: Registry, model: str) -> MonitorConfig:
    """The model's stored monitor settings, or the defaults."""
    return read_configs(registry, [model])[model]


def read_configs(registry: Registry, models: list[str]) -> dict[str, MonitorConfig]:
    """The stored monitor settings of several models in one query, the defaults for those without."""
    with registry.store.db.connect() as conn:
        rows = dict(
            conn.execute(
                select(monitor_configs.c.model_name, monitor_configs.c.config).where(
                    monitor_configs.c.model_name.in_(models)
                )
            ).all()
        )
    return {m: MonitorConfig.model_validate(rows[m]) if m in rows else MonitorConfig() for m in models}
