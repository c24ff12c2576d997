"""The gateway's side of the audit log: requests await their record's durability, sharing writes and fsyncs.

`AuditSink.record` queues a record and waits; one task takes everything queued, appends it with one
`AuditLog.append_many` in a worker thread (one write, one fsync for the whole batch) and wakes every waiter.
While a batch is on its way to disk the next one gathers, so under load the cost per request is a fraction of
an fsync. A request is answered only after its record is on disk: an acknowledged prediction is never missing
from the trail. `seal_every` seals the log on a timer (Parquet segment, Merkle leaves, signed checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from tether.audit.log import AuditLog, AuditRecord, apply_policy, digest_of

log = logging.getLogger("tether.audit")


class AuditSink:
    def __init__(
        self,
        audit: AuditLog,
        *,
        policy: str = "full",
        redact: tuple[str, ...] = (),
        before_seal: Callable[[], object] | None = None,
    ) -> None:
        apply_policy({}, policy, redact)  # refuse an unknown policy at start, not on the first request
        self.log = audit
        self.policy, self.redact = policy, redact
        self.before_seal = before_seal
        self._queue: list[tuple[AuditRecord, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self.batches = 0

    def payload(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        return apply_policy(payload, self.policy, self.redact, self.log.secret)

    def digest(self, value: Any) -> str:
        """An input's or output's digest, keyed with the store's audit secret (see `digest_of`)."""
        return digest_of(value, self.log.secret)

    async def record(self, rec: AuditRecord) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((rec, fut))
        self._wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                seqs = await asyncio.to_thread(self.log.append_many, [r for r, _ in batch])
            except Exception as e:  # the disk refused: nobody is told their record is safe
                log.exception("audit log append failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            for (_, fut), seq in zip(batch, seqs, strict=True):
                if not fut.done():
                    fut.set_result(seq)

    async def seal_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(self._seal)
            except Exception:
                log.exception("sealing the audit log failed; the records stay in the write-ahead log")

    async def close(self) -> None:
        """Write what is still queued (the batcher is stopped by now), seal, close."""
        batch, self._queue = self._queue, []
        if batch:
            seqs = await asyncio.to_thread(self.log.append_many, [r for r, _ in batch])
            for (_, fut), seq in zip(batch, seqs, strict=True):
                if not fut.done():
                    fut.set_result(seq)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._seal)
        self.log.close()

    def _seal(self) -> None:
        if self.before_seal is not None:
            self.before_seal()  # decisions recorded elsewhere join the trail in the same segment
        self.log.seal()
