"""The offline gate for LLM versions: golden prompt sets, graded, compared pair by pair with the champion.

A spec with ``task: llm`` names golden prompt sets (data snapshots with a ``prompt`` column, and optionally
``context``, ``reference`` and ``expect``), the graders that score the answers (``llm.graders``; the built-in
checks and MiniLM grader by default) and the metrics to compare::

    model: helpdesk
    task: llm
    gold: [golden.parquet]
    llm: {graders: [tether-checks, tether-minilm], cite_min: 0.5}
    metrics:
      - {name: schema_valid, margin: 0.0}
      - {name: relevance, margin: 0.02, floor: 0.3}
      - {name: refused, margin: 0.02}          # lower is better

Candidate and champion answer every prompt (each through its own template, tools, schema and decoding); each
metric is the mean score over the rows where it applies on both sides, compared by the gate's paired
bootstrap against the non-inferiority margin, with Holm across the family, exactly as a tabular metric is.
Rows whose ``expect`` names an edge case must hold for the candidate: ``refuse`` (it refuses), ``answer`` (it
does not refuse and the answer is complete), ``tool:NAME`` (it calls that tool with valid arguments), ``cite``
(its answer is grounded in the row's context at ``cite_min`` or more). The verdict then faces the same
promotion rule as any model's.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import numpy as np
import pandas as pd

from tether.core.errors import InvalidInputError
from tether.gate import bootstrap as bs
from tether.gate.results import TestResult
from tether.gate.spec import GateSpec
from tether.graders.interaction import Interaction, Score
from tether.graders.registry import Graders, resolve
from tether.registry import Registry

LOWER_IS_BETTER = frozenset({"refused"})
EXPECTATIONS = ("refuse", "answer", "cite")


def answers(loaded: Any, gold: pd.DataFrame) -> list[Interaction]:
    """Every golden prompt answered by one version (its template, tools, schema and decoding)."""
    native = loaded.native
    spec = native.spec
    p, d = spec.prompt, spec.decoding
    decoding = {
        "max_tokens": d.max_tokens,
        "temperature": d.temperature,
        "top_p": d.top_p,
        "seed": d.seed,
        "stop": d.stop,
    }
    out = []
    for i, row in enumerate(gold.to_dict("records")):
        messages = ([{"role": "system", "content": p.system}] if p.system is not None else []) + [
            {"role": "user", "content": str(row["prompt"])}
        ]
        got = native.chat(messages, p.tools or None, p.response_format, decoding)
        calls = got.get("tool_calls")
        out.append(
            Interaction(
                trace_id=f"gold:{i}",
                messages=tuple(messages),
                answer=str(got.get("text") or ""),
                finish_reason=str(got.get("finish_reason") or "stop"),
                tool_calls=tuple(calls) if calls else None,
                tools=tuple(p.tools) if p.tools else None,
                response_format=p.response_format,
                context=_text(row.get("context")),
                reference=_text(row.get("reference")),
                version_id=loaded.version_id,
            )
        )
    return out


def _text(v: Any) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def grade(
    registry: Registry, refs: list[str], items: list[Interaction], guardrails: dict[str, Any] | None
) -> list[dict[str, Score]]:
    graders = Graders(registry.store)
    out: list[dict[str, Score]] = [{} for _ in items]
    for ref in refs:
        gv = resolve(graders, ref)
        g = graders.load(gv)
        result = (
            g.grade(items, {items[0].version_id: guardrails} if gv.kind == "checks" and items else None)
            if gv.kind == "checks"
            else g.grade(items)
        )
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        for row, scores in zip(out, result, strict=True):
            for s in scores:
                row.setdefault(s.metric, s)
    return out


def evaluate_llm(
    spec: GateSpec,
    gold: pd.DataFrame,
    cand: list[dict[str, Score]],
    champ: list[dict[str, Score]] | None,
    cand_items: list[Interaction],
) -> tuple[list[TestResult], list[str]]:
    rng = np.random.default_rng(spec.bootstrap.seed)
    level = 1 - 2 * spec.alpha
    results: list[TestResult] = []
    notes: list[str] = []
    for ms in spec.metrics:
        higher = ms.name not in LOWER_IS_BETTER
        sign = 1.0 if higher else -1.0
        idx = [
            i
            for i, row in enumerate(cand)
            if _v(row, ms.name) is not None and (champ is None or _v(champ[i], ms.name) is not None)
        ]
        errors = sum(1 for row in cand if ms.name in row and row[ms.name].error)
        if errors:
            notes.append(f"{ms.name}: {errors} grader error(s) on the candidate's answers, left out (never scores)")
        if len(idx) < spec.min_rows:
            results.append(
                TestResult(
                    "metric",
                    ms.name,
                    method="paired bootstrap",
                    rows=len(idx),
                    reason=f"only {len(idx)} rows scored on both sides; the spec's min_rows is {spec.min_rows}",
                )
            )
            continue
        c = np.array([_v(cand[i], ms.name) for i in idx], dtype=float)
        weights = np.vstack(list(bs.row_weights(len(idx), spec.bootstrap.resamples, rng)))
        cand_s = weights @ c / len(idx)
        if champ is not None:
            h = np.array([_v(champ[i], ms.name) for i in idx], dtype=float)
            champ_s = weights @ h / len(idx)
            diff = cand_s - champ_s
            oriented = sign * diff
            results.append(
                TestResult(
                    "metric",
                    ms.name,
                    "overall",
                    f"paired bootstrap, {spec.bootstrap.resamples} resamples",
                    float(c.mean()),
                    float(h.mean()),
                    float(c.mean() - h.mean()),
                    bs.percentile_interval(diff, level),
                    f"at most {ms.margin:g} {'lower' if higher else 'higher'} than the champion",
                    p_harm=bs.p_at_least(oriented, -ms.margin),
                    p_ok=bs.p_at_most(oriented, -ms.margin),
                    rows=len(idx),
                )
            )
        bound = ms.floor if ms.floor is not None else ms.ceiling
        if bound is not None:
            floor = ms.floor is not None
            results.append(
                TestResult(
                    "bound",
                    ms.name,
                    "overall",
                    "bootstrap",
                    float(c.mean()),
                    interval=bs.percentile_interval(cand_s, level),
                    allowed=f"{'at least' if floor else 'at most'} {bound:g}",
                    p_harm=bs.p_at_most(cand_s, bound) if floor else bs.p_at_least(cand_s, bound),
                    p_ok=bs.p_at_least(cand_s, bound) if floor else bs.p_at_most(cand_s, bound),
                    rows=len(idx),
                )
            )
    results += edge_cases(spec, gold, cand, cand_items)
    return results, notes


def _v(row: dict[str, Score], metric: str) -> float | None:
    s = row.get(metric)
    return None if s is None else s.value


def edge_cases(
    spec: GateSpec, gold: pd.DataFrame, cand: list[dict[str, Score]], items: list[Interaction]
) -> list[TestResult]:
    if "expect" not in gold.columns:
        return []
    cite_min = spec.llm.cite_min if spec.llm is not None else 0.5
    failures: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for i, expect in enumerate(gold["expect"].tolist()):
        if expect is None or (isinstance(expect, float) and np.isnan(expect)) or not str(expect).strip():
            continue
        e = str(expect).strip()
        kind = "tool" if e.startswith("tool:") else e
        if kind not in (*EXPECTATIONS, "tool"):
            raise InvalidInputError(
                f"gold row {i}: expect {e!r} is not an edge case", hint="use refuse, answer, cite or tool:NAME"
            )
        counts[kind] = counts.get(kind, 0) + 1
        row, it = cand[i], items[i]
        if kind == "refuse":
            ok = _v(row, "refused") == 1.0
        elif kind == "answer":
            ok = _v(row, "refused") == 0.0 and _v(row, "complete") == 1.0
        elif kind == "cite":
            g = _v(row, "grounding")
            ok = g is not None and g >= cite_min
        else:
            name = e.split(":", 1)[1]
            called = [c.get("function", {}).get("name") for c in it.tool_calls or ()]
            ok = name in called and _v(row, "tool_calls_valid") == 1.0
        if not ok:
            failures.setdefault(kind, []).append(f"row {i}: {it.prompt[:80]!r} -> {it.answer[:80]!r}")
    out = []
    for kind, n in sorted(counts.items()):
        bad = failures.get(kind, [])
        label = {
            "refuse": "must refuse",
            "answer": "must not refuse",
            "cite": "must cite the context",
            "tool": "must call the tool",
        }[kind]
        out.append(
            TestResult(
                "edge",
                label,
                method="every case must hold",
                candidate=float(n - len(bad)),
                rows=n,
                status="fail" if bad else "pass",
                reason=(f"{len(bad)} of {n} cases failed: " + "; ".join(bad[:5])) if bad else f"all {n} cases hold",
                extra={"failures": bad[:50]},
            )
        )
    return out
