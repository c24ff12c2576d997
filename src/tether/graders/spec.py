"""A grader's spec: its name, its kind and the kind's settings, validated strictly (unknown fields refused).

    name: support-checks          kind: checks     config: {enabled: [schema_valid, refused], refusal_patterns: []}
    name: minilm                  kind: embedded   config: {metrics: [relevance, grounding, non_repetition]}
    name: helpful-head            kind: head       config: {metric: judged_good, c: 1.0}     (weights from `fit`)
    name: gpt-judge               kind: judge      config: {endpoint: http://h/v1, model: m, rubric: ..., schema:
                                                            {...}, score_field: score, scale: [1, 5], ...}

The spec is inside the grader version's id (``tether.graders.registry``): change the rubric, a pattern or the
endpoint's model and it is another grader version.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.core.errors import InvalidInputError, validation_problems
from tether.graders.checks import CHECKS
from tether.graders.embedded import METRICS as EMBEDDED_METRICS

KINDS = ("checks", "embedded", "head", "judge")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChecksConfig(_Strict):
    enabled: list[str] = Field(default_factory=lambda: list(CHECKS))
    refusal_patterns: list[str] = Field(default_factory=list)

    @field_validator("enabled")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CHECKS]
        if unknown:
            raise ValueError(f"unknown checks {unknown}; the checks are {list(CHECKS)}")
        return v

    @field_validator("refusal_patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"refusal_patterns[{i}] is not a regular expression: {e}") from None
        return v


class EmbeddedConfig(_Strict):
    metrics: list[str] = Field(default_factory=lambda: list(EMBEDDED_METRICS))

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in EMBEDDED_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; the embedded grader has {list(EMBEDDED_METRICS)}")
        return v


class HeadConfig(_Strict):
    metric: str = Field(default="judged_good", pattern=r"^[a-z][a-z0-9_]*$")
    c: float = Field(default=1.0, gt=0)


class JudgeConfig(_Strict):
    endpoint: str
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    rubric: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    score_field: str = "score"
    scale: tuple[float, float] = (1.0, 5.0)
    metric: str = Field(default="judge", pattern=r"^[a-z][a-z0-9_]*$")
    retries: int = Field(default=2, ge=0, le=5)
    repeats: int = Field(default=3, ge=1, le=9)
    near: float = Field(default=0.15, ge=0, le=1)
    threshold: float = Field(default=0.5, ge=0, le=1)
    repeat_temperature: float = Field(default=0.7, ge=0, le=2)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_tokens: int = Field(default=256, ge=1, le=8192)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL of an OpenAI-compatible API (ending in /v1)")
        return v

    @model_validator(mode="after")
    def _schema(self) -> JudgeConfig:
        lo, hi = self.scale
        if not hi > lo:
            raise ValueError(f"scale must be [low, high] with high > low, got {list(self.scale)}")
        if self.schema_ is not None:
            from jsonschema.exceptions import SchemaError

            from tether.graders.checks import check_schema

            try:
                check_schema(self.schema_)
            except SchemaError as e:
                raise ValueError(f"schema is not a JSON Schema: {e.message}") from None
            props = self.schema_.get("properties") or {}
            if self.schema_.get("type") != "object" or self.score_field not in props:
                raise ValueError(f"schema must be an object schema with the score field {self.score_field!r}")
        return self


CONFIGS: dict[str, type[_Strict]] = {
    "checks": ChecksConfig,
    "embedded": EmbeddedConfig,
    "head": HeadConfig,
    "judge": JudgeConfig,
}


class GraderSpec(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["checks", "embedded", "head", "judge"]
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _config(self) -> GraderSpec:
        try:
            CONFIGS[self.kind].model_validate(self.config)
        except ValidationError as e:  # named by field, as the outer spec's own errors are
            problems = validation_problems(e, prefix="config.")
            raise ValueError(f"{self.kind} grader: {problems}") from None
        return self

    def settings(self) -> dict[str, Any]:
        """The kind's settings with every default filled in: what the version id is computed over."""
        return CONFIGS[self.kind].model_validate(self.config).model_dump(mode="json", by_alias=True)

    @classmethod
    def parse(cls, value: Any, *, source: str = "the grader spec") -> GraderSpec:
        if isinstance(value, str | Path):
            path = Path(value)
            if not path.is_file():
                raise InvalidInputError(f"grader spec file not found: {path}", hint="pass a YAML file")
            try:
                value = yaml.safe_load(path.read_text())
            except yaml.YAMLError as e:
                raise InvalidInputError(f"{path} is not valid YAML: {e}") from None
            source = str(path)
        if not isinstance(value, dict):
            raise InvalidInputError(f"{source} must be a mapping with name, kind and config")
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            problems = validation_problems(e)
            raise InvalidInputError(
                f"{source} is invalid: {problems}", hint=f"kinds: {list(KINDS)}; see docs/llm-evals.md"
            ) from None
