"""Finding a model among many: search by name, tag, owner and stage, keyset pages that add up to the whole, the
same handful of queries whatever the number of models, and a tampered row still reported on its page."""

import pytest
from sqlalchemy import event, text

from tests import fleet
from tether.core import InvalidInputError
from tether.registry import Registry, catalog
from tether.registry import info as info_ops
from tether.rollout.controller import Controller
from tether.rollout.fleet import summary
from tether.serving.window import MetricStore


@pytest.fixture
def store(settings, tmp_path):
    root = fleet.make_repo(tmp_path / "repo")
    reg = Registry.open(settings)
    versions = list(fleet.register_fleet(reg, root, 12, versions=2))
    ctl = Controller(reg, MetricStore())
    for mv in versions[:8]:  # eight of twelve models served
        ctl.deploy(mv.name, mv.ref, reason="first", force=True)
    with reg.store.db.begin() as conn:
        for i, name in enumerate(f"team-{m:04d}" for m in range(12)):
            info_ops.write(
                conn,
                name,
                at=reg.clock.now(),
                actor="t",
                owner="risk" if i % 3 == 0 else "growth",
                add_tags=["tier-1"] if i < 4 else [],
            )
    yield reg, ctl, root
    reg.close()


def _queries(reg):
    seen = []
    event.listen(reg.store.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_filters_narrow_the_list(store):
    reg, ctl, _ = store
    names = lambda **kw: [m.name for m in catalog.search(reg, catalog.ModelQuery(**kw)).items]  # noqa: E731
    assert names(text="0011") == ["team-0011"]
    assert names(tag="tier-1") == [f"team-{i:04d}" for i in range(4)]
    assert names(owner="risk") == ["team-0000", "team-0003", "team-0006", "team-0009"]
    assert names(stage="registered") == [f"team-{i:04d}" for i in range(8, 12)]
    ctl.deployments.retire("team-0001", reason="gone")
    assert names(stage="retired") == ["team-0001"]
    assert "team-0001" not in names(stage="serving") and len(names(stage="serving")) == 7
    assert names(owner="risk", tag="tier-1") == ["team-0000", "team-0003"]
    with pytest.raises(InvalidInputError, match="unknown stage"):
        catalog.ModelQuery(stage="production")


def test_keyset_pages_add_up_to_every_model_once(store):
    reg, _, _ = store
    seen, after, pages = [], None, 0
    while True:
        page = catalog.search(reg, catalog.ModelQuery(limit=5, after=after))
        assert page.total == 12
        seen += [m.name for m in page.items]
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 12 and pages == 3
    first = catalog.search(reg, catalog.ModelQuery(limit=3)).items[0]
    assert first.champion == "team-0000/1" and first.latest == "team-0000/2" and first.stage == "serving"
    assert first.owner == "risk" and first.tags == ["tier-1"]


def test_a_page_costs_the_same_queries_whatever_the_fleet(store):
    reg, _, root = store
    seen = _queries(reg)
    catalog.search(reg, catalog.ModelQuery(limit=10, text="team"))  # a pooled connection opened first
    seen.clear()
    catalog.search(reg, catalog.ModelQuery(limit=10, text="team"))
    small = len(seen)
    for mv in fleet.register_fleet(reg, root, 30, prefix="more"):
        pass
    seen.clear()
    catalog.search(reg, catalog.ModelQuery(limit=10, text="team"))
    assert len(seen) == small, f"{small} queries for a page of 12 models, {len(seen)} for 42"


def test_a_tampered_version_is_reported_on_its_page_never_shown_as_intact(store):
    reg, _, _ = store
    with reg.store.db.connect() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS model_versions_no_update"))
        conn.execute(
            text("UPDATE model_versions SET metrics = '{\"auc\": 0.99}' WHERE name = 'team-0002' AND number = 1")
        )
        conn.commit()
    m = catalog.search(reg, catalog.ModelQuery(text="team-0002")).items[0]
    assert m.champion is None and any("no longer hashes" in p or "was changed" in p for p in m.problems), m


def test_versions_are_found_by_metric_across_models_a_page_at_a_time(store, tmp_path):
    reg, _, root = store
    found, nxt = catalog.search_versions(reg, limit=10)
    assert len(found) == 10 and nxt == found[-1].ref
    rest, last = catalog.search_versions(reg, limit=100, after=nxt)
    assert last is None and len(found) + len(rest) == 24
    assert catalog.search_versions(reg, metric="auc")[0] == []  # the fleet registered no metrics


def test_two_versions_compared(store):
    reg, _, _ = store
    c = catalog.compare(reg, "team-0000/1", "team-0000/2")
    assert c["triad"]["code"]["same"] and c["triad"]["data"]["same"] and not c["triad"]["weights"]["same"]
    assert [r["name"] for r in c["inputs"]] == ["age", "amount", "hour", "score"] and all(
        r["same"] for r in c["inputs"]
    )


def test_the_fleet_summary_counts_and_links(store):
    reg, ctl, _ = store
    ctl.deployments.retire("team-0007", reason="gone")
    with reg.store.db.begin() as conn:
        info_ops.write(conn, "team-0000", at=reg.clock.now(), actor="t", max_champion_age_days=1e-9)
    s = summary(reg, reg.clock.now(), catalog.Live(unready={"team-0001"}, over_budget={"team-0002"}))
    assert (s.models, s.serving, s.retired, s.registered_only) == (12, 7, 1, 4)
    assert (s.unready, s.healthy, s.over_budget, s.stale_champion) == (1, 6, 1, 1)
    assert s.links()["stale_champion"] == "/?health=stale"
    names = [m.name for m in catalog.search(reg, catalog.ModelQuery(health="stale")).items]
    assert names == ["team-0000"]
