"""The LLM evaluation report: one self-contained HTML page (inline SVG, no scripts, nothing fetched).

Per served version and watched metric: the score over time (the mean of each time bucket) with the baseline
and the alarm lines (baseline +- min_shift); the decay tests of the epoch; the prompt-drift result with the
prompts that moved and the new topics; the anchor-set check of each grader; the open anomalies.
"""

from __future__ import annotations

import html as h
from datetime import datetime, timedelta
from typing import Any

from tether.core import tenancy
from tether.graders.scores import read
from tether.monitor.llm_watch import LLMWatch

W, H = 520, 120
BUCKETS = 48


def _chart(points: list[tuple[datetime, float]], baseline: float | None, shift: float, title: str) -> str:
    """Bucketed means over time; dashed lines at the baseline and at baseline +- min_shift (the alarm lines)."""
    if not points:
        return "<p><em>no data</em></p>"
    t0, t1 = points[0][0], points[-1][0]
    span = max(1.0, (t1 - t0).total_seconds())
    sums = [0.0] * BUCKETS
    counts = [0] * BUCKETS
    for at, v in points:
        i = min(BUCKETS - 1, int((at - t0).total_seconds() / span * BUCKETS))
        sums[i] += v
        counts[i] += 1
    means = [(i, sums[i] / counts[i]) for i in range(BUCKETS) if counts[i]]

    def y(v: float) -> float:
        return H - max(0.0, min(1.0, v)) * H

    path = " ".join(f"{'M' if k == 0 else 'L'}{i * W / (BUCKETS - 1):.1f},{y(v):.1f}" for k, (i, v) in enumerate(means))
    lines = ""
    if baseline is not None:
        for v, colour in ((baseline, "#888"), (baseline - shift, "#c0392b"), (baseline + shift, "#c0392b")):
            lines += f'<line x1="0" x2="{W}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
    return (
        f'<svg width="{W}" height="{H + 18}" role="img" aria-label="{h.escape(title)}">'
        f'<rect width="{W}" height="{H}" fill="#f7f8fa"/>{lines}'
        f'<path d="{path}" fill="none" stroke="#2563eb" stroke-width="2"/>'
        f'<text x="0" y="{H + 14}" font-size="11">{h.escape(t0.isoformat(timespec="minutes"))}</text>'
        f'<text x="{W}" y="{H + 14}" font-size="11" text-anchor="end">'
        f"{h.escape(t1.isoformat(timespec='minutes'))}</text>"
        "</svg>"
    )


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{h.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{h.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def html(watch: LLMWatch, model: str, *, hours: float = 24.0, scope: str | None = None) -> str:
    """The report; ``scope``: a reader bound to that tenant (no other tenant's prompts, `tether.core.tenancy`)."""
    status = watch.evaluate(model)
    cfg = watch.config(model)
    since = status.at - timedelta(hours=hours)
    parts = [
        "<!doctype html><meta charset=utf-8><title>LLM evaluation: " + h.escape(model) + "</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#1d2329}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #d5d9de;padding:3px 8px;text-align:left}h2{margin-top:1.6em}"
        ".changed{color:#c0392b;font-weight:600}</style>",
        f"<h1>LLM evaluation: {h.escape(model)}</h1>",
        f"<p>at {h.escape(status.at.isoformat(timespec='seconds'))}; epoch from "
        f"{h.escape(status.epoch[0].isoformat(timespec='seconds'))}; champion "
        f"<code>{h.escape((status.champion or '-')[:12])}</code>"
        + (f", canary <code>{h.escape(status.canary[:12])}</code>" if status.canary else "")
        + "</p>",
    ]
    for note in status.notes:
        parts.append(f"<p><em>{h.escape(note)}</em></p>")
    for vid, tests in status.decay.items():
        parts.append(f"<h2>Version {h.escape(vid[:12])}: scores over the last {hours:g} h</h2>")
        rows = read(watch.db, model, version_id=vid, since=since, until=status.at)
        for t in tests:
            pts = [
                (r["at"], float(r["value"]))
                for r in rows
                if r["metric"] == t.metric and r["grader_id"] == t.grader_id and r["value"] is not None
            ]
            parts.append(
                f"<h3>{h.escape(t.metric)} <small>({h.escape(watch._label(t.grader_id))})</small> "
                f"<span class={'changed' if t.alarm else ''}>{h.escape(t.decision)}</span></h3>"
            )
            parts.append(_chart(pts, t.baseline_mean, t.min_shift, f"{t.metric} over time"))
        parts.append(
            _table(
                [t.to_json() for t in tests],
                ["metric", "baseline", "live", "baseline_n", "live_n", "lower", "upper", "decision", "errors"],
            )
        )
        rates = [{"metric": k, **v} for k, v in status.rates.get(vid, {}).items()]
        parts.append("<h3>Rates over the epoch's traffic (weighted by inclusion)</h3>")
        parts.append(_table(rates, ["metric", "estimate", "low", "high", "n", "effective_n", "errors", "method"]))
    if status.canary:
        parts.append("<h2>Canary against champion (this epoch)</h2>")
        parts.append(
            _table(
                [t.to_json() for t in status.canary_vs_champion],
                ["metric", "baseline", "live", "baseline_n", "live_n", "lower", "upper", "decision"],
            )
        )
    pd = tenancy.prompt_drift(status.prompt_drift, scope)
    parts.append(f"<h2>Prompt drift: {h.escape(str(pd.get('decision')))}</h2>")
    parts.append(
        _table(
            [{k: v for k, v in pd.items() if not isinstance(v, list | dict)}],
            [k for k, v in pd.items() if not isinstance(v, list | dict)],
        )
    )
    if pd.get("examples"):
        parts.append("<h3>The prompts that moved most</h3>")
        parts.append(_table(pd["examples"], ["prompt", "witness"]))
    if pd.get("topics"):
        parts.append("<h3>New topics (named by their most central prompt)</h3>")
        parts.append(_table(pd["topics"], ["name", "prompts"]))
    parts.append("<h2>Anchor-set check (judge drift)</h2>")
    if cfg.anchors is None:
        parts.append("<p><em>no anchor set configured (llm.anchors)</em></p>")
    else:
        parts.append(
            _table(_anchor_rows(watch, model), ["grader", "metric", "pairs", "mean_difference", "p_value", "decision"])
        )
    parts.append("<h2>Anomalies</h2>")
    found = [
        a for a in watch.watch.anomalies(model, scope=scope) if a.feature.startswith(("llm:", "judge:", "prompts"))
    ]
    parts.append(
        _table(
            [{**a.to_json(), "describe": a.describe()} for a in found],
            ["id", "feature", "segment", "test", "describe", "detected_at", "resolved_at"],
        )
    )
    return "\n".join(parts)


def _anchor_rows(watch: LLMWatch, model: str) -> list[dict[str, Any]]:
    """The last comparison of each grader on the anchor set, without running the graders again."""
    from tether.graders import anchors as anchors_mod
    from tether.monitor import judge_drift

    cfg = watch.config(model)
    assert cfg.anchors is not None
    anchor = anchors_mod.get(watch.registry.store, cfg.anchors)
    runs = anchors_mod.runs(watch.registry.store, anchor, model)
    out: list[dict[str, Any]] = []
    by_name: dict[str, list[tuple[str, str, datetime]]] = {}
    for r in runs:
        by_name.setdefault(watch._name_of(r[1]), []).append(r)
    for name, rs in sorted(by_name.items()):
        if len(rs) < 2:
            out.append({"grader": name, "decision": "one run: nothing to compare yet"})
            continue
        for c in judge_drift.paired(
            watch.db,
            model,
            watch._reference_run(model, name, rs),
            rs[-1][0],
            min_shift=cfg.decay.min_shift,
            budget=cfg.false_alarms_per_metric_per_30_days,
            every_seconds=cfg.anchor_every_seconds,
        ):
            out.append({"grader": name, **c})
    return out
