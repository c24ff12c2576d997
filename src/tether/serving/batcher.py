"""Dynamic batching in a model instance: the requests that arrive while the model is busy run as one batch.

A one-record prediction spends most of its time in fixed costs (a pandas frame built, the pipeline's steps
called once each), so an instance that runs requests one at a time serves a few dozen per second however many
wait. Serving stacks batch concurrent requests (Triton's dynamic batcher, Ray Serve's ``@serve.batch``,
MLServer's adaptive batching); tether does the same, without a timer: the model runs in a worker thread, and
every request that arrived meanwhile joins the next batch (up to ``max_records`` records). An idle instance
runs a lone request at once, so a single client waits no longer than before; a busy one amortises the fixed
costs over the queue.

Answers stay exactly what the request would get alone:

* only requests of one *signature* (the same fields, in the same order, with values of the same Python types,
  in every record) share a batch, so every column's dtype in the batch frame is the one the request alone would
  give (a ``None`` or a float among integers would change it otherwise);
* each request gets its own rows of the output, and its service time is the time of the batch that served it
  (the wait before its batch started is queueing, not service, as the latency guardrail wants);
* a batch that fails is run again one request at a time, so one bad request fails alone, with its own error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tether.core import TetherError
from tether.registry import LoadedModel

#: What one request gets: (HTTP status, body, service seconds).
Answer = tuple[int, bytes, float]


def signature(records: list[dict[str, Any]]) -> tuple[tuple[str, type], ...] | None:
    """The fields and value types every record shares, in order; None if the records differ (run alone)."""
    if not records or not isinstance(records[0], dict):
        return None
    first = tuple((k, type(v)) for k, v in records[0].items())
    for r in records[1:]:
        if not isinstance(r, dict) or tuple((k, type(v)) for k, v in r.items()) != first:
            return None
    return first


@dataclass
class _Job:
    records: list[dict[str, Any]]
    key: tuple[tuple[str, type], ...] | None
    future: asyncio.Future[Answer] = field(repr=False)


class Batcher:
    def __init__(self, model: LoadedModel, *, max_records: int = 64) -> None:
        self.model = model
        self.max_records = max(1, max_records)
        self._pending: deque[_Job] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0
        self.requests = 0

    async def predict(self, records: list[dict[str, Any]]) -> Answer:
        job = _Job(records, signature(records), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await job.future

    def _next_batch(self) -> list[_Job]:
        first = self._pending.popleft()
        batch, n = [first], len(first.records)
        if first.key is None or self.max_records == 1:
            return batch
        others: deque[_Job] = deque()
        while self._pending and n < self.max_records:
            job = self._pending.popleft()
            if job.key == first.key and n + len(job.records) <= self.max_records:
                batch.append(job)
                n += len(job.records)
            else:
                others.append(job)
        self._pending.extendleft(reversed(others))  # the rest keep their order
        return batch

    async def _drain(self) -> None:
        while self._pending:
            batch = self._next_batch()
            try:
                answers = await asyncio.to_thread(self._run, [j.records for j in batch])
            except BaseException as e:  # cancelled at shutdown: nobody waits on an answer that never comes
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e if isinstance(e, Exception) else RuntimeError("stopped"))
                raise
            self.batches += 1
            self.requests += len(batch)
            for job, answer in zip(batch, answers, strict=True):
                if not job.future.done():
                    job.future.set_result(answer)

    def _run(self, batch: list[list[dict[str, Any]]]) -> list[Answer]:
        if len(batch) == 1:
            return [self._alone(batch[0])]
        started = time.perf_counter()
        try:
            out = self.model.predict(pd.DataFrame.from_records([r for records in batch for r in records]))
        except Exception:  # one request's fault, perhaps: each runs alone and gets its own answer
            return [self._alone(records) for records in batch]
        bodies, at = [], 0
        for records in batch:
            part = out.iloc[at : at + len(records)]
            at += len(records)
            bodies.append(b'{"outputs":' + part.to_json(orient="records").encode() + b"}")
        service = time.perf_counter() - started
        return [(200, body, service) for body in bodies]

    def _alone(self, records: list[dict[str, Any]]) -> Answer:
        started = time.perf_counter()
        try:
            out = self.model.predict(pd.DataFrame.from_records(records))
            body = b'{"outputs":' + out.to_json(orient="records").encode() + b"}"
            status = 200
        except TetherError as e:
            body, status = _error(str(e)), e.http_status
        except (KeyError, TypeError) as e:
            body, status = _error(f"bad request: {e}"), 400
        except Exception as e:  # a model failure is the instance's 500, reported to the gateway
            body, status = _error(f"{type(e).__name__}: {e}"), 500
        return status, body, time.perf_counter() - started


def _error(message: str) -> bytes:
    import orjson

    return orjson.dumps({"error": message})
