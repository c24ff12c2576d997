"""Test results and the verdict rule.

Every statistical test in a gate run produces a `TestResult` with two one-sided p-values:

* ``p_harm``: evidence that the candidate is *worse* than allowed (worse than the champion by more than the
  margin, or on the wrong side of an absolute bound). Holm's procedure runs over all of them, so the gate
  claims a regression (FAIL) when there is none with probability at most ``alpha``, family-wise.
* ``p_ok``: evidence that the candidate is *within* what is allowed (non-inferiority, or the bound met). PASS
  needs every one of these at or under ``alpha``: an intersection-union test, which keeps the chance of
  passing a candidate that breaks any one requirement at most ``alpha`` without a multiplicity correction
  (Berger 1982, Technometrics 24(4)).

Verdict: FAIL if any regression is shown (or an edge case fails); PASS if every requirement is shown met;
otherwise INCONCLUSIVE, with every reason in words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from tether.gate.multiplicity import holm


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass
class TestResult:
    kind: str  # metric | slice | fairness | bound | mcnemar | edge | data
    name: str
    scope: str = "overall"
    method: str = ""
    candidate: float | None = None
    champion: float | None = None
    #: candidate - champion, in the metric's own units.
    difference: float | None = None
    interval: tuple[float, float] | None = None
    allowed: str = ""
    p_harm: float | None = None
    p_ok: float | None = None
    p_harm_adjusted: float | None = None
    rows: int | None = None
    status: str = "inconclusive"  # pass | fail | inconclusive | "no harm shown" | "no evidence" (harm-only)
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.interval is not None:
            d["interval"] = list(self.interval)
        return d


def decide(results: list[TestResult], alpha: float) -> tuple[Verdict, list[str]]:
    """Apply Holm to the harm p-values, set each test's status, and return the verdict with its reasons."""
    harm = [r for r in results if r.p_harm is not None]
    for r, adj in zip(harm, holm([r.p_harm for r in harm]), strict=True):  # type: ignore[misc]
        r.p_harm_adjusted = float(adj)
    for r in results:
        if r.status in ("fail", "pass") and r.p_harm is None:
            continue  # decided without statistics (edge cases, data checks)
        if r.p_harm_adjusted is not None and r.p_harm_adjusted <= alpha:
            r.status = "fail"
        elif r.kind == "mcnemar" and r.p_harm is not None:
            # A harm-only test: it can only fail to show harm. With so few discordant rows that even all of
            # them against the candidate could not reach alpha, it had no evidence to give at all.
            disc = int(r.extra.get("b", 0)) + int(r.extra.get("c", 0))
            r.status = "no harm shown" if 0.5**disc * 0.5 <= alpha else "no evidence"
        elif r.p_ok is not None and r.p_ok <= alpha:
            r.status = "pass"
        else:
            r.status = "inconclusive"
        r.reason = _reason(r, alpha)
    failed = [r for r in results if r.status == "fail"]
    open_ = [r for r in results if r.status == "inconclusive"]
    if failed:
        return Verdict.FAIL, [f"{r.scope}: {r.name}: {r.reason}" for r in failed]
    if open_:
        return Verdict.INCONCLUSIVE, [f"{r.scope}: {r.name}: {r.reason}" for r in open_]
    if not results:
        return Verdict.INCONCLUSIVE, ["nothing to decide on: the spec produced no tests"]
    held = sum(r.status == "pass" for r in results)
    others = len(results) - held
    extra = f" ({others} harm-only check(s) showed no harm or had no evidence)" if others else ""
    return Verdict.PASS, [f"all {held} checks shown to hold at alpha={alpha}{extra}"]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _reason(r: TestResult, alpha: float) -> str:
    if r.reason and r.p_harm is None and r.p_ok is None:
        return r.reason
    ci = f" [{_fmt(r.interval[0])}, {_fmt(r.interval[1])}]" if r.interval else ""
    if r.kind in ("metric", "slice", "fairness") and r.champion is not None:
        what = f"candidate {_fmt(r.candidate)} vs champion {_fmt(r.champion)}, difference {_fmt(r.difference)}{ci}"
    elif r.kind == "mcnemar":
        what = f"{r.extra.get('b')} rows only the candidate gets wrong, {r.extra.get('c')} only the champion"
    else:
        what = f"candidate {_fmt(r.candidate)}{ci}"
    if r.status == "fail":
        verdict = f"regression shown ({r.allowed}; Holm-adjusted p={r.p_harm_adjusted:.3g} <= {alpha})"
    elif r.status == "no evidence":
        verdict = f"no evidence: too few discordant rows for this test to show harm at alpha={alpha}"
    elif r.status == "no harm shown":
        verdict = f"no regression shown (Holm-adjusted p={r.p_harm_adjusted:.3g})"
    elif r.status == "pass":
        verdict = f"shown within bounds ({r.allowed}; p={r.p_ok:.3g})"
    else:
        verdict = f"not enough evidence either way ({r.allowed}; p={_fmt(r.p_ok)} > {alpha})"
    return f"{what}: {verdict}"


def allowed(higher: bool, margin: float) -> str:
    """What a test allows, in words, for its report."""
    if margin == 0:
        return "may not be worse than the champion"
    return f"may {'drop' if higher else 'rise'} at most {margin:g}"
