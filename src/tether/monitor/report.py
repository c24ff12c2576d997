"""Faces of the drift watch: a JSON status, sparklines for the terminal, and a self-contained HTML report."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from tether.monitor.assessment import FeatureStatus, json_safe
from tether.monitor.profile import CategoricalProfile, NumericProfile
from tether.monitor.watch import VersionStatus, Watch

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        else:
            out.append(SPARKS[int((v - lo) / span * (len(SPARKS) - 1)) if span > 0 else 3])
    return "".join(out)


def feature_json(fs: FeatureStatus) -> dict[str, Any]:
    out: dict[str, Any] = json_safe(
        {
            "feature": fs.feature,
            "segment": fs.segment,
            "kind": fs.kind,
            "live_rows": fs.live_rows,
            "baseline": fs.baseline,
            "live": fs.live,
            "psi": fs.psi,
            "new_categories": fs.new_categories,
            "alarm": fs.alarm,
            "spark": fs.spark,
            "tests": [
                {
                    "test": t.finding.test,
                    "statistic": t.finding.statistic,
                    "p_value": t.finding.p_value,
                    "adjusted_p": t.adjusted_p,
                    "effect": t.finding.effect,
                    "min_shift": t.min_shift,
                    "alarm": t.alarm,
                }
                for t in fs.tests
            ],
        }
    )
    return out


def version_json(vs: VersionStatus, watch: Watch) -> dict[str, Any]:
    mv = watch.registry.get(vs.version_id)
    out: dict[str, Any] = json_safe(
        {
            "version": vs.version_id,
            "ref": mv.ref,
            "baseline": vs.baseline,
            "window": [vs.window_start.isoformat(), vs.window_end.isoformat()],
            "live_rows": vs.live_rows,
            "family_alpha": vs.family_alpha,
            "hypotheses": vs.hypotheses,
            "issues": vs.issues,
            "note": vs.note,
            "features": [feature_json(fs) for fs in vs.features],
        }
    )
    return out


def _config(watch: Watch, model: str, window: float | None) -> Any:
    config = watch.config(model)
    if window is not None:
        config = config.model_copy(update={"window_seconds": max(window, config.slice_seconds)})
    return config


def status_json(watch: Watch, model: str, window: float | None = None, *, scope: str | None = None) -> dict[str, Any]:
    """The watch's view now; ``window`` (seconds) looks further back than the configured window."""
    config = _config(watch, model, window)
    versions = watch.evaluate(model, config=config)
    return {
        "model": model,
        "config": config.model_dump(mode="json"),
        "versions": [version_json(vs, watch) for vs in versions],
        "open_anomalies": [a.to_json() for a in watch.anomalies(model, open_only=True, scope=scope)],
    }


# -- HTML ------------------------------------------------------------------------------------------------------
W, H, PAD = 360, 120, 24


def _bars(pairs: list[tuple[str, float, float]], title: str) -> str:
    """Grouped bars: baseline (grey) against live (blue) per label."""
    if not pairs:
        return ""
    top = max(max(b, lv) for _, b, lv in pairs) or 1.0
    n = len(pairs)
    bw = (W - 2 * PAD) / n
    parts = [f'<svg width="{W}" height="{H + 30}" role="img" aria-label="{html.escape(title)}">']
    for i, (label, b, lv) in enumerate(pairs):
        x = PAD + i * bw
        for j, (v, color) in enumerate(((b, "#9aa4ad"), (lv, "#2f6fde"))):
            h = (H - PAD) * v / top
            parts.append(
                f'<rect x="{x + j * bw / 2 + 1:.1f}" y="{H - h:.1f}" width="{max(bw / 2 - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{html.escape(label)}: '
                f"{'baseline' if j == 0 else 'live'} {v:.3f}</title></rect>"
            )
        if n <= 12:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{H + 12}" font-size="9" text-anchor="middle">'
                f"{html.escape(label[:10])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def numeric_pairs(bp: NumericProfile, lp: NumericProfile, bins: int = 20) -> list[tuple[str, float, float]]:
    lo, hi = bp.quantile(0.005), bp.quantile(0.995)
    if lp.count:
        lo, hi = min(lo, lp.quantile(0.005)), max(hi, lp.quantile(0.995))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return []
    edges = np.linspace(lo, hi, bins + 1)
    cb = np.diff(np.asarray(bp.sketch.get_cdf(edges.tolist())[:-1]))
    cl = np.diff(np.asarray(lp.sketch.get_cdf(edges.tolist())[:-1])) if lp.count else np.zeros(bins)
    return [(f"{edges[i]:.3g}-{edges[i + 1]:.3g}", float(cb[i]), float(cl[i])) for i in range(bins)]


