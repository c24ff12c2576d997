"""The url runtime against a KServe V2 endpoint (a small V2 server run by the test on 127.0.0.1)."""

import asyncio

import aiohttp
import pandas as pd
import pytest
from aiohttp import web

from tests.cli.test_cli import tether  # noqa: F401  (fixture)
from tether.api.server import Server
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore


def _v2_app(seen):
    async def infer(request):
        body = await request.json()
        seen.append(request.match_info["name"])
        inputs = {i["name"]: i["data"] for i in body["inputs"]}
        n = len(inputs["amount"])
        score = [min(1.0, a / 1000) for a in inputs["amount"]]
        return web.json_response(
            {
                "model_name": request.match_info["name"],
                "outputs": [
                    {"name": "prediction", "shape": [n], "datatype": "INT64", "data": [int(s > 0.5) for s in score]},
                    {"name": "probability", "shape": [n], "datatype": "FP64", "data": score},
                ],
            }
        )

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    return app


@pytest.mark.slow
def test_a_version_served_by_a_kserve_v2_endpoint(tether, settings, project):  # noqa: F811
    reg = Registry.open(settings)
    v1 = project.register(reg)
    Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="x", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(4).to_dict("records")
    seen = []

    async def run():
        runner = web.AppRunner(_v2_app(seen))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        tether("endpoint", "set", "fraud/1", url, "--protocol", "kserve-v2", "--model-name", "fraud-v2")
        server = Server(settings, port=0, auth=False)
        await server.start()
        try:
            await server.wait_ready()
            assert server.runtime.local.running() == []  # no local process for this version
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{server.url}/v1/models/fraud/predict", json={"records": records}) as r,
            ):
                assert r.status == 200, await r.text()
                return await r.json()
        finally:
            await server.stop()
            await runner.cleanup()

    out = asyncio.run(run())
    assert seen == ["fraud-v2"]
    assert [o["probability"] for o in out["outputs"]] == [min(1.0, r["amount"] / 1000) for r in records]
    assert "local process" in tether("endpoint", "remove", "fraud/1")
    assert "unknown protocol" in tether("endpoint", "set", "fraud/1", "http://x", "--protocol", "grpc", expect=2)
    reg.close()
