"""A write-ahead log with group commit: a record is acknowledged only once it is on disk.

Frames: ``magic (2 bytes "TW") | length u32 | crc32 u32 | sequence u64 | payload``, little-endian. Appenders from
any thread hand their payloads to one writer thread, which writes everything pending in one ``write`` and
makes it durable with one ``fsync`` before waking them: under load many appends share an fsync (group
commit), so throughput follows the disk's fsync rate times the batch size, while each acknowledgement still
means "on disk". Opening an existing log scans it: a torn last frame (a crash mid-write, never acknowledged)
is cut off and reported; a damaged frame before the end is an error that names its offset and how many
records before it are good, because silently dropping acknowledged records is the one thing a log must not do.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core import IntegrityError

log = logging.getLogger("tether.audit")

MAGIC = b"TW"
HEADER = struct.Struct("<2sIIQ")  # magic, length, crc32, sequence
MAX_RECORD = 64 << 20

#: Told, from the writer thread, the sequence numbers of records now on disk, or why they never got there.
Durable = Callable[[range | BaseException], object]


@dataclass(frozen=True)
class ScanReport:
    records: int
    next_sequence: int
    valid_bytes: int
    torn_bytes: int  # cut off at the end: a frame whose write never completed (never acknowledged)


def scan(path: Path) -> tuple[list[tuple[int, bytes]], ScanReport]:
    """Every (sequence, payload) in the log, and how it ends. Raises IntegrityError on damage before the end."""
    data = path.read_bytes() if path.exists() else b""
    out: list[tuple[int, bytes]] = []
    pos, expected = 0, None
    while pos < len(data):
        if len(data) - pos < HEADER.size:
            break  # a torn header at the end
        magic, length, crc, seq = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD:
            raise IntegrityError(
                f"{path}: no frame at byte {pos} (after {len(out)} good records)",
                expected="a frame header",
                actual=data[pos : pos + HEADER.size].hex(),
                hint="the write-ahead log is damaged; restore it from a copy or cut it at that byte knowingly",
            )
        if end > len(data):
            break  # a torn payload at the end
        payload = data[pos + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            if end == len(data):
                break  # the last frame, half on disk: never acknowledged
            raise IntegrityError(
                f"{path}: record {seq} at byte {pos} fails its checksum (after {len(out)} good records)",
                expected=f"crc32 {crc:08x}",
                actual=f"crc32 {zlib.crc32(payload):08x}",
                hint="the write-ahead log is damaged; restore it from a copy",
            )
        if expected is not None and seq != expected:
            raise IntegrityError(
                f"{path}: record {seq} at byte {pos} follows {expected - 1}: a record is missing",
                expected=str(expected),
                actual=str(seq),
            )
        out.append((seq, payload))
        expected = seq + 1
        pos = end
    next_seq = out[-1][0] + 1 if out else 0
    return out, ScanReport(len(out), next_seq, pos, len(data) - pos)


class WriteAheadLog:
    """``keep=True`` also keeps, in memory, each durable record with the object the caller made it from, so the
    file's owner can seal it without reading it back (`kept`); a log reopened over frames a crash left behind
    keeps nothing, and is read back."""

    def __init__(self, path: str | Path, *, first_sequence: int = 0, keep: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, self.opened = scan(self.path)
        if self.opened.torn_bytes:
            with open(self.path, "r+b") as f:  # drop the torn tail so new frames follow the last good one
                f.truncate(self.opened.valid_bytes)
                os.fsync(f.fileno())
        self._next = self.opened.next_sequence if records else first_sequence
        self._first = self._next
        self._keep = keep and not records
        # Two flat lists each (no tuple per record: a container per record made the collector's passes cost
        # more than the seal saved).
        self._pending_kept: tuple[list[bytes], list[Any]] = ([], [])
        self._kept: tuple[list[bytes], list[Any]] = ([], [])
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._durable = self._next - 1  # the highest sequence known to be on disk
        self._closed = False
        self._error: BaseException | None = None
        #: Set when a failed write could not even be cut off the file: the log refuses from then on. (After any
        #: other failed write, the appends queued before it fail, none of them acknowledged, and their sequence
        #: numbers are given out again, so the file never has a gap or a torn frame.)
        self._broken = False
        self._waiting: list[tuple[range, Durable]] = []  # submitted, not yet on disk: whom to tell, in order
        self._size = self.opened.valid_bytes  # the torn tail, if any, was cut above
        self.write_failures = 0
        self.fsyncs = 0
        self._writer = threading.Thread(target=self._run, name=f"wal-{self.path.name}", daemon=True)
        self._writer.start()

    def append(self, payload: bytes) -> int:
        """Append one record; returns its sequence number once it is on disk."""
        return self.append_many([payload])[-1]

    def append_many(self, payloads: list[bytes], objects: list[Any] | None = None) -> list[int]:
        """Append records in order; returns their sequence numbers once all are on disk. ``objects``, one per
        payload, are what `kept` hands back beside them (with ``keep``)."""
        done = threading.Event()
        outcome: list[range | BaseException] = []

        def finished(result: range | BaseException) -> None:
            outcome.append(result)
            done.set()

        self.submit(payloads, objects, finished)
        done.wait()
        if isinstance(outcome[0], BaseException):
            raise RuntimeError(f"the write-ahead log could not write: {outcome[0]}") from outcome[0]
        return list(outcome[0])

    def submit(self, payloads: list[bytes], objects: list[Any] | None, done: Durable) -> None:
        """Queue records without waiting: ``done`` is called once, from the writer thread, with their sequence
        numbers once all are on disk, or with the error that kept them off it (none of them is then on disk,
        and their numbers are given out again). Raises at once, calling nothing, when the log is closed or
        cannot write at all. This is how an event loop waits for durability without a thread of its own in
        between: ``done`` hands the answer back with ``call_soon_threadsafe``."""
        for p in payloads:
            if len(p) > MAX_RECORD:
                raise ValueError(f"a record of {len(p)} bytes is over the {MAX_RECORD}-byte limit")
        if objects is not None and len(objects) != len(payloads):
            raise ValueError(f"{len(objects)} objects for {len(payloads)} payloads")
        with self._cond:
            if self._closed:
                raise RuntimeError("the write-ahead log is closed")
            if self._broken:  # could not even undo a failed write
                raise RuntimeError(f"the write-ahead log could not write: {self._error}") from self._error
            first = self._next
            for p in payloads:
                self._pending.append(HEADER.pack(MAGIC, len(p), zlib.crc32(p), self._next) + p)
                self._next += 1
            if self._keep and objects is None:
                self._keep = False  # an append without its objects: this file will be read back instead
            if self._keep:
                self._pending_kept[0].extend(payloads)
                self._pending_kept[1].extend(objects)  # type: ignore[arg-type]  # not None here
            self._waiting.append((range(first, self._next), done))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, []
                kept, self._pending_kept = self._pending_kept, ([], [])
                waiting, self._waiting = self._waiting, []
                last = self._next - 1
            data = b"".join(batch)
            try:
                # A raw write may write only part of the bytes (a disk nearly full does that) without an error:
                # go on until all are written or the disk says why not; fsync only then.
                view = memoryview(data)
                while view:
                    n = self._file.write(view)
                    if not n:
                        raise OSError(errno.ENOSPC, "the disk took no more bytes")
                    view = view[n:]
                os.fsync(self._file.fileno())
                self.fsyncs += 1
            except OSError as e:  # a full or failing disk: every waiting appender hears it, none is acknowledged
                self._undo(e, waiting)
                continue
            with self._cond:
                self._size += len(data)
                self._durable = last
                self._kept[0].extend(kept[0])
                self._kept[1].extend(kept[1])
            _tell(waiting, None)

    def _undo(self, error: OSError, waiting: list[tuple[range, Durable]]) -> None:
        """After a failed write: cut the file back to its last durable byte, fail every append not yet durable
        (the batch and those queued behind it) and give their sequence numbers out again. The next append tries
        the disk afresh, so the log works again as soon as space returns."""
        with self._cond:
            self.write_failures += 1
            self._error = error
            self._pending = []
            self._pending_kept = ([], [])
            waiting, self._waiting = waiting + self._waiting, []
            self._next = self._durable + 1
            try:
                os.ftruncate(self._file.fileno(), self._size)
                os.fsync(self._file.fileno())
            except OSError as e:  # the file cannot be made whole again: refuse from now on, never write after junk
                self._error = e
                self._broken = True
        _tell(waiting, error)

    @property
    def next_sequence(self) -> int:
        return self._next

    def kept(self) -> tuple[int, list[bytes], list[Any]] | None:
        """(first sequence, payloads, objects): every record on disk in this file, in sequence order, once the log
        is closed; None when some are not in memory (a log reopened after a crash, or opened without ``keep``):
        read the file instead."""
        with self._cond:
            if not (self._closed and self._keep) or len(self._kept[0]) != self._next - self._first:
                return None
            return self._first, self._kept[0], self._kept[1]  # in order: numbers are given and written in order

    def records(self) -> Iterator[tuple[int, bytes]]:
        """What is on disk now (acknowledged records), in order."""
        yield from scan(self.path)[0]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join()
        self._file.close()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tell(waiting: list[tuple[range, Durable]], error: BaseException | None) -> None:
    for seqs, done in waiting:
        try:
            done(seqs if error is None else error)
        except Exception:  # one waiter's callback never keeps the others, or the writer, from going on
            log.exception("a write-ahead log waiter's callback failed")
