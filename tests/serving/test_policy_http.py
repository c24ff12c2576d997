"""Only an admin key changes a gate policy over HTTP; viewers read it; with authentication off nobody may."""

import aiohttp

from tests.gate.test_run import SPEC, gold_frame  # noqa: F401  (fixture)
from tests.serving.test_e2e import _run, _with_server
from tether.registry import Registry
from tether.serving.auth import create_key


def test_the_gate_policy_over_http_obeys_roles(settings, project, gold_frame):  # noqa: F811
    gold = project.root / "data" / "gold.parquet"
    gold_frame.head(3000).to_parquet(gold, index=False)
    with Registry.open(settings) as reg:
        digest = reg.add_data(gold).digest
        keys = {
            role: create_key(reg.store.db, role, role, reg.clock.now())[1] for role in ("viewer", "deployer", "admin")
        }
    spec = {**SPEC, "gold": [digest]}

    async def body(server, s):
        url = f"{server.url}/v1/models/fraud/gate-policy"
        out = {}
        for role, secret in keys.items():
            h = {"Authorization": f"Bearer {secret}"}
            async with s.put(url, json={"spec": spec, "reason": f"by {role}"}, headers=h) as r:
                out[role] = (r.status, await r.json())
        async with s.get(url, headers={"Authorization": f"Bearer {keys['viewer']}"}) as r:
            out["read"] = (r.status, await r.json())
        async with s.put(url, data=b"{", headers={"Authorization": f"Bearer {keys['admin']}"}) as r:
            out["malformed"] = r.status
        return out

    out = _run(_with_server(settings, body, auth=True))
    assert out["viewer"][0] == 403 and out["deployer"][0] == 403, out
    assert out["admin"][0] == 201 and out["admin"][1]["role"] == "admin" and out["admin"][1]["actor"] == "admin"
    assert out["read"][0] == 200 and out["read"][1]["spec"]["gold"] == [digest]
    assert out["malformed"] == 400

    async def no_auth(server, s):
        async with s.put(f"{server.url}/v1/models/fraud/gate-policy", json={"spec": spec, "reason": "x"}) as r:
            return r.status

    assert _run(_with_server(settings, no_auth, auth=False)) == 403
    assert aiohttp
