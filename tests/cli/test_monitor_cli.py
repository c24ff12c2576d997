import os
from pathlib import Path

from tests.cli.test_cli import _register, tether  # noqa: F401  (fixture)
from tests.conftest import _load_example
from tether.core import Settings
from tether.monitor.live import LiveProfiler
from tether.registry import Registry


def test_monitor_commands(tether, project, tmp_path):  # noqa: F811
    out = _register(tether, project)
    assert "baseline profile" in out and "of 6 inputs" in out
    assert "window_seconds: 300" in tether("monitor", "config", "fraud")
    bad = tmp_path / "bad.yaml"
    bad.write_text("window_seconds: 5\nslice_seconds: 10\ncheck_secnds: 3\n")
    err = tether("monitor", "set", "fraud", "--config", bad, expect=2)
    assert "check_secnds" in err and "see docs/monitor.md" in err
    good = tmp_path / "monitor.yaml"
    good.write_text("slice_seconds: 10\nwindow_seconds: 3600\nmin_rows: 100\nsegments: [country]\n")
    assert '"window_seconds": 3600' in tether("monitor", "set", "fraud", "--config", good)
    assert "no model named" in tether("monitor", "set", "nope", "--config", good, expect=2)
    base = tether("monitor", "baseline", "fraud/1")
    assert "training baseline" in base and "customer_age" in base
    assert "country" in base.split("segments:")[1].splitlines()[0] and "merchant_category" in base.split("segments:")[1]
    assert "no data snapshot matches" in tether("monitor", "baseline", "fraud/1", "--gold", "abcdef123456", expect=2)
    gold = tmp_path / "gold.parquet"
    _load_example("generate").generate(1000, seed=9).to_parquet(gold)
    assert "gold baseline" in tether("monitor", "baseline", "fraud/1", "--gold", gold)
    assert "no live traffic" in tether("monitor", "status", "fraud")

    # What 'tether serve' would have profiled: customers 15 years younger.
    reg = Registry.open(Settings(home=Path(os.environ["TETHER_HOME"])))
    frame = _load_example("generate").generate(1500, seed=10).drop(columns=["is_fraud", "gender"])
    frame["customer_age"] -= 15
    profiler = LiveProfiler(reg)
    profiler.observe("fraud", reg.get("fraud/1").id, frame.to_dict("records"))
    profiler.flush(close_all=True)
    reg.close()
    status = tether("monitor", "status", "fraud")
    assert "ALARM" in status and "customer_age" in status and "[country=US]" in status
    assert '"alarm": true' in tether("monitor", "status", "fraud", "--json")
    assert "no open anomalies" in tether("monitor", "anomalies", "fraud")  # status never records
    report = tmp_path / "drift.html"
    assert "wrote" in tether("monitor", "report", "fraud", "--out", report)
    assert "<svg" in report.read_text() and "customer_age" in report.read_text()
    assert "no anomaly 99" in tether("monitor", "resolve", "99", "--reason", "x", expect=2)
