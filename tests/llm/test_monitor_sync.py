"""Every replica applies a model's stored monitor settings from its first request, and follows changes to them.

They used to be read only by the leader's monitor loop: until its first tick, and forever on a gateway replica
that never leads, a model's LLM interactions were sampled and graded with the defaults, even with its evaluation
turned off (and the first sample loaded the MiniLM grader into the serving process, which cost the gateway's
p99 tens of milliseconds while it loaded). This runs a ``--role gateway`` replica, which never decides.
"""

import asyncio
import json

import pytest

from tests.llm.conftest import register_llm
from tests.llm.test_evals_e2e import spec_for
from tests.openai_stub import scripted_openai
from tether.api.server import Server
from tether.monitor.config import MonitorConfig
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


async def _ask(server, n):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for i in range(n):
            body = {"model": "helpdesk", "messages": [{"role": "user", "content": f"question {i}"}]}
            async with s.post(server.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200, await r.text()


def test_a_gateway_replica_applies_the_stored_evaluation_settings_from_its_first_request(settings, llm_code, tmp_path):
    with scripted_openai() as backend:
        backend.script = lambda body, n: json.dumps({"answer": "Your ticket is open.", "ticket": n})
        spec = spec_for(backend.url, "app")
        spec_file = tmp_path / "app.yaml"
        spec_file.write_text(json.dumps(spec))
        with Registry.open(settings) as reg:
            mv = register_llm(reg, "helpdesk", llm_code, spec_file, spec)
            Controller(reg, MetricStore()).deploy("helpdesk", mv.ref, reason="first", force=True)
            Watch(reg).set_config("helpdesk", MonitorConfig.model_validate({"llm": {"enabled": False}}))

        async def body(server):
            assert not server.replica.decides  # no monitor loop here: the settings come with the routing refresh
            assert server.monitor_configs["helpdesk"].llm.enabled is False  # read before the first request
            await _ask(server, 20)
            off = (sum(server.llm.sampler.seen.values()), dict(server.llm.grading._loaded))

            with Registry.open(settings) as reg:  # turned on while the replica runs: the next refresh applies it
                Watch(reg).set_config("helpdesk", MonitorConfig.model_validate({"llm": {"sampling": {"rate": 1.0}}}))
            server.refresh()
            await _ask(server, 5)
            return off, sum(server.llm.sampler.seen.values())

        async def run():
            server = Server(settings, port=0, auth=False, role="gateway", tick_seconds=3600, refresh_seconds=3600)
            await server.start()
            try:
                return await body(server)
            finally:
                await server.stop()

        (seen_off, loaded_off), seen_on = asyncio.run(run())
    assert seen_off == 0 and loaded_off == {}, "a model with its evaluation off was sampled or loaded a grader"
    assert seen_on == 5
