"""A rollout decides on evidence that means what it says, with real processes and real HTTP on 127.0.0.1.

* An identical candidate (the champion's weights under another commit) reaches 100%: at a small share the
  canary's instance would idle between requests and look slower; the latency mirror makes both instances
  serve the same rate, and each instance's first requests (its warm-up) are not judged.
* The same weights 50 ms slower per request are still rolled back on latency (20 ms is caught on a quiet
  machine, not reliably on a loaded one).
* No traffic reaches a canary before its instance is up, and the gateway's own unavailability never counts
  against a version.
"""

import json
import shutil

import pytest

from tests.conftest import git
from tests.serving.test_e2e import _load, _run, _with_server, served  # noqa: F401  (fixture)
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow

#: The default latency guardrail (tolerance 0.25, mirror on) beside the other guardrails, with steps, margins
#: and sample sizes a test on a busy 2-core machine can afford (at a 5% share and a 0.01 margin, showing the
#: error rate safe takes a few hundred canary requests: minutes here).
PLAN = Plan(
    steps=[10, 50, 100],
    bake_seconds=2,
    min_samples=40,
    # A step's time limit is wall time, its evidence a sample count: on a quiet machine a step decides in
    # seconds, but CI on a loaded machine left an identical twin undecided on p99 after 240 s (a slow machine
    # serves fewer requests in that time, and the mSPRT needs about a thousand per arm at these rates). Pausing
    # then is the product's right answer; the test's budget must be in samples, not seconds.
    max_step_seconds=600,
    watch_seconds=2,
    guardrails={
        "error_rate": {"margin": 0.05},
        "schema_violation_rate": {"margin": 0.05},
        "latency_p99": {"tolerance": 0.25, "margin": 0.03},
    },
)


def _twin(reg, project):
    """The champion's exact weights, flavor and data under another commit."""
    git(project.root, "commit", "-qm", "an unrelated change", "--allow-empty")
    return project.register(reg)


def _same_weights(reg, project, delay):
    """The champion's exact pipeline behind the latency wrapper, ``delay`` seconds slower per request."""
    from tests.conftest import EXAMPLE

    (project.root / "latency_wrapper.py").write_bytes((EXAMPLE / "latency_wrapper.py").read_bytes())
    git(project.root, "add", "latency_wrapper.py")
    git(project.root, "commit", "-qm", f"wrapper {delay}", "--allow-empty")
    folder = project.root / "model" / f"wrapped-{delay}"
    folder.mkdir(parents=True)
    shutil.copy(project.weights, folder / "model.pkl")
    (folder / "delay.json").write_text(json.dumps({"seconds": delay}))
    return project.register(
        reg, weights=folder, flavor="python", flavor_options={"entry_point": "latency_wrapper:load"}
    )


def _roll(settings, reg, candidate, records):
    Controller(reg, MetricStore()).start("fraud", candidate.ref, PLAN, force=True, reason="e2e evidence")

    async def body(server, s):
        def done():
            return server.controller.latest("fraud").state not in ("running", "watching")

        await _load(server, s, records, until=done, seconds=1500)
        rejected = dict(server.gateway.rejected)
        return server.controller.latest("fraud"), rejected

    return _run(_with_server(settings, body, auth=False))


@pytest.fixture
def twin_and_slow(served, project):  # noqa: F811
    import pandas as pd

    reg, v1, _, _ = served
    # The whole training snapshot, so the drift watch (on, as in production) sees no shift to act on.
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).to_dict("records")
    # +50 ms: +20 ms was rolled back on a quiet machine but not reliably with a CPU hog beside the suite (the
    # champion's own p99 grows with the load; see docs/rollout.md).
    return reg, v1, records, _twin(reg, project), _same_weights(reg, project, 0.05)


def test_identical_reaches_100_and_a_slower_one_is_rolled_back(settings, twin_and_slow):
    reg, v1, records, twin, slow = twin_and_slow
    ro, rejected = _roll(settings, reg, twin, records)
    events = Controller(reg, MetricStore()).events(ro.id)
    assert ro.state == "completed", ([e.reason for e in events], events[-1].evidence)
    assert reg.get("fraud@champion").id == twin.id
    # The canary's share went to the champion until its instance was up: never a 503 counted against it.
    for e in events:
        cand = e.evidence.get("candidate") or {}
        assert "unavailable" not in (cand.get("errors") or {}), e.evidence
    assert not rejected.get(("fraud", "unavailable")), rejected

    Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="back to the first", force=True)
    ro, _ = _roll(settings, reg, slow, records)
    last = Controller(reg, MetricStore()).events(ro.id)[-1]
    assert ro.state == "rolled_back" and "latency" in last.reason, last.reason
