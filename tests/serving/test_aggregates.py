"""Metric windows across replicas: the merged evidence is exactly one process's, so are the decisions."""

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.rollout.test_controller import PLAN, Behaviour, simulate
from tether.core import ManualClock
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.aggregates import MergedMetrics, Publisher
from tether.serving.window import MetricStore, Tally
from tether.store.database import Database, DatabaseUnavailableError


class Split:
    """Records each batch into one of several replica stores, cut at random (as a balancer would)."""

    def __init__(self, stores, publishers, seed=7):
        self.stores, self.publishers = stores, publishers
        self.rng = np.random.default_rng(seed)

    def _parts(self, n):
        cuts = np.sort(self.rng.integers(0, n + 1, len(self.stores) - 1))
        edges = [0, *cuts.tolist(), n]
        return list(itertools.pairwise(edges))

    def record_batch(self, model, version, arm, at, *, latencies, services=None, records, errors=None, **kw):
        lat = np.asarray(latencies)
        errs = errors or {}
        shares = self._parts(len(lat))
        split_errs = {
            k: self.rng.multinomial(v, [(b - a) / max(len(lat), 1) for a, b in shares]) for k, v in errs.items()
        }
        split_schema = self.rng.multinomial(
            kw.get("schema_violations", 0), [(b - a) / max(len(lat), 1) for a, b in shares]
        )
        for i, (store, (a, b)) in enumerate(zip(self.stores, shares, strict=True)):
            store.record_batch(
                model,
                version,
                arm,
                at,
                latencies=lat[a:b],
                services=None if services is None else np.asarray(services)[a:b],
                records=b - a,
                errors={k: int(v[i]) for k, v in split_errs.items()},
                schema_violations=int(split_schema[i]),
            )

    def record_labels(self, model, version, arm, at, predicted, labels):
        for store, (a, b) in zip(self.stores, self._parts(len(labels)), strict=True):
            store.record_labels(model, version, arm, at, predicted[a:b], labels[a:b])

    def publish(self):
        for p in self.publishers:
            p.publish()


def test_a_tally_survives_publication_exactly():
    rng = np.random.default_rng(3)
    t = Tally(requests=5, records=9, schema_violations=1, labelled=4, false_positives=1, labelled_negatives=3)
    t.errors["5xx"] = 2
    t.latency.add(rng.lognormal(-4, 1, 500))
    t.service.add(rng.lognormal(-5, 1, 500))
    back = Tally.load(t.dump())
    assert back.dump() == t.dump()
    assert back.latency.quantile(0.99) == t.latency.quantile(0.99)


def test_merged_windows_equal_one_process_carrying_all_the_traffic(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    at = datetime(2026, 6, 1, tzinfo=UTC)
    one = MetricStore()
    replicas = [MetricStore() for _ in range(3)]
    split = Split(replicas, [Publisher(db, s, f"r{i}") for i, s in enumerate(replicas)])
    rng = np.random.default_rng(11)
    for k in range(6):
        lat = rng.lognormal(np.log(0.02), 0.4, 400)
        for store in (one, split):
            store.record_batch(
                "m", "v1", "canary", at.replace(second=k * 10), latencies=lat, records=400, errors={"5xx": 7}
            )
    split.publish()
    merged = MergedMetrics(db)
    assert merged.tally("m", "v1", "canary", at).dump() == one.tally("m", "v1", "canary", at).dump()
    assert [t.dump() for _, t in merged.series("m", "v1", "canary", at)] == [
        t.dump() for _, t in one.series("m", "v1", "canary", at)
    ]
    # Publishing again (a retry, a restart) counts nothing twice: rows are each replica's whole slice.
    for r in replicas:
        r.mark_dirty([(("m", "v1", "canary"), MetricStore.slice_of(at))])
    split.publish()
    merged.sync(force=True)
    assert merged.tally("m", "v1", "canary", at).requests == one.tally("m", "v1", "canary", at).requests


def test_a_failed_publication_is_published_next_time(settings, monkeypatch):
    db = Database(settings.resolved_database_url)
    store = MetricStore()
    pub = Publisher(db, store, "r0")
    at = datetime(2026, 6, 1, tzinfo=UTC)
    store.record_request("m", "v1", "champion", at, latency=0.01)

    def unreachable():
        raise DatabaseUnavailableError("cannot connect to the database (test)")

    with monkeypatch.context() as m:
        m.setattr(db, "begin", unreachable)
        with pytest.raises(DatabaseUnavailableError):
            pub.publish()
    assert pub.failures == 1
    assert pub.publish() == 1
    assert MergedMetrics(db).tally("m", "v1", "champion", at).requests == 1


@pytest.mark.parametrize(("bad", "outcome"), [(Behaviour(), "completed"), (Behaviour(error=0.06), "rolled_back")])
def test_the_same_traffic_over_three_replicas_gives_the_same_decisions(settings, project, bad, outcome):
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(settings, clock=clock)
    runs = []
    for model in ("fraud", "fraud_b"):
        v1 = project.register(reg, name=model)
        project.train("--learning-rate", "0.3")
        v2 = project.register(reg, name=model)
        project.train()
        runs.append((model, v1, v2))
    db = reg.store.db
    single = MetricStore()
    replicas = [MetricStore() for _ in range(3)]
    split = Split(replicas, [Publisher(db, s, f"gw{i}") for i, s in enumerate(replicas)])
    merged = MergedMetrics(db, min_interval=0.0)

    class Publishing(Controller):  # the replicas publish before every tick, as they do every two seconds
        def tick(self):
            split.publish()
            return super().tick()

    results = []
    for (model, v1, v2), metrics, ctrl_cls, sink in (
        (runs[0], single, Controller, single),
        (runs[1], merged, Publishing, split),
    ):
        clock = ManualClock(datetime(2026, 6, 2, tzinfo=UTC))  # each run on the same timeline
        ctrl = ctrl_cls(reg, metrics, clock=clock)
        ctrl.deploy(model, v1.ref, reason="first", force=True)
        ctrl.start(model, v2.ref, PLAN, force=True, reason="test without a gate")
        ro, _ = simulate(
            ctrl, sink, clock, model, candidate=(v2.id, bad), champion=Behaviour(), rng=np.random.default_rng(5)
        )
        ids = {v1.id[:12]: "V1", v2.id[:12]: "V2"}  # the two models' versions differ by name only
        results.append(
            [(e.kind, e.from_bp, e.to_bp, e.at, _plain(e.reason, ids), e.evidence) for e in ctrl.events(ro.id)]
        )
        assert ro.state == outcome
    assert results[0] == results[1]
    reg.close()


def _plain(text, ids):
    for k, v in ids.items():
        text = text.replace(k, v)
    return text
