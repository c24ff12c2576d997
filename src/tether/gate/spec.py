"""The gate spec: what a candidate must prove, per model name. YAML on disk, the same objects in Python.

Example (``examples/fraud/gate.yaml``)::

    model: fraud
    task: binary
    label: is_fraud
    gold: [data/gold.parquet]     # data snapshots: a path (snapshotted when the gate runs) or a digest prefix
    threshold: 0.1                # decisions: score >= threshold (else the model's 'prediction' column)
    metrics:
      - {name: auc, margin: 0.005, floor: 0.75}
      - {name: false_positive_rate, margin: 0.002, ceiling: 0.05}
    slices:
      - {column: country, min_rows: 300, metrics: [{name: false_positive_rate, margin: 0.01}]}
    fairness:
      - {attribute: gender, metric: demographic_parity_difference, max: 0.05, margin: 0.01}
    edge_cases:
      directional:
        - {name: more money is not less suspicious, field: amount, change: {multiply: 3}, output: probability}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_serializer, model_validator

from tether.core.errors import InvalidInputError, validation_problems
from tether.core.hashing import digest_json
from tether.core.types import Digest
from tether.gate.metrics import BY_TASK, Metric


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    name: str
    #: How much worse than the champion the candidate may be (in the metric's units).
    margin: float = Field(default=0.0, ge=0)
    #: Absolute bound for higher-is-better metrics: the candidate must be shown to be at least this.
    floor: float | None = None
    #: Absolute bound for lower-is-better metrics: the candidate must be shown to be at most this.
    ceiling: float | None = None
    params: dict[str, float] = Field(default_factory=dict)


class SliceSpec(_Strict):
    name: str | None = None
    column: str | None = None
    expr: str | None = None
    min_rows: int = Field(default=100, ge=1)
    #: Slices below min_rows are reported and skipped instead of making the verdict INCONCLUSIVE.
    skip_small: bool = False
    metrics: list[MetricSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_selector(self) -> SliceSpec:
        if (self.column is None) == (self.expr is None):
            raise ValueError("a slice needs exactly one of 'column' or 'expr'")
        return self

    @property
    def label(self) -> str:
        return self.name or self.column or str(self.expr)


class FairnessSpec(_Strict):
    attribute: str
    metric: Literal["demographic_parity_difference", "equalized_odds_difference"]
    #: Absolute limit on the candidate's difference.
    max: float | None = Field(default=None, ge=0)
    #: The candidate's difference may exceed the champion's by at most this.
    margin: float | None = Field(default=None, ge=0)
    min_group_rows: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _some_bound(self) -> FairnessSpec:
        if self.max is None and self.margin is None:
            raise ValueError("a fairness bound needs 'max', 'margin' or both")
        return self


class ExactCase(_Strict):
    name: str
    input: dict[str, Any]
    #: Output column -> exact value, or {"min": a, "max": b}.
    expect: dict[str, Any] = Field(min_length=1)


class InvarianceCase(_Strict):
    name: str
    field: str
    values: list[Any] = Field(min_length=2)
    output: str
    rows: int = Field(default=200, ge=1)
    tolerance: float = Field(default=1e-9, ge=0)


class DirectionalCase(_Strict):
    name: str
    field: str
    change: dict[Literal["multiply", "add"], float] = Field(min_length=1, max_length=1)
    output: str
    direction: Literal["not_decreasing", "not_increasing"] = "not_decreasing"
    rows: int = Field(default=200, ge=1)
    tolerance: float = Field(default=1e-9, ge=0)


class EdgeCases(_Strict):
    exact: list[ExactCase] = Field(default_factory=list)
    invariance: list[InvarianceCase] = Field(default_factory=list)
    directional: list[DirectionalCase] = Field(default_factory=list)


class BootstrapSpec(_Strict):
    resamples: int = Field(default=1000, ge=100, le=100_000)
    seed: int = 0


class LLMGate(_Strict):
    """``task: llm``: the graders that score both versions' answers (see ``tether.gate.llm_gate``)."""

    graders: list[str] = Field(default_factory=lambda: ["tether-checks", "tether-minilm"], min_length=1)
    #: An answer "cites the context" when its grounding score is at least this.
    cite_min: float = Field(default=0.5, gt=0, le=1)


