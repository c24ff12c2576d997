"""Edge-case suites: exact expectations, invariance and directional checks, run on the candidate.

These are deterministic checks, not statistics: one violated case fails the gate, and the report names the
case, the rows involved and the worst example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tether.core.errors import InvalidInputError
from tether.gate.results import TestResult
from tether.gate.spec import DirectionalCase, EdgeCases, ExactCase, InvarianceCase

Predict = Callable[[pd.DataFrame], pd.DataFrame]


def run_edge_cases(suite: EdgeCases, predict: Predict, gold: pd.DataFrame, *, seed: int) -> list[TestResult]:
    out: list[TestResult] = []
    out += [_exact(c, predict) for c in suite.exact]
    out += [_invariance(c, predict, gold, seed) for c in suite.invariance]
    out += [_directional(c, predict, gold, seed) for c in suite.directional]
    return out


def _output(frame: pd.DataFrame, column: str, case: str) -> np.ndarray:
    if column not in frame.columns:
        raise InvalidInputError(
            f"edge case {case!r} checks output {column!r}, which the model does not produce",
            hint=f"the model outputs {list(frame.columns)}",
        )
    return frame[column].to_numpy()


def _exact(case: ExactCase, predict: Predict) -> TestResult:
    result = predict(pd.DataFrame([case.input]))
    problems = []
    for column, expected in case.expect.items():
        got = _output(result, column, case.name)[0]
        if isinstance(expected, dict):
            lo, hi = expected.get("min", -np.inf), expected.get("max", np.inf)
            if not lo <= float(got) <= hi:
                problems.append(f"{column}={got!r} outside [{lo}, {hi}]")
        elif not _equal(got, expected):
            problems.append(f"{column}={got!r}, expected {expected!r}")
    return _edge(case.name, "exact", problems, 1)


def _sample(gold: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(gold) <= rows:
        return gold.reset_index(drop=True)
    return gold.sample(n=rows, random_state=seed).reset_index(drop=True)


def _invariance(case: InvarianceCase, predict: Predict, gold: pd.DataFrame, seed: int) -> TestResult:
    base = _sample(gold, case.rows, seed)
    outputs = []
    for value in case.values:
        changed = base.copy()
        changed[case.field] = value
        outputs.append(_output(predict(changed), case.output, case.name).astype(float))
    spread = np.max(outputs, axis=0) - np.min(outputs, axis=0)
    bad = np.flatnonzero(spread > case.tolerance)
    problems = []
    if bad.size:
        worst = int(bad[np.argmax(spread[bad])])
        problems.append(
            f"{bad.size} of {len(base)} rows change {case.output} when {case.field} takes the values "
            f"{case.values} (worst: row {worst}, spread {spread[worst]:.4g})"
        )
    return _edge(case.name, "invariance", problems, len(base))


def _directional(case: DirectionalCase, predict: Predict, gold: pd.DataFrame, seed: int) -> TestResult:
    base = _sample(gold, case.rows, seed)
    if not pd.api.types.is_numeric_dtype(base[case.field]):
        raise InvalidInputError(f"directional case {case.name!r}: field {case.field!r} is not numeric")
    changed = base.copy()
    ((op, amount),) = case.change.items()
    changed[case.field] = base[case.field] * amount if op == "multiply" else base[case.field] + amount
    changed[case.field] = changed[case.field].astype(base[case.field].dtype)
    before = _output(predict(base), case.output, case.name).astype(float)
    after = _output(predict(changed), case.output, case.name).astype(float)
    delta = after - before if case.direction == "not_decreasing" else before - after
    bad = np.flatnonzero(delta < -case.tolerance)
    problems = []
    if bad.size:
        worst = int(bad[np.argmin(delta[bad])])
        problems.append(
            f"{bad.size} of {len(base)} rows move {case.output} the wrong way when {case.field} is "
            f"{op} {amount:g} (worst: row {worst}, {before[worst]:.4g} -> {after[worst]:.4g})"
        )
    return _edge(case.name, "directional", problems, len(base))


def _edge(name: str, kind: str, problems: list[str], rows: int) -> TestResult:
    return TestResult(
        "edge",
        name,
        f"edge case ({kind})",
        "exact check",
        rows=rows,
        status="fail" if problems else "pass",
        reason="; ".join(problems) if problems else f"holds on {rows} row(s)",
    )


def _equal(got: Any, expected: Any) -> bool:
    if isinstance(expected, float | int) and not isinstance(expected, bool):
        try:
            return bool(np.isclose(float(got), float(expected), rtol=1e-9, atol=1e-12))
        except (TypeError, ValueError):
            return False
    return bool(got == expected)
