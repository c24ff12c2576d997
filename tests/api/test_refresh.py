"""A serving process's refresh reads only what changed: one query when nothing did, at any number of models; a
change costs the rows it touched; a retirement, a hand-written delete and a monitor setting all arrive."""

import pytest
from sqlalchemy import event, text

from tests import fleet
from tether.api.server import Server
from tether.monitor.config import MonitorConfig
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

MODELS = 40


@pytest.fixture
def deployed(settings, tmp_path):
    root = fleet.make_repo(tmp_path / "repo")
    with Registry.open(settings) as reg:
        versions = list(fleet.register_fleet(reg, root, MODELS, versions=2))
        ctl = Controller(reg, MetricStore())
        for mv in versions[:MODELS]:
            ctl.deploy(mv.name, mv.ref, reason="first", force=True)
    return versions[:MODELS], versions[MODELS:]


def test_a_refresh_reads_only_what_changed(settings, deployed):
    first, second = deployed
    # A controller replica runs no instances: this is the refresh alone.
    server = Server(settings, port=0, auth=False, role="controller")
    seen: list[str] = []
    event.listen(server.registry.store.db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    try:
        server.refresh()
        assert len(server.gateway.desired) == MODELS
        seen.clear()
        for _ in range(5):
            server.refresh()
        assert len(seen) == 5, seen  # the counters, once a refresh: nothing else when nothing changed

        ctl = server.controller
        ctl.deploy(first[0].name, second[0].ref, reason="next", force=True)
        seen.clear()
        server.refresh()
        routing_reads = [q for q in seen if "FROM routing" in q]
        assert len(routing_reads) == 1 and "routing.seq >" in routing_reads[0]
        assert server.gateway.desired[first[0].name].champion == second[0].id

        ctl.deployments.retire(first[1].name, reason="gone")
        server.refresh()
        assert first[1].name not in server.gateway.desired

        with server.registry.store.db.begin() as conn:  # behind tether's back: no row left to stamp
            conn.execute(text("DELETE FROM routing WHERE model_name = :m"), {"m": first[2].name})
        server.refresh()
        assert first[2].name not in server.gateway.desired and len(server.gateway.desired) == MODELS - 2

        Watch(server.registry).set_config(first[3].name, MonitorConfig(enabled=False))
        server.refresh()
        assert not server.monitor_config(first[3].name).enabled
        assert server.monitor_config(first[4].name).enabled  # the others keep the defaults
    finally:
        server.registry.close()