def categorical_pairs(bp: CategoricalProfile, lp: CategoricalProfile, top: int = 12) -> list[tuple[str, float, float]]:
    cats = [c for c, _ in (bp.counts + lp.counts).most_common(top)]
    return [
        (c, bp.counts.get(c, 0) / bp.count if bp.count else 0.0, lp.counts.get(c, 0) / lp.count if lp.count else 0.0)
        for c in cats
    ]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def html_report(watch: Watch, model: str, window: float | None = None, *, scope: str | None = None) -> str:
    config = _config(watch, model, window)
    versions = watch.evaluate(model, config=config)
    open_ = watch.anomalies(model, open_only=True, scope=scope)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tether drift report: {html.escape(model)}</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#1d2329}table{border-collapse:collapse}"
        "td,th{padding:4px 8px;border-bottom:1px solid #e3e6e8;text-align:left;vertical-align:top}"
        ".alarm{color:#b3261e;font-weight:600}.ok{color:#2e7d32}.card{display:inline-block;margin:8px;"
        "padding:8px;border:1px solid #e3e6e8;border-radius:6px}.legend span{display:inline-block;width:10px;"
        "height:10px;margin:0 4px 0 12px}</style></head><body>",
        f"<h1>Drift report: {html.escape(model)}</h1>",
        f"<p>Baseline: {html.escape(config.baseline)} profile of each version. Window: last "
        f"{config.window_seconds:g} s, checked every {config.check_seconds:g} s. False-alarm budget: "
        f"{config.false_alarms_per_feature_per_30_days:g} per feature per 30 days (Holm across features and "
        "tests at the per-check level shown).</p>",
        "<p class='legend'><span style='background:#9aa4ad'></span>baseline"
        "<span style='background:#2f6fde'></span>live</p>",
    ]
    if open_:
        out.append("<h2>Open anomalies</h2><ul>")
        out += [
            f"<li class='alarm'>#{a.id} {a.detected_at:%Y-%m-%d %H:%M:%S} {html.escape(a.describe())}</li>"
            for a in open_
        ]
        out.append("</ul>")
    if not versions:
        out.append("<p>No live traffic in the window.</p>")
    for vs in versions:
        mv = watch.registry.get(vs.version_id)
        out.append(
            f"<h2>{html.escape(mv.ref)} <small>{vs.version_id[:12]}</small></h2><p>{vs.live_rows} live rows; "
            f"{vs.hypotheses} tests at family level {vs.family_alpha:.2g}. {html.escape(vs.note)}</p>"
        )
        if vs.issues:
            out.append(
                "<p>Input issues: " + ", ".join(f"{html.escape(k)} x{n}" for k, n in sorted(vs.issues.items())) + "</p>"
            )
        out.append(
            "<table><tr><th>feature</th><th>segment</th><th>live rows</th><th>baseline</th><th>live</th>"
            "<th>tests (effect / minimum, adjusted p)</th></tr>"
        )
        for fs in vs.features:
            cls = "alarm" if fs.alarm else "ok"
            tests = (
                "<br>".join(
                    f"<span class='{'alarm' if t.alarm else ''}'>{t.finding.test}: {t.finding.effect:.3g} / "
                    f"{t.min_shift:g}, p={t.adjusted_p:.2g}</span>"
                    for t in fs.tests
                )
                or f"fewer than {config.min_rows} rows"
            )
            base = ", ".join(f"{k} {_fmt(v)}" for k, v in fs.baseline.items())
            live = ", ".join(f"{k} {_fmt(v)}" for k, v in fs.live.items())
            if fs.new_categories:
                live += "<br>new: " + html.escape(", ".join(fs.new_categories))
            out.append(
                f"<tr><td class='{cls}'>{html.escape(fs.feature)}</td><td>{html.escape(fs.segment or 'all')}</td>"
                f"<td>{fs.live_rows}</td><td>{base}</td><td>{live}</td><td>{tests}</td></tr>"
            )
        out.append("</table><div>")
        for fs in vs.features:
            if fs.segment or fs.profiles is None:
                continue
            bp, lp = fs.profiles
            pairs = (
                numeric_pairs(bp, lp)
                if isinstance(bp, NumericProfile) and isinstance(lp, NumericProfile)
                else categorical_pairs(bp, lp)
                if isinstance(bp, CategoricalProfile) and isinstance(lp, CategoricalProfile)
                else []
            )
            title = f"{fs.feature}: baseline against live"
            out.append(
                f"<div class='card'><b class='{'alarm' if fs.alarm else ''}'>{html.escape(fs.feature)}</b><br>"
                f"{_bars(pairs, title)}</div>"
            )
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
