"""What an LLM version is: a backend, a prompt template version and decoding parameters, plus how tether may
cache, trim and price its traffic.

The spec is part of the version's flavor config, so it is inside the version id: change the system prompt, a
tool, the temperature or a price and it is another version, registered, gated and rolled out like any other.

    backend:   {kind: local}                                  # the embedded engine on the registered weights
    backend:   {kind: openai, endpoints: [http://h:8000/v1], model: qwen2.5-7b}   # any OpenAI-compatible server
    prompt:    {version: support-v3, system: "...", tools: [...], response_format: {...}}
    decoding:  {temperature: 0, top_p: 1, max_tokens: 256, stop: []}
    cache:     {exact: true, semantic: true, semantic_threshold: 0.92, false_hit_budget: 0.01, ...}
    context:   {max_input_tokens: 2048, keep_last_turns: 4, block_tokens: 16}
    prices:    {input_per_1k: 0.0005, cached_input_per_1k: 0.00025, output_per_1k: 0.0015}
    guardrails: {rules: [{name: no-email, pattern: "[\\w.]+@[\\w.]+", must: not_match}], max_chars: 2000}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tether.core.durations import MAX_SECONDS
from tether.core.errors import InvalidInputError, validation_problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(_Strict):
    kind: Literal["local", "openai"] = "local"
    endpoints: list[str] = Field(default_factory=list)
    model: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # Prefix-affinity routing across replicas: a replica more than this many requests busier than the least
    # busy one is skipped (the load-imbalance fallback).
    affinity_slack: int = Field(default=4, ge=0)
    # The embedded engine's prefix KV cache (local only).
    kv_cache_mb: int = Field(default=256, ge=0)

    @model_validator(mode="after")
    def _endpoints(self) -> Backend:
        if self.kind == "openai":
            if not self.endpoints or not self.model:
                raise ValueError("an openai backend needs 'endpoints' (one or more base URLs) and 'model'")
            for url in self.endpoints:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"endpoint {url!r} is not an http(s) URL")
        elif self.endpoints:
            raise ValueError("a local backend serves the registered weights; 'endpoints' is for kind: openai")
        return self


class Prompt(_Strict):
    version: str = "1"
    system: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    response_format: dict[str, Any] | None = None


class Decoding(_Strict):
    temperature: float = Field(default=0.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class Cache(_Strict):
    exact: bool = True
    semantic: bool = True
    # Cosine similarity of MiniLM embeddings. Strict by default; the calibration only ever moves it up from
    # here unless `semantic_min_threshold` is set lower.
    semantic_threshold: float = Field(default=0.92, gt=0, le=1)
    semantic_min_threshold: float | None = Field(default=None, gt=0, le=1)
    semantic_multi_turn: bool = False
    # A cached answer is served for temperature > 0 only if the version says so.
    allow_sampled: bool = False
    false_hit_budget: float = Field(default=0.01, gt=0, lt=1)
    calibration_rate: float = Field(default=0.05, ge=0, le=1)
    ttl_s: float = Field(default=86400.0, gt=0, le=MAX_SECONDS)
    max_entries: int = Field(default=100_000, ge=1)


class Context(_Strict):
    max_input_tokens: int = Field(default=4096, ge=16)
    keep_last_turns: int = Field(default=4, ge=1)
    block_tokens: int = Field(default=16, ge=1, le=1024)


class Prices(_Strict):
    currency: str = "USD"
    input_per_1k: float = Field(default=0.0, ge=0)
    cached_input_per_1k: float | None = Field(default=None, ge=0)
    output_per_1k: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        cached_price = self.input_per_1k if self.cached_input_per_1k is None else self.cached_input_per_1k
        fresh = max(0, input_tokens - cached_tokens)
        return (fresh * self.input_per_1k + cached_tokens * cached_price + output_tokens * self.output_per_1k) / 1000


class Rule(_Strict):
    """A guard-rail on answers: ``pattern`` (a Python regular expression) must or must not match."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    pattern: str = Field(min_length=1)
    must: Literal["match", "not_match"] = "not_match"
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, p: str) -> str:
        import re

        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return p


class Guardrails(_Strict):
    """What the deterministic checks hold every answer of this version to (``tether.graders.checks``)."""

    rules: list[Rule] = Field(default_factory=list)
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=1)


class LLMSpec(_Strict):
    backend: Backend = Field(default_factory=Backend)
    prompt: Prompt = Field(default_factory=Prompt)
    decoding: Decoding = Field(default_factory=Decoding)
    cache: Cache = Field(default_factory=Cache)
    context: Context = Field(default_factory=Context)
    prices: Prices = Field(default_factory=Prices)
    guardrails: Guardrails = Field(default_factory=Guardrails)

    @field_validator("prompt")
    @classmethod
    def _tools(cls, p: Prompt) -> Prompt:
        for i, t in enumerate(p.tools):
            if t.get("type") != "function" or not isinstance(t.get("function"), dict) or "name" not in t["function"]:
                raise ValueError(f"prompt.tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
        return p

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if self.guardrails == Guardrails():  # absent when unused: specs written before guard-rails keep their ids
            del out["guardrails"]
        return out

    @classmethod
    def parse(cls, value: Any, *, source: str = "the LLM spec") -> LLMSpec:
        """Validate a mapping (or a YAML/JSON file path) into a spec; errors name the field and the rule."""
        if isinstance(value, str | Path) and not isinstance(value, dict):
            path = Path(value)
            if not path.is_file():
                raise InvalidInputError(f"LLM spec file not found: {path}", hint="pass --spec with a YAML file")
            try:
                value = yaml.safe_load(path.read_text())
            except yaml.YAMLError as e:
                raise InvalidInputError(f"{path} is not valid YAML: {e}") from None
            source = str(path)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise InvalidInputError(f"{source} must be a mapping, not {type(value).__name__}")
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            problems = validation_problems(e)
            raise InvalidInputError(
                f"{source} is invalid: {problems}", hint="see docs/llm.md for every field of an LLM spec"
            ) from None
