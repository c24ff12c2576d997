"""Dynamic batching in the instance: concurrent requests run together, and each still gets exactly the answer
(and an error of its own) it would get alone; requests of different shapes never share a batch."""

import asyncio

import orjson
import pandas as pd
import pytest

from tether.registry import Registry
from tether.serving.batcher import Batcher, signature


@pytest.fixture
def fraud(settings, project):
    with Registry.open(settings) as reg:
        mv = project.register(reg)
        model = reg.load(mv.id)
        records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(300).to_dict("records")
        yield model, records


def _alone(model, records):
    return orjson.loads(model.predict(pd.DataFrame.from_records(records)).to_json(orient="records"))


def test_concurrent_requests_are_batched_and_each_answer_is_its_own(fraud):
    model, records = fraud
    batcher = Batcher(model, max_records=64)
    requests = [records[i : i + 1] for i in range(200)] + [records[200:203], records[203:210]]

    async def run():
        return await asyncio.gather(*(batcher.predict(r) for r in requests))

    answers = asyncio.run(run())
    assert batcher.batches < len(requests) / 5  # batched: far fewer model calls than requests
    for req, (status, body, service) in zip(requests, answers, strict=True):
        assert status == 200 and service > 0
        assert orjson.loads(body)["outputs"] == _alone(model, req)  # exactly what it would get alone


def test_requests_of_another_shape_run_apart_and_keep_their_dtypes(fraud):
    model, records = fraud
    a = dict(records[0])
    b = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in records[1].items()}
    c = {k: (None if i == 0 else v) for i, (k, v) in enumerate(records[2].items())}
    assert len({signature([a]), signature([b]), signature([c])}) == 3
    assert signature([a, b]) is None  # records that differ within a request: it runs alone
    batcher = Batcher(model)

    async def run():
        return await asyncio.gather(*(batcher.predict([r]) for r in (a, b, c, a, b)))

    for rec, (status, body, _) in zip((a, b, c, a, b), asyncio.run(run()), strict=True):
        alone = Batcher(model)
        assert (status, body) == asyncio.run(alone.predict([rec]))[:2]


def test_a_bad_request_fails_alone_with_its_own_error(fraud):
    model, records = fraud
    batcher = Batcher(model)
    bad = {k: v for k, v in records[0].items() if k != "amount"}  # lacks a column the model needs

    async def run():
        good = [batcher.predict([r]) for r in records[:20]]
        return await asyncio.gather(*good[:10], batcher.predict([bad]), *good[10:])

    answers = asyncio.run(run())
    statuses = [a[0] for a in answers]
    assert statuses[10] == 422 and b"lacks column(s) ['amount']" in answers[10][1], answers[10]
    assert statuses[:10] + statuses[11:] == [200] * 20


class Poisoned:
    """The fraud model, failing on any frame with an hour of 99 (a value of the right type the model chokes on)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def predict(self, frame):
        self.calls += 1
        if (frame["hour"] == 99).any():
            raise ValueError("hour 99 does not exist")
        return self.model.predict(frame)


def test_a_batch_that_fails_is_run_again_one_request_at_a_time(fraud):
    model, records = fraud
    poisoned = Poisoned(model)
    batcher = Batcher(poisoned)
    bad = dict(records[5], hour=99)
    requests = [[r] for r in records[:5]] + [[bad]] + [[r] for r in records[6:12]]

    async def run():
        return await asyncio.gather(*(batcher.predict(r) for r in requests))

    answers = asyncio.run(run())
    assert answers[5][0] == 500 and b"hour 99 does not exist" in answers[5][1]
    for req, (status, body, _) in zip(requests[:5] + requests[6:], answers[:5] + answers[6:], strict=True):
        assert status == 200 and orjson.loads(body)["outputs"] == _alone(model, req)


def test_batching_off_runs_each_request_alone(fraud):
    model, records = fraud
    batcher = Batcher(model, max_records=1)

    async def run():
        return await asyncio.gather(*(batcher.predict([r]) for r in records[:10]))

    asyncio.run(run())
    assert batcher.batches == 10
