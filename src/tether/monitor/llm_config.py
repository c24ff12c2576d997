"""What the LLM evaluation loop of one model grades, how much it may spend, and what it watches.

It is the ``llm`` section of the model's monitor settings (``tether monitor set NAME --config monitor.yaml``):

    llm:
      graders: [tether-minilm]          # grader refs run on sampled interactions (the checks run on all of them)
      judge: gpt-judge                  # an LLM judge for a share of the sampled ones (optional)
      sampling: {rate: 0.05, canary_factor: 5, semantic_hit_factor: 5}
      budget: {judge_tokens_per_day: 200000, grader_seconds_per_day: 3600, judge_share: 0.1}
      decay: {metrics: [schema_valid, refused, relevance], min_shift: 0.02, min_samples: 50}
      prompt_drift: {baseline_prompts: null, window_seconds: 3600, min_prompts: 100, min_shift: 0.01}
      anchors: support-anchors          # an anchor set re-scored when a grader version changes, and daily
      actions: {rollout: hold, alias_rollback: false, quarantine_cache: true}

Every field is checked strictly: a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.core.durations import MAX_SECONDS
from tether.graders.registry import DEFAULT_CHECKS, DEFAULT_EMBEDDED

__all__ = ["DEFAULT_CHECKS", "DEFAULT_EMBEDDED", "LLMEvalConfig", "check_graders"]


Stratum = Literal["version", "arm", "tenant", "route", "cache"]
DEFAULT_STRATA: tuple[Stratum, ...] = ("version", "arm", "cache")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampling(_Strict):
    #: The chance that a champion's interaction, not served from a cache, is sampled for grading.
    rate: float = Field(default=0.05, gt=0, le=1)
    #: Oversampling of canary versions during a rollout (their evidence is scarce and decides).
    canary_factor: float = Field(default=5.0, ge=1, le=1000)
    #: Oversampling of semantic-cache hits (a served neighbour's answer may not fit the new prompt).
    semantic_hit_factor: float = Field(default=5.0, ge=1, le=1000)
    #: Exact-cache hits repeat an answer already graded when it was first given: sampled less.
    exact_hit_factor: float = Field(default=0.2, gt=0, le=1)
    #: What splits the traffic into strata (each gets its own rate and its own counts).
    strata: list[Stratum] = Field(default_factory=lambda: list(DEFAULT_STRATA))


class Budget(_Strict):
    #: Judge tokens (prompt and completion) a model's loop may spend per UTC day.
    judge_tokens_per_day: int = Field(default=200_000, ge=0)
    #: Seconds of grader compute (embedded grader and head) per UTC day.
    grader_seconds_per_day: float = Field(default=3600.0, ge=0, le=86400)
    #: The share of sampled interactions also sent to the judge (when one is configured).
    judge_share: float = Field(default=0.1, ge=0, le=1)


class Decay(_Strict):
    #: The metrics whose rates are watched against the version's own baseline (and canary against champion).
    metrics: list[str] = Field(
        default_factory=lambda: ["schema_valid", "tool_calls_valid", "refused", "complete", "relevance"]
    )
    #: The smallest change of a rate (or mean score) that matters: smaller ones never alarm.
    min_shift: float = Field(default=0.02, gt=0, le=1)
    #: Scores a metric needs in the baseline and in the live window before it is tested.
    min_samples: int = Field(default=50, ge=10)
    #: The baseline: the version's first ``baseline_seconds`` of graded traffic.
    baseline_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    #: The live window compared with it.
    window_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)


class PromptDrift(_Strict):
    #: A registered prompt set (a data snapshot digest of prompts) as the baseline; else the version's first
    #: ``baseline_seconds`` of live prompts (pin one with ``tether llm drift pin``).
    baseline_prompts: str | None = None
    baseline_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    window_seconds: float = Field(default=3600.0, gt=0, le=MAX_SECONDS)
    #: Prompts needed in the baseline and in the window before the test runs.
    min_prompts: int = Field(default=100, ge=20)
    #: The smallest squared MMD (Gaussian kernel on MiniLM embeddings) that matters.
    min_shift: float = Field(default=0.01, gt=0)
    #: Also test each tenant's prompts on their own (tenants with ``min_prompts`` in the window).
    per_tenant: bool = False
    #: How often the test runs (its level is the budget shared over the checks of 30 days).
    check_seconds: float = Field(default=300.0, gt=0, le=MAX_SECONDS)
    #: Prompts shown as examples of what moved.
    examples: int = Field(default=5, ge=1, le=50)


class LLMActions(_Strict):
    #: A rollout running when a confirmed alarm appears: hold it, roll it back, or leave it.
    rollout: Literal["hold", "rollback", "none"] = "hold"
    #: Roll ``champion`` back to the version it replaced (an alarm on the champion, no rollout running).
    alias_rollback: bool = False
    #: Stop serving, and invalidate on the audit trail, the cache entries the alarmed version wrote.
    quarantine_cache: bool = True


class LLMEvalConfig(_Strict):
    enabled: bool = True
    #: Grader refs (a name is its newest version) run on sampled interactions. The deterministic checks always
    #: run on every interaction as ``tether-checks``, whatever this says.
    graders: list[str] = Field(default_factory=lambda: [DEFAULT_EMBEDDED])
    judge: str | None = None
    #: Sampled interactions waiting for a grader; when full, new samples are shed (and counted).
    queue_size: int = Field(default=1000, ge=10, le=100_000)
    check_seconds: float = Field(default=10.0, gt=0, le=MAX_SECONDS)
    #: The false-alarm budget: expected false alarms per watched metric (and prompt stream) in 30 days.
    false_alarms_per_metric_per_30_days: float = Field(default=1.0, gt=0, le=1000)
    sampling: Sampling = Sampling()
    budget: Budget = Budget()
    decay: Decay = Decay()
    prompt_drift: PromptDrift = PromptDrift()
    #: An anchor set (``tether llm anchors add``) re-scored when a grader version changes and on a schedule.
    anchors: str | None = None
    anchor_every_seconds: float = Field(default=86_400.0, gt=0, le=MAX_SECONDS)
    actions: LLMActions = LLMActions()


def check_graders(registry: Any, llm: LLMEvalConfig) -> None:
    """Every grader the LLM settings name exists (the built-in ones are registered on first use)."""
    from tether.core.errors import InvalidInputError, NotFoundError
    from tether.graders.registry import Graders

    graders = Graders(registry.store)
    named = [(f"llm.graders[{i}]", ref) for i, ref in enumerate(llm.graders)]
    named += [("llm.judge", llm.judge)] if llm.judge else []
    for where, ref in named:
        if ref in (DEFAULT_CHECKS, DEFAULT_EMBEDDED):
            continue
        try:
            gv = graders.get(ref)
        except NotFoundError:
            raise InvalidInputError(
                f"{where}: no grader {ref!r}", hint="register it first: tether llm graders register SPEC"
            ) from None
        if where == "llm.judge" and gv.kind != "judge":
            raise InvalidInputError(f"llm.judge: {gv.ref} is a {gv.kind} grader, not a judge")
        if where != "llm.judge" and gv.kind == "judge":
            raise InvalidInputError(f"{where}: {gv.ref} is a judge; name it as llm.judge (it grades a share only)")
