"""The drift chapter of `tether demo`: the champion serves, its inputs are profiled at the gateway, and a
shifted population (customers twelve years younger) is flagged under the false-alarm budget and shadowed to
a diagnostic version while users keep being served.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from tether.cli.output import console
from tether.core import Settings, short
from tether.registry import Registry


def drift_chapter(reg: Registry, project: Path, settings: Settings, root: Path) -> None:
    """The champion serves; its inputs are profiled at the gateway; an age shift is flagged and shadowed."""
    import asyncio
    import time

    import aiohttp
    import numpy as np

    from tether.api.server import Server
    from tether.monitor import baseline as baseline_mod
    from tether.monitor.config import MonitorConfig
    from tether.monitor.report import html_report
    from tether.monitor.watch import Watch
    from tether.serving import table as routing_table

    champion = reg.get("fraud@champion")
    diagnostic = reg.get("fraud/2")
    base = baseline_mod.ensure(reg, champion.ref)
    age = base.profile.features["customer_age"]
    console.print(
        f"  baseline of {champion.ref}: training snapshot {short(base.data_digest)}, {base.rows:,} rows, "
        f"customer_age mean {age.mean:.1f} (sd {age.variance**0.5:.1f}); blob {short(base.profile_digest)}"
    )
    # Compressed time for the tour: 1 s slices, a 10 s window, a check every second. The false-alarm budget
    # stays the default (one per feature per 30 days of such checks).
    config = MonitorConfig(
        slice_seconds=1,
        window_seconds=10,
        check_seconds=1,
        min_rows=150,
        actions={"shadow": {"version": diagnostic.ref, "percent": 100}},
    )
    Watch(reg).set_config("fraud", config)
    console.print(
        f"  monitor: window {config.window_seconds:g} s, Holm across features at "
        f"{config.family_alpha(len(base.profile.features)):.1g} per check (1 false alarm per feature per 30 days); "
        f"on a high-priority anomaly shadow 100% to {diagnostic.ref}, hold any rollout"
    )
    gold = pd.read_parquet(project / "data/gold.parquet").drop(columns=["is_fraud", "gender"])
    normal = gold.head(3000).to_dict("records")
    young = gold.tail(3000).assign(customer_age=lambda f: (f["customer_age"] - 12).clip(lower=18))
    shifted = young.to_dict("records")

    async def story() -> dict[str, Any]:
        server = Server(settings, port=0, auth=False, tick_seconds=0.5)
        await server.start()
        answered: Counter[str] = Counter()
        rng = np.random.default_rng(1)
        try:
            await server.wait_ready()
            async with aiohttp.ClientSession() as session:

                async def send(records: list[dict[str, Any]], seconds: float, stop: Any = None) -> int:
                    deadline, sent = time.monotonic() + seconds, 0

                    async def worker() -> None:
                        nonlocal sent
                        while time.monotonic() < deadline and not (stop and stop()):
                            body = {"records": [records[int(rng.integers(len(records)))]]}
                            async with session.post(f"{server.url}/v1/models/fraud/predict", json=body) as r:
                                await r.read()
                                answered[r.headers.get("X-Tether-Version", "error")] += 1
                            sent += 1

                    await asyncio.gather(*[worker() for _ in range(6)])
                    return sent

                calm = await send(normal, 6)
                calm_alarms = len(server.watch.anomalies("fraud"))
                t0 = time.monotonic()
                # Until a high-priority anomaly, the one the shadow action waits for: under load the first
                # sighting can be a milder, medium one (the window still mostly the usual population), which
                # the watch escalates as the shift fills the window.
                high = lambda: any(a.priority == "high" for a in server.watch.anomalies("fraud"))  # noqa: E731
                sent = await send(shifted, 90, stop=high)
                took = time.monotonic() - t0
                await send(shifted, 3)  # the actions take effect; users keep being served
        finally:
            await server.stop()
        return {"calm": calm, "calm_alarms": calm_alarms, "sent": sent, "took": took, "answered": answered}

    r = asyncio.run(story())
    console.print(f"  {r['calm']} requests from the usual population: {r['calm_alarms']} anomalies")
    watch = Watch(reg)
    found = watch.anomalies("fraud")
    if not found:
        console.print(f"  [red]no anomaly after {r['sent']} shifted requests: bug[/red]")
        return
    console.print(f"  customers 12 years younger: flagged after {r['sent']} requests ({r['took']:.1f} s of traffic)")
    for a in reversed(found):
        console.print(f"    [bold red]anomaly #{a.id}[/] {a.describe()}")
    with reg.store.db.connect() as conn:
        table, _ = routing_table.read(conn, "fraud")
    assert table is not None
    shadow = f"{reg.get(table.shadow).ref} at {table.shadow_bp / 100:g}%" if table.shadow else "none"
    users = ", ".join(f"{reg.get(v).ref}: {n}" for v, n in r["answered"].items() if v != "error")
    console.print(f"  routing: champion {reg.get(table.champion).ref}, shadow {shadow}; live answers by {users}")
    report = root / "drift-report.html"
    report.write_text(html_report(watch, "fraud"))
    console.print(f"  HTML report (baseline against live per feature): {report}")