#: Metrics of ``task: llm`` specs: the deterministic checks and the embedded grader's scores (a head's or a
#: judge's metric is named by its grader's settings and accepted when that grader is listed).
LLM_METRICS = (
    "schema_valid",
    "tool_calls_valid",
    "refused",
    "length_ok",
    "complete",
    "relevance",
    "grounding",
    "non_repetition",
)


class GateSpec(_Strict):
    model: str
    task: Literal["binary", "multiclass", "regression", "llm"]
    #: The label column (tabular tasks; an LLM gate's golden sets have none).
    label: str = ""
    gold: list[str] = Field(min_length=1)
    score: str = "probability"
    prediction: str = "prediction"
    threshold: float | None = None
    #: Family-wise rate of false regression claims (Holm), and the level of each non-inferiority test.
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    min_rows: int = Field(default=100, ge=1)
    #: Binary tasks: the fewest rows of each class (and, for a rate, of its denominator) a scope needs before
    #: any of its tests counts as evidence; overall and in every slice.
    min_class_rows: int = Field(default=10, ge=1)
    mcnemar: bool = True
    metrics: list[MetricSpec] = Field(min_length=1)
    slices: list[SliceSpec] = Field(default_factory=list)
    fairness: list[FairnessSpec] = Field(default_factory=list)
    edge_cases: EdgeCases = Field(default_factory=EdgeCases)
    llm: LLMGate | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        out = handler(self)
        if isinstance(out, dict) and out.get("llm") is None:
            out.pop("llm", None)  # tabular specs keep the digests they had before LLM gates existed
        return out

    @model_validator(mode="after")
    def _known_metrics(self) -> GateSpec:
        if self.task == "llm":
            for m in self.metrics:
                if m.name not in LLM_METRICS and not m.name.startswith(("rule:", "judge", "judged")):
                    raise ValueError(f"unknown LLM metric {m.name!r}; known: {', '.join(LLM_METRICS)}")
            if self.slices or self.fairness:
                raise ValueError("an LLM gate has no slices or fairness bounds; use edge cases (expect)")
            if self.llm is None:
                object.__setattr__(self, "llm", LLMGate())
            return self
        if not self.label:
            raise ValueError(f"a {self.task} spec needs 'label': the gold sets' label column")
        known = BY_TASK[self.task]
        for where, m in [("metrics", m) for m in self.metrics] + [
            (f"slice {s.label}", m) for s in self.slices for m in s.metrics
        ]:
            if m.name not in known:
                raise ValueError(
                    f"unknown metric {m.name!r} in {where} for a {self.task} task; known: {', '.join(known)}"
                )
            metric = known[m.name]
            if m.floor is not None and not metric.higher_is_better:
                raise ValueError(f"{m.name} is lower-is-better: give it a 'ceiling', not a 'floor'")
            if m.ceiling is not None and metric.higher_is_better:
                raise ValueError(f"{m.name} is higher-is-better: give it a 'floor', not a 'ceiling'")
            if metric.kind == "at_recall" and not 0 < m.params.get("recall", 0) <= 1:
                raise ValueError(f"{m.name} needs params.recall in (0, 1]")
        if self.fairness and self.task != "binary":
            raise ValueError("fairness bounds are defined for binary tasks")
        return self

    #: Folder that relative gold paths are read from (the spec file's folder); not part of the digest.
    _base: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base(self) -> Path:
        return self._base

    def metric(self, name: str) -> Metric:
        return BY_TASK[self.task][name]

    @property
    def digest(self) -> Digest:
        return digest_json(self.model_dump(mode="json"))


def load_spec(source: str | Path | dict[str, Any]) -> GateSpec:
    """A spec from a YAML/JSON file or a mapping; errors name the field and what is wrong."""
    if isinstance(source, dict):
        data: Any = source
        where = "gate spec"
    else:
        path = Path(source)
        where = str(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"gate spec not found: {path}", hint="pass --spec with a YAML file") from None
        except yaml.YAMLError as e:
            raise InvalidInputError(f"gate spec {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where} must be a mapping")
    try:
        spec = GateSpec.model_validate(data)
    except ValidationError as e:
        problems = validation_problems(e, top="spec")
        raise InvalidInputError(f"invalid {where}: {problems}", hint="see docs/gate.md for the spec format") from None
    if not isinstance(source, dict):
        spec._base = Path(source).absolute().parent
    return spec
