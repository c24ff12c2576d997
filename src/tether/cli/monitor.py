"""``tether monitor``: baselines, live drift, anomalies and their actions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.table import Table

from tether.cli.common import _load_mapping, _num, _pct, _short, registry
from tether.cli.output import console
from tether.core import short
from tether.core.errors import InvalidInputError

monitor_app = typer.Typer(
    help="Drift watch: baseline profiles, live feature drift, anomalies and what they trigger.", no_args_is_help=True
)


def _watch() -> Any:
    from tether.monitor.watch import Watch

    return Watch(registry())


@monitor_app.command("status")
def monitor_status(
    name: Annotated[str, typer.Argument(help="Model name.")],
    window: Annotated[
        float | None, typer.Option(help="Look back this many seconds instead of the configured window.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Per version and feature: baseline against the live window, tests, sparklines and open anomalies.

    Reads the live profiles 'tether serve' stores, so it needs no running server.

    Example: tether monitor status fraud
    """
    from tether.monitor.report import sparkline, status_json

    w = _watch()
    with w.registry:
        data = status_json(w, name, window)
    if as_json:
        console.print_json(json.dumps(data))
        return
    cfg = data["config"]
    console.print(
        f"[bold]{name}[/bold]: window {cfg['window_seconds']:g} s, check every {cfg['check_seconds']:g} s, "
        f"baseline {cfg['baseline']}, budget {cfg['false_alarms_per_feature_per_30_days']:g} false alarm(s) "
        "per feature per 30 days"
    )
    if not data["versions"]:
        console.print("  no live traffic in the window (is 'tether serve' running and receiving requests?)")
    for v in data["versions"]:
        console.print(
            f"\n{v['ref']} ({v['version'][:12]}): {v['live_rows']:,} live rows, {v['hypotheses']} tests at family "
            f"level {v['family_alpha']:.2g} {v['note']}"
        )
        if v["issues"]:
            console.print("  input issues: " + ", ".join(f"{k} x{n}" for k, n in sorted(v["issues"].items())))
        t = Table(box=box.SIMPLE_HEAD)
        t.add_column("feature", no_wrap=True, max_width=28)
        for name in ("rows", "baseline", "live", "trend", "largest effect / minimum"):
            t.add_column(name)
        t.add_column("", no_wrap=True, min_width=5)  # ALARM or ok: never squeezed away on a narrow terminal
        for f in v["features"]:
            b, lv = f["baseline"], f["live"]
            if f["kind"] == "numeric":
                base_s = f"{_short(b.get('mean'))}±{_short(b.get('sd'))}"
                live_s = f"{_short(lv.get('mean'))}±{_short(lv.get('sd'))}"
            else:
                base_s = f"{b.get('top')} {_pct(b.get('top_share'))}"
                live_s = f"{b.get('top')} {_pct(lv.get('top_share'))}"
            if lv.get("missing"):
                live_s += f" miss {_pct(lv['missing'])}"
            if f["new_categories"]:
                live_s += f" new {','.join(f['new_categories'][:3])}"
            worst = max(f["tests"], key=lambda t: t["effect"] / t["min_shift"], default=None)
            worst_s = (
                f"{worst['test']} {_short(worst['effect'])}/{worst['min_shift']:g} p={worst['adjusted_p']:.1g}"
                if worst
                else "too few rows"
            )
            flag = "[bold red]ALARM[/]" if f["alarm"] else "[green]ok[/]"
            spark = sparkline([math.nan if x is None else x for x in f["spark"][-12:]])
            from rich.markup import escape

            feature = escape(f"{f['feature']} [{f['segment']}]" if f["segment"] else f["feature"])
            t.add_row(feature, f"{f['live_rows']:,}", base_s, live_s, spark, worst_s, flag)
        console.print(t)
    if data["open_anomalies"]:
        console.print("[bold red]open anomalies[/]")
        for a in data["open_anomalies"]:
            console.print(f"  #{a['id']} {a['detected_at'][:19]} {a['description']}")


@monitor_app.command("report")
def monitor_report(
    name: Annotated[str, typer.Argument(help="Model name.")],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("drift-report.html"),
    window: Annotated[
        float | None, typer.Option(help="Look back this many seconds instead of the configured window.")
    ] = None,
) -> None:
    """A self-contained HTML report: baseline against live distributions per feature, tests, anomalies.

    Example: tether monitor report fraud --out drift.html
    """
    from tether.monitor.report import html_report

    w = _watch()
    with w.registry:
        html = html_report(w, name, window)
    out.write_text(html)
    console.print(f"wrote {out} ({len(html):,} bytes)")


