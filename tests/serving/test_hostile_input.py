"""No client can poison the data plane or the decisions: malformed input is a 4xx in the route's own shape,
client errors are never a version's errors, an instance's exception text stays in the log and on the trail,
and one poison value cannot blind the drift watch. Real server, real instances, real HTTP on 127.0.0.1."""

import gzip  # noqa: F401  (the test sends a body that claims gzip and is not)
import json

import orjson
import pytest

from tests.conftest import git
from tests.serving.test_e2e import _run, _with_server, served  # noqa: F401  (fixture)
from tether.audit.log import AuditLog
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


def _failing_version(reg, project):
    (project.root / "boom.py").write_text(
        "class Boom:\n"
        "    def predict(self, frame):\n"
        "        if (frame['amount'] > 999_999).any():\n"
        "            raise RuntimeError('injected fault: secret-internal-detail')\n"
        "        import pandas as pd\n"
        "        return pd.DataFrame({'prediction': [0] * len(frame), 'probability': [0.01] * len(frame)})\n"
        "def load(path):\n"
        "    return Boom()\n"
    )
    git(project.root, "add", "boom.py")
    git(project.root, "commit", "-qm", "boom")
    weights = project.root / "model" / "boom.json"
    weights.write_text("{}")
    return project.register(reg, weights=weights, flavor="python", flavor_options={"entry_point": "boom:load"})


def test_hostile_requests_get_4xx_and_never_count_against_a_version(settings, served, project):  # noqa: F811
    reg, v1, v2, records = served
    boom = _failing_version(reg, project)
    Controller(reg, MetricStore()).deploy("fraud", boom.ref, reason="a model that fails on huge amounts", force=True)
    Controller(reg, MetricStore()).start(
        "fraud", v2.ref, Plan(steps=[50, 100], bake_seconds=3600, max_step_seconds=3600), force=True, reason="x"
    )
    good = records[0]

    async def body(server, s):
        url = f"{server.url}/v1/models/fraud/predict"
        out = {}
        # Oversized bodies: refused on their declared length before they are sent (Expect: 100-continue), and
        # with a 413 in the route's own shape when a client sends them anyway (the server then closes).
        async with s.post(url, data=b'{"records": [' + b"1," * (3 << 20) + b"1]}", expect100=True) as r:
            out["too_large"] = (r.status, await r.json())
        async with s.post(url, data=orjson.dumps({"records": [good]}), headers={"Content-Encoding": "gzip"}) as r:
            out["gzip"] = (r.status, await r.json())
        async with s.post(f"{server.url}/v1/feedback", json={"trace_id": ["a"], "labels": [1]}) as r:
            out["feedback_list"] = (r.status, await r.json())
        async with s.post(f"{server.url}/v1/feedback", json={"trace_id": {"a": 1}, "labels": "x"}) as r:
            out["feedback_object"] = (r.status, await r.json())
        async with s.post(f"{server.url}/v1/chat/completions", data=b"x" * (5 << 20), expect100=True) as r:
            out["chat_large"] = (r.status, await r.json())
        async with s.post(
            f"{server.url}/v1/chat/completions", data=b'{"model": "m"}', headers={"Content-Encoding": "gzip"}
        ) as r:
            out["chat_gzip"] = (r.status, await r.json())
        async with s.post(url, json={"records": [{**good, "ssn": "123-45-6789"}]}) as r:
            out["extra_field"] = (r.status, await r.json())
        typo = {k: v for k, v in good.items() if k != "amount"} | {"amout": good["amount"]}
        async with s.post(url, json={"records": [typo]}) as r:
            out["typo"] = (r.status, await r.json())
        async with s.post(url, json={"records": [{**good, "hour": 1e308}]}) as r:
            out["huge_int"] = (r.status, await r.json())
        # Bad payloads aimed at both arms (entity keys spread over the split): rejections, not violations.
        for i in range(40):
            async with s.post(url, json={"records": [{**good, "hour": "noon"}], "entity_key": f"e{i}"}) as r:
                assert r.status == 422
        # A poison value the contract allows (a finite float) must not blind the drift watch.
        # (sent to the champion, which fails on huge amounts: its exception text must not reach the client)
        table = server.gateway.tables["fraud"]
        key = next(f"p{i}" for i in range(1000) if table.route(f"p{i}").arm == "champion")
        async with s.post(url, json={"records": [{**good, "amount": 1e308}], "entity_key": key}) as r:
            out["poison"] = (r.status, await r.read(), r.headers.get("X-Tether-Trace"))
        for i in range(30):
            async with s.post(url, json={"records": [good], "entity_key": f"k{i}"}) as r:
                assert r.status == 200
        server.profiler.flush(close_all=True)
        out["profiler"] = (server.profiler.write_failures, server.profiler.last_error)
        out["rejected"] = dict(server.gateway.rejected)
        ro = server.controller.latest("fraud")
        since = ro.step_started_at
        out["canary"] = server.metrics.tally("fraud", v2.id, "canary", since)
        out["champion"] = server.metrics.tally("fraud", boom.id, "champion", since)
        async with s.get(f"{server.url}/healthz") as r:
            out["health"] = (r.status, await r.json())
        return out

    out = _run(_with_server(settings, body, auth=False))
    assert out["too_large"][0] == 413 and "limit" in out["too_large"][1]["error"]
    assert out["gzip"][0] == 400 and "Content-Encoding" in out["gzip"][1]["error"]
    for k in ("feedback_list", "feedback_object"):
        assert out[k][0] == 400 and "trace_id" in out[k][1]["error"], out[k]
    assert out["chat_large"][0] == 413 and out["chat_large"][1]["error"]["type"] == "invalid_request_error"
    assert out["chat_gzip"][0] == 400 and "message" in out["chat_gzip"][1]["error"]
    assert out["extra_field"][0] == 422 and "'ssn'" in out["extra_field"][1]["error"]
    assert out["typo"][0] == 422 and "did you mean 'amount'" in out["typo"][1]["error"]
    assert out["huge_int"][0] == 422 and "64-bit integer" in out["huge_int"][1]["error"]
    # The failing champion's exception text reached nobody but the log and the trail.
    status, raw, trace = out["poison"]
    assert status == 502 and b"secret-internal-detail" not in raw and trace.encode() in raw, raw
    with AuditLog(settings) as log:
        log.seal()
        _, rows = log.query(f"SELECT payload FROM records WHERE trace_id = '{trace}'")
    assert rows and "secret-internal-detail" in json.loads(rows[0][0])["error"]
    assert out["profiler"] == (0, ""), out["profiler"]
    assert out["rejected"].get(("fraud", "schema_violation"), 0) >= 40 + 3
    assert out["canary"].schema_violations == 0 and out["champion"].schema_violations == 0
    assert out["health"][0] == 200 and out["health"][1]["status"] == "ok"
