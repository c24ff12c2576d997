"""The self-contained HTML gate report: tables and inline SVG plots, no scripts, no external files.

Plots: the confidence interval of every comparison against its allowed region, per-slice bars of candidate
and champion, and the ROC curves of both models on the gold set.
"""

from __future__ import annotations

import html
from typing import Any

COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "INCONCLUSIVE": "#9a6700"}
STATUS = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "inconclusive": "#9a6700",
    "no harm shown": "#1a7f37",
    "no evidence": "#6e7781",
}
CAND, CHAMP = "#0969da", "#8c959f"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.4g}" if isinstance(x, float) else _e(x)


def _intervals_svg(tests: list[dict[str, Any]]) -> str:
    rows = [t for t in tests if t.get("interval") and t.get("difference") is not None]
    if not rows:
        return "<p>No comparisons with the champion.</p>"
    w, h, left = 760, 26, 300
    parts = [f'<svg width="{w}" height="{h * len(rows) + 20}" role="img" aria-label="difference intervals">']
    for i, t in enumerate(rows):
        lo, hi = t["interval"]
        d = t["difference"]
        bound = _margin_bound(t)
        span = [v for v in (lo, hi, d, 0.0, bound) if v is not None and v == v]
        a, b = min(span), max(span)
        pad = (b - a) * 0.1 or 1e-3
        a, b = a - pad, b + pad

        def x(v: float, a: float = a, b: float = b) -> float:
            return left + (v - a) / (b - a) * (w - left - 20)

        y = 14 + i * h
        color = STATUS.get(t["status"], "#000")
        parts.append(f'<text x="0" y="{y + 4}" font-size="12">{_e(t["scope"])}: {_e(t["name"])}</text>')
        parts.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{y - 9}" y2="{y + 9}" stroke="#999"/>')
        if bound is not None:
            parts.append(
                f'<line x1="{x(bound):.1f}" x2="{x(bound):.1f}" y1="{y - 9}" y2="{y + 9}" '
                'stroke="#cf222e" stroke-dasharray="3,2"/>'
            )
        parts.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="3"/>')
        parts.append(f'<circle cx="{x(d):.1f}" cy="{y}" r="4" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _margin_bound(t: dict[str, Any]) -> float | None:
    allowed = t.get("allowed", "")
    for word, sign in (("drop at most", -1.0), ("rise at most", 1.0)):
        if word in allowed:
            return sign * float(allowed.split(word)[1].split()[0])
    return 0.0 if "may not be worse" in allowed else None


def _slices_svg(tests: list[dict[str, Any]]) -> str:
    rows = [t for t in tests if t["kind"] == "slice" and t.get("candidate") is not None]
    if not rows:
        return "<p>No slices.</p>"
    w, bar, left = 760, 9, 300
    top = max(max(t["candidate"], t.get("champion") or 0) for t in rows) or 1.0
    parts = [f'<svg width="{w}" height="{len(rows) * 24 + 10}" role="img" aria-label="slice metrics">']
    for i, t in enumerate(rows):
        y = 6 + i * 24
        color = STATUS.get(t["status"], "#000")
        parts.append(f'<text x="0" y="{y + 12}" font-size="12" fill="{color}">{_e(t["scope"])}: {_e(t["name"])}</text>')
        for j, (key, fill) in enumerate((("candidate", CAND), ("champion", CHAMP))):
            v = t.get(key)
            if v is None:
                continue
            width = max(1.0, v / top * (w - left - 80))
            parts.append(f'<rect x="{left}" y="{y + j * (bar + 1)}" width="{width:.1f}" height="{bar}" fill="{fill}"/>')
            parts.append(f'<text x="{left + width + 4:.1f}" y="{y + j * (bar + 1) + 8}" font-size="10">{v:.4g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _roc_svg(curves: dict[str, Any]) -> str:
    roc = curves.get("roc", {})
    if not roc or not roc.get("candidate"):
        return "<p>No ROC curve (not a binary task).</p>"
    s = 300
    parts = [
        f'<svg width="{s + 40}" height="{s + 40}" role="img" aria-label="ROC curves">',
        f'<rect x="30" y="5" width="{s}" height="{s}" fill="none" stroke="#999"/>',
        f'<line x1="30" y1="{s + 5}" x2="{s + 30}" y2="5" stroke="#ddd"/>',
    ]
    for key, color in (("champion", CHAMP), ("candidate", CAND)):
        pts = roc.get(key) or []
        if pts:
            path = " ".join(f"{30 + fx * s:.1f},{5 + (1 - ty) * s:.1f}" for fx, ty in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
    parts.append(f'<text x="30" y="{s + 30}" font-size="11">false-positive rate</text>')
    parts.append(f'<text x="{s - 90}" y="{s - 10}" font-size="11" fill="{CAND}">candidate</text>')
    parts.append(f'<text x="{s - 90}" y="{s + 5 - 25}" font-size="11" fill="{CHAMP}">champion</text>')
    parts.append("</svg>")
    return "".join(parts)


def _row(t: dict[str, Any]) -> str:
    interval = t.get("interval")
    shown = f"[{_num(interval[0])}, {_num(interval[1])}]" if interval else ""
    color = STATUS.get(t["status"], "#000")
    cells = [
        t["scope"],
        t["name"],
        t["method"],
        _num(t.get("candidate")),
        _num(t.get("champion")),
        _num(t.get("difference")),
        shown,
        t.get("allowed", ""),
        _num(t.get("p_harm_adjusted")),
        _num(t.get("p_ok")),
    ]
    tds = "".join(f"<td>{_e(c)}</td>" for c in cells)
    status = f'<td style="color:{color};font-weight:600">{_e(t["status"])}</td>'
    return f"<tr>{tds}{status}<td>{_e(t.get('reason', ''))}</td></tr>"


def render_html(report_id: str, body: dict[str, Any]) -> str:
    verdict = body["verdict"]
    champ = body["champion"]["ref"] if body["champion"] else "none"
    rows = "".join(_row(t) for t in body["tests"])
    reasons = "".join(f"<li>{_e(r)}</li>" for r in body["reasons"])
    notes = "".join(f"<li>{_e(n)}</li>" for n in body.get("notes", []))
    gold = ", ".join(_e(g["digest"][:12]) for g in body["gold"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tether gate: {_e(body["model"])} {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #d0d7de; padding: 3px 6px; }}
th {{ background: #f6f8fa; }} .verdict {{ font-size: 1.6rem; font-weight: 700; color: {COLORS.get(verdict, "#000")}; }}
code {{ font-size: 12px; }}
</style></head><body>
<h1>Gate report: {_e(body["model"])}</h1>
<p class="verdict">{verdict}</p>
<p>candidate <b>{_e(body["candidate"]["ref"])}</b> <code>{_e(body["candidate"]["id"][:12])}</code>
 against champion <b>{_e(champ)}</b>; spec <code>{_e(body["spec_digest"][:12])}</code>; gold {gold}
 ({body["gold_rows"]:,} rows); report <code>{_e(report_id)}</code>;
 {_e(body["created_at"])} by {_e(body["created_by"])}</p>
<h2>Why</h2><ul>{reasons}</ul>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Differences (candidate minus champion) with their intervals</h2>
<p>Dot: estimate; bar: {100 * (1 - 2 * body["spec"]["alpha"]):.0f}% interval; grey: no difference; red dashes: the
allowed limit.</p>
{_intervals_svg(body["tests"])}
<h2>Slices</h2><p><span style="color:{CAND}">candidate</span>, <span style="color:{CHAMP}">champion</span></p>
{_slices_svg(body["tests"])}
<h2>ROC curves on the gold set</h2>
{_roc_svg(body.get("curves", {}))}
<h2>Every test</h2>
<table><tr><th>scope</th><th>test</th><th>method</th><th>candidate</th><th>champion</th><th>difference</th>
<th>interval</th><th>allowed</th><th>p (harm, Holm)</th><th>p (within)</th><th>status</th><th>reason</th></tr>
{rows}</table>
</body></html>
"""
