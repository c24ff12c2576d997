"""Chart specifications for ``static/tether.js``: the server decides what is drawn (x values, series, alarm
lines), the browser only draws it with uPlot. A value of None is a gap."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def _finite(v: Any) -> Any:
    """JSON has no NaN or Infinity (JSON.parse refuses them): a non-finite value is a gap."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def chart(
    title: str,
    x: Sequence[float],
    series: Iterable[dict[str, Any]],
    *,
    ylabel: str = "",
    empty: str = "no data yet",
    time: bool = True,
    height: int = 220,
) -> dict[str, Any]:
    return {
        "title": title,
        "x": list(x),
        "series": [{**s, "values": [_finite(v) for v in s["values"]]} for s in series],
        "ylabel": ylabel,
        "empty": empty,
        "time": time,
        "height": height,
    }


def line(
    label: str,
    values: Sequence[float | None],
    *,
    color: str | None = None,
    dash: bool = False,
    steps: bool = False,
    ref: bool = False,
) -> dict[str, Any]:
    """A series; ``ref``: a reference line (a margin, an alarm line), drawn but not counted as data."""
    return {"label": label, "values": list(values), "color": color, "dash": dash, "steps": steps, "ref": ref}


def aligned(rows_by_label: dict[str, list[dict[str, Any]]], field: str) -> tuple[list[float], dict[str, list[Any]]]:
    """Put several series of ``{"t": ..., field: ...}`` rows on one shared, sorted x axis (gaps as None)."""
    xs = sorted({r["t"] for rows in rows_by_label.values() for r in rows})
    out = {}
    for label, rows in rows_by_label.items():
        by_t = {r["t"]: r.get(field) for r in rows}
        out[label] = [by_t.get(t) for t in xs]
    return xs, out
