"""The gateway's side of the audit log: requests await their record's durability, sharing writes and fsyncs.

`AuditSink.record` queues a record and waits. Once per turn of the event loop everything queued goes to the
write-ahead log in one `AuditLog.submit` (one write, one fsync for the batch, done by the log's writer
thread), and the writer hands the sequence numbers back with one ``call_soon_threadsafe``: loop, writer, loop,
with no worker thread or task in between. While a batch is on its way to disk the next one gathers, so under
load the cost per request is a fraction of an fsync. A request is answered only after its record is on disk:
an acknowledged prediction is never missing from the trail. While a seal swaps write-ahead files (a moment
every few seconds) a batch goes through `AuditLog.append_many` in a worker thread instead, which waits for
the new file. `seal_every` seals the log on a timer (Parquet segment, Merkle leaves, signed checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from tether.audit.log import AuditLog, AuditRecord, apply_policy, digest_of

log = logging.getLogger("tether.audit")

_Batch = list[tuple[AuditRecord, "asyncio.Future[int]"]]


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
        self._queue: _Batch = []
        self._unsettled = 0  # batches handed to the log whose waiters have not been told yet
        self._settled = asyncio.Event()  # set whenever that count is back to nought (what `close` waits for)
        self._settled.set()
        self._fallbacks: set[asyncio.Future[None]] = set()  # the tasks writing batches during a seal's swap
        self.batches = 0

    def payload(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        return apply_policy(payload, self.policy, self.redact, self.log.secret)

    def digest(self, value: Any) -> str:
        """An input's or output's digest, keyed with the store's audit secret (see `digest_of`)."""
        return digest_of(value, self.log.secret)

    async def record(self, rec: AuditRecord) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush, loop)  # after every request this turn of the loop has queued
        self._queue.append((rec, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return

        def durable(result: range | BaseException) -> None:  # on the writer thread
            loop.call_soon_threadsafe(self._settle, batch, result)

        self._unsettled += 1
        self._settled.clear()
        try:
            queued = self.log.submit([r for r, _ in batch], durable)
        except Exception as e:  # closed, or a disk that cannot be written at all
            self._settle(batch, e)
            return
        if queued:
            return
        task = asyncio.ensure_future(self._append_waiting(batch))
        self._fallbacks.add(task)
        task.add_done_callback(self._fallbacks.discard)

    async def _append_waiting(self, batch: _Batch) -> None:
        try:
            seqs = await asyncio.to_thread(self.log.append_many, [r for r, _ in batch])
        except Exception as e:
            self._settle(batch, e)
            return
        self._settle(batch, range(seqs[0], seqs[-1] + 1))

    def _settle(self, batch: _Batch, result: range | BaseException) -> None:
        """Tell a batch's waiters their sequence numbers, or the error that kept their records off the disk
        (nobody is told a record is safe that is not)."""
        if isinstance(result, BaseException):
            log.error("audit log append failed: %s", result)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(result)
        else:
            self.batches += 1
            for (_, fut), seq in zip(batch, result, strict=True):
                if not fut.done():
                    fut.set_result(seq)
        self._unsettled -= 1
        if not self._unsettled:
            self._settled.set()

    async def seal_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(self._seal)
            except Exception:
                log.exception("sealing the audit log failed; the records stay in the write-ahead log")

    async def close(self) -> None:
        """Write what is still queued, wait for it, seal, close."""
        self._flush(asyncio.get_running_loop())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout=30)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._seal)
        self.log.close()

    def _seal(self) -> None:
        if self.before_seal is not None:
            self.before_seal()  # decisions recorded elsewhere join the trail in the same segment
        self.log.seal()