@monitor_app.command("anomalies")
def monitor_anomalies(
    name: Annotated[str, typer.Argument(help="Model name.")],
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """The model's drift anomalies, newest first (open ones only unless --all).

    Example: tether monitor anomalies fraud --all
    """
    w = _watch()
    with w.registry:
        found = w.anomalies(name, open_only=not all_)
    if as_json:
        console.print_json(json.dumps([a.to_json() for a in found]))
        return
    if not found:
        console.print(f"no {'' if all_ else 'open '}anomalies for {name}")
    for a in found:
        state = f"resolved {a.resolved_at:%Y-%m-%d %H:%M:%S}" if a.resolved_at else "open"
        console.print(f"#{a.id} {a.detected_at:%Y-%m-%d %H:%M:%S} {short(a.version_id)} ({state}) {a.describe()}")


@monitor_app.command("resolve")
def monitor_resolve(
    anomaly: Annotated[int, typer.Argument(help="Anomaly number (see 'tether monitor anomalies').")],
    reason: Annotated[str, typer.Option(help="Why it is resolved (recorded).")],
) -> None:
    """Close an anomaly; the same drift alarms again (as a new anomaly) if it is still there.

    Example: tether monitor resolve 3 --reason "campaign traffic, model retrained"
    """
    w = _watch()
    with w.registry:
        a = w.resolve(anomaly, reason=reason)
    console.print(f"#{a.id} resolved: {a.describe()}")


@monitor_app.command("set")
def monitor_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    config: Annotated[Path, typer.Option(help="Monitor settings (YAML/JSON); see docs/monitor.md.")],
) -> None:
    """Set what the drift watch of a model checks and does (applies to a running server within seconds).

    Example: tether monitor set fraud --config monitor.yaml
    """
    from pydantic import ValidationError

    from tether.monitor.config import MonitorConfig

    raw = _load_mapping(config, "monitor config")
    try:
        cfg = MonitorConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'config'}: {x['msg']}" for x in e.errors())
        raise InvalidInputError(f"monitor config {config}: {problems}", hint="see docs/monitor.md") from None
    w = _watch()
    with w.registry:
        w.set_config(name, cfg)
    console.print_json(json.dumps(cfg.model_dump(mode="json")))


@monitor_app.command("config")
def monitor_config(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Show the model's monitor settings (the defaults unless 'tether monitor set' stored some).

    Example: tether monitor config fraud
    """
    w = _watch()
    with w.registry:
        cfg = w.config(name)
    console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@monitor_app.command("baseline")
def monitor_baseline(
    version: Annotated[str, typer.Argument(help="A version: NAME/N, NAME@alias or an id prefix.")],
    gold: Annotated[
        str | None, typer.Option(help="Compute the gold baseline from this file/folder or snapshot digest.")
    ] = None,
) -> None:
    """Show (computing if needed) a version's baseline profile: training data, or the gold set with --gold.

    Example: tether monitor baseline fraud/2 --gold data/gold.parquet
    """
    from tether.monitor import baseline as baseline_mod
    from tether.monitor.profile import NumericProfile

    with registry() as reg:
        b = baseline_mod.ensure(reg, version, "gold" if gold else "training", data=gold)
        mv = reg.get(version)
    console.print(f"{mv.ref} {b.source} baseline from data {short(b.data_digest)} ({b.rows:,} rows)")
    console.print(f"  profile blob {b.profile_digest}")
    console.print(f"  segments: {', '.join(b.segments) or 'none'}")
    t = Table("feature", "kind", "rows", "missing", "mean / top", "p5 / p50 / p95", box=box.SIMPLE_HEAD)
    for name, p in b.profile.features.items():
        if isinstance(p, NumericProfile):
            qs = " / ".join(_num(p.quantile(q)) for q in (0.05, 0.5, 0.95))
            t.add_row(
                name, "numeric", f"{p.count:,}", _num(p.missing_ratio), f"{_num(p.mean)} ±{_num(p.variance**0.5)}", qs
            )
        else:
            top = ", ".join(f"{c} {n / p.count:.2f}" for c, n in p.counts.most_common(3)) if p.count else "-"
            t.add_row(name, "categorical", f"{p.count:,}", _num(p.missing_ratio), top, f"{len(p.counts)} categories")
    console.print(t)
