"""Deterministic checks: cheap enough for every interaction, run right after the answer is recorded.

Each check is a metric whose value is 1.0 when its property holds and 0.0 when it does not, or ``None`` when it
does not apply (no schema was asked for, no tool was called):

    schema_valid      the answer parses as JSON and meets the version's ``response_format`` (JSON Schema 2020-12)
    tool_calls_valid  every call names a declared tool and its arguments parse and meet that tool's schema
    refused           the answer is a refusal (phrases in ``REFUSAL_PATTERNS`` plus the grader's own)
    rule:<name>       a guard-rail rule of the version's spec (``guardrails.rules``) holds
    length_ok         the answer's length is within the version's ``guardrails.min_chars``/``max_chars``
    complete          the answer is not empty and was not cut off (``finish_reason`` is not ``length``)

Validators are compiled once per schema and kept (a version has a handful), so a check costs microseconds.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

import orjson

from tether.graders.interaction import Interaction, Score

#: Phrases that open or carry a refusal in English assistants; a grader's ``refusal_patterns`` adds more.
REFUSAL_PATTERNS = (
    r"\bI(?:'m| am) (?:sorry|afraid),? but\b",
    r"\bI (?:can(?:no|')t|cannot|won't|will not|am unable to|'m unable to|am not able to) "
    r"(?:help|assist|provide|do|comply|answer|share|support|fulfil)",
    r"\bI(?:'m| am) not (?:able|allowed|permitted) to\b",
    r"\bas an AI(?: language model)?\b",
    r"\bI must (?:decline|refuse)\b",
    r"\bthat(?:'s| is) not something I can\b",
)

CHECKS = ("schema_valid", "tool_calls_valid", "refused", "rules", "length_ok", "complete")


class _Validators:
    """Compiled JSON-schema validators by schema text (bounded: schemas come from versions and requests)."""

    def __init__(self, size: int = 256) -> None:
        self._d: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, schema: dict[str, Any]) -> Any:
        from jsonschema import Draft202012Validator

        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
                return v
        Draft202012Validator.check_schema(schema)
        v = Draft202012Validator(schema)
        with self._lock:
            self._d[key] = v
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return v


_VALIDATORS = _Validators()


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ``jsonschema.SchemaError`` if ``schema`` is not a JSON Schema (2020-12)."""
    _VALIDATORS.get(schema)


def first_error(schema: dict[str, Any], value: Any) -> str | None:
    try:
        validator = _VALIDATORS.get(schema)
    except Exception as e:  # the version's schema itself is broken: say so instead of failing every answer
        return f"the response schema is not a JSON Schema: {str(e).splitlines()[0]}"
    for err in validator.iter_errors(value):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        return f"{where}: {err.message[:200]}"
    return None


