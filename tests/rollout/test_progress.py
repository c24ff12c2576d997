"""What every face shows of a rollout: the progress toward the next step and the timeline the charts draw, on a
manual clock with simulated traffic."""

from __future__ import annotations

import numpy as np

from tests.rollout.test_controller import PLAN, Behaviour, _start, _traffic, setup  # noqa: F401  (fixture)
from tether.rollout.progress import status_of
from tether.rollout.timeline import timeline


def _feed(ctrl, metrics, clock, v1, v2, seconds, rng, *, tick=10, rps=200):
    for _ in range(seconds // tick):
        ro = ctrl.latest("fraud")
        n = rps * tick
        n_c = int(n * ro.weight_bp / 10_000)
        _traffic(metrics, "fraud", v2.id, "canary", clock.now(), n_c, Behaviour(), rng)
        _traffic(metrics, "fraud", v1.id, "champion", clock.now(), n - n_c, Behaviour(), rng)
        clock.advance(tick)
        ctrl.tick()


def test_progress_says_what_the_next_step_waits_for(setup):  # noqa: F811
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    before = status_of(ctrl, "fraud", None)
    p = before["progress"]
    assert p["next_weight_percent"] == 5 and p["samples"] == 0 and p["bake_left_seconds"] == PLAN.bake_seconds
    assert any("bake time left" in w for w in p["waiting_for"]) and any(
        "canary requests" in w for w in p["waiting_for"]
    )
    assert set(p["undecided"]) >= {"error_rate", "latency_p99"} and "no data yet" in p["undecided"].values()

    rng = np.random.default_rng(3)
    _feed(ctrl, metrics, clock, v1, v2, 60, rng)
    mid = status_of(ctrl, "fraud", None)["progress"]
    assert 0 < mid["observed_seconds"] < PLAN.bake_seconds and mid["samples"] > 0
    assert mid["bake_left_seconds"] == PLAN.bake_seconds - mid["observed_seconds"]

    offline = status_of(ctrl, "fraud", None, live=False)
    assert "progress" not in offline and offline["events"][0]["kind"] == "start" and offline["live"] is False

    paused = ctrl.pause("fraud", reason="look", actor="someone")
    assert paused.actor == "someone"
    assert status_of(ctrl, "fraud", None)["progress"]["waiting_for"][0].startswith("paused")


def test_the_timeline_has_weights_slices_and_confidence_sequences(setup):  # noqa: F811
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    rng = np.random.default_rng(4)
    _feed(ctrl, metrics, clock, v1, v2, 400, rng)
    ro = ctrl.latest("fraud")
    tl = timeline(ctrl, ro)
    assert tl["weights"][0]["percent"] == PLAN.steps[0] and tl["weights"][-1]["percent"] == ro.weight_bp / 100
    assert len(tl["candidate"]) >= 30 and all(p["p50_ms"] and p["p99_ms"] >= p["p50_ms"] for p in tl["candidate"])
    assert all(0 <= p["error_rate"] <= 1 for p in tl["champion"])
    seq = tl["sequences"]["error_rate"]
    assert len(seq) >= 2 and [p["t"] for p in seq] == sorted(p["t"] for p in seq)
    widths = [p["upper"] - p["lower"] for p in seq if p["lower"] is not None]
    assert widths and widths[-1] <= widths[0], "the interval narrows as evidence grows"
    assert seq[-1]["n"] >= seq[0]["n"]