def schema_of(response_format: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """(``text`` | ``json_object`` | ``json_schema``, the schema) from OpenAI's ``response_format``."""
    if not response_format:
        return "text", None
    kind = str(response_format.get("type") or "text")
    if kind == "json_schema":
        js = response_format.get("json_schema") or {}
        return kind, js.get("schema") if isinstance(js, dict) else None
    return kind, None


class Checks:
    """The deterministic grader. ``config`` may set ``enabled`` (a subset of ``CHECKS``) and
    ``refusal_patterns`` (extra regular expressions); guard-rails come from each interaction's version."""

    def __init__(self, grader_id: str, config: dict[str, Any]) -> None:
        self.grader_id = grader_id
        self.enabled = tuple(config.get("enabled") or CHECKS)
        self.refusal = re.compile("|".join([*REFUSAL_PATTERNS, *config.get("refusal_patterns", [])]), re.IGNORECASE)
        self._rules: dict[str, list[tuple[str, re.Pattern[str], bool]]] = {}

    def metrics(self) -> list[str]:
        return [c for c in self.enabled if c != "rules"] + (["rule:*"] if "rules" in self.enabled else [])

    def grade(self, items: list[Interaction], guardrails: dict[str, dict[str, Any]] | None = None) -> list[list[Score]]:
        """Scores for each interaction; ``guardrails`` maps a version id to its spec's ``guardrails``."""
        return [self.one(it, (guardrails or {}).get(it.version_id)) for it in items]

    def one(self, it: Interaction, guardrails: dict[str, Any] | None = None) -> list[Score]:
        out: list[Score] = []
        s = self._score
        if "complete" in self.enabled:
            if not it.answer.strip() and not it.tool_calls:
                out.append(s("complete", 0.0, reason="empty answer"))
            elif it.finish_reason == "length":
                out.append(s("complete", 0.0, reason="cut off at max_tokens (finish_reason length)"))
            elif it.status != "ok":
                out.append(s("complete", 0.0, reason=f"the backend broke the answer ({it.status})"))
            else:
                out.append(s("complete", 1.0))
        if "schema_valid" in self.enabled:
            out.append(self._schema(it))
        if "tool_calls_valid" in self.enabled:
            out.append(self._tools(it))
        if "refused" in self.enabled:
            m = self.refusal.search(it.answer)
            out.append(s("refused", 1.0 if m else 0.0, **({"match": m.group(0)} if m else {})))
        g = guardrails or {}
        if "length_ok" in self.enabled:
            lo, hi, n = g.get("min_chars"), g.get("max_chars"), len(it.answer)
            if lo is None and hi is None:
                out.append(s("length_ok", None))
            else:
                ok = (lo is None or n >= lo) and (hi is None or n <= hi)
                out.append(s("length_ok", 1.0 if ok else 0.0, chars=n))
        if "rules" in self.enabled:
            for name, pattern, must_match in self._compiled(it.version_id, g.get("rules") or []):
                hit = pattern.search(it.answer) is not None
                out.append(s(f"rule:{name}", 1.0 if hit == must_match else 0.0))
        return out

    def _score(self, metric: str, value: float | None, **detail: Any) -> Score:
        return Score(self.grader_id, metric, value, detail=detail)

    def _compiled(self, version_id: str, rules: list[dict[str, Any]]) -> list[tuple[str, re.Pattern[str], bool]]:
        found = self._rules.get(version_id)
        if found is None:
            found = [
                (
                    r["name"],
                    re.compile(r["pattern"], re.IGNORECASE if r.get("ignore_case", True) else 0),
                    r.get("must", "not_match") == "match",
                )
                for r in rules
            ]
            if len(self._rules) > 1024:
                self._rules.clear()
            self._rules[version_id] = found
        return found

    def _schema(self, it: Interaction) -> Score:
        kind, schema = schema_of(it.response_format)
        if kind == "text" or it.tool_calls:
            return self._score("schema_valid", None)
        try:
            value = orjson.loads(it.answer)
        except orjson.JSONDecodeError as e:
            return self._score("schema_valid", 0.0, reason=f"not JSON: {str(e)[:120]}")
        if kind == "json_object" and not isinstance(value, dict):
            return self._score("schema_valid", 0.0, reason="JSON, but not an object")
        if schema is not None and (problem := first_error(schema, value)) is not None:
            return self._score("schema_valid", 0.0, reason=problem)
        return self._score("schema_valid", 1.0)

    def _tools(self, it: Interaction) -> Score:
        if not it.tool_calls:
            if it.finish_reason == "tool_calls":
                return self._score("tool_calls_valid", 0.0, reason="finish_reason tool_calls without a call")
            return self._score("tool_calls_valid", None)
        declared = {
            t["function"]["name"]: t["function"].get("parameters")
            for t in it.tools or ()
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
        }
        for c in it.tool_calls:
            fn = c.get("function") or {}
            name = fn.get("name")
            if name not in declared:
                return self._score("tool_calls_valid", 0.0, reason=f"calls {name!r}, not a declared tool")
            try:
                args = orjson.loads(fn.get("arguments") or "{}")
            except (orjson.JSONDecodeError, TypeError):
                return self._score("tool_calls_valid", 0.0, reason=f"{name}: arguments are not JSON")
            schema = declared[name]
            if schema and (problem := first_error(schema, args)) is not None:
                return self._score("tool_calls_valid", 0.0, reason=f"{name}: {problem}")
        return self._score("tool_calls_valid", 1.0)
