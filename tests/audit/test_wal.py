"""The write-ahead log: acknowledged means on disk, torn tails are cut and reported, damage is named."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tether.audit.wal import HEADER, WriteAheadLog, scan
from tether.core import IntegrityError


def test_concurrent_appends_share_fsyncs_and_come_back_in_order(tmp_path):
    path = tmp_path / "a.wal"
    with WriteAheadLog(path) as wal:
        got = []

        def writer(k):
            for i in range(300):
                got.append((wal.append(f"{k}:{i}".encode()), k, i))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fsyncs = wal.fsyncs
    records = dict(scan(path)[0])
    assert sorted(records) == list(range(2400))  # contiguous, each exactly once
    for seq, k, i in got:
        assert records[seq] == f"{k}:{i}".encode()
    assert fsyncs < 2400, "group commit: concurrent appenders share fsyncs"
    with WriteAheadLog(path) as again:  # reopening continues the sequence
        assert again.append(b"next") == 2400


def test_a_torn_tail_is_cut_and_reported_and_new_records_follow(tmp_path):
    path = tmp_path / "t.wal"
    with WriteAheadLog(path) as wal:
        wal.append_many([b"one", b"two", b"three"])
    whole = path.read_bytes()
    path.write_bytes(whole + HEADER.pack(b"TW", 100, 0, 3) + b"only part of it")
    with WriteAheadLog(path) as wal:
        assert wal.opened.records == 3 and wal.opened.torn_bytes == HEADER.size + 15
        assert wal.append(b"four") == 3
    assert [p for _, p in scan(path)[0]] == [b"one", b"two", b"three", b"four"]


def test_damage_before_the_end_is_named_with_how_far_the_log_is_good(tmp_path):
    path = tmp_path / "d.wal"
    with WriteAheadLog(path) as wal:
        wal.append_many([b"a" * 10, b"b" * 10, b"c" * 10])
    data = bytearray(path.read_bytes())
    data[HEADER.size + 10 + HEADER.size + 3] ^= 0xFF  # inside the second payload
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"record 1 at byte 28 fails its checksum \(after 1 good records\)"):
        scan(path)
    data = bytearray(path.read_bytes())
    data[0] = ord("X")
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"no frame at byte 0 \(after 0 good records\)"):
        WriteAheadLog(path)


def test_records_over_the_limit_are_refused_before_anything_is_written(tmp_path):
    with WriteAheadLog(tmp_path / "l.wal") as wal:
        with pytest.raises(ValueError, match="over the"):
            wal.append_many([b"ok", b"x" * (64 << 20 + 1)])
        assert wal.next_sequence == 0


CHILD = """
import sys
from tether.audit.wal import WriteAheadLog
wal = WriteAheadLog(sys.argv[1])
i = 0
while True:
    seq = wal.append(b"record %d" % i)
    print(seq, flush=True)  # acknowledged: on disk
    i += 1
"""


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_record(tmp_path):
    path = tmp_path / "k.wal"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    acked = []
    deadline = time.monotonic() + 30
    while len(acked) < 2000 and time.monotonic() < deadline:
        acked.append(int(child.stdout.readline()))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with WriteAheadLog(path) as wal:  # reopening cuts a torn tail, if any
        on_disk = dict(wal.records())
    assert all(on_disk[s] == b"record %d" % s for s in acked)
    assert sorted(on_disk) == list(range(len(on_disk)))


class FlakyDisk:
    """The WAL's file, writing only part of what it is given (as a nearly full disk does), or refusing."""

    def __init__(self, f, *, short=0, refuse=0):
        self.f, self.short, self.refuse = f, short, refuse

    def write(self, data):
        if self.refuse:
            self.refuse -= 1
            self.f.write(bytes(data[: len(data) // 3]))  # a torn frame left behind, then the error
            raise OSError(28, "No space left on device")
        if self.short:
            self.short -= 1
            return self.f.write(bytes(data[: max(1, len(data) // 2)]))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_short_write_is_finished_not_acknowledged_half_done(tmp_path):
    path = tmp_path / "a.wal"
    with WriteAheadLog(path) as wal:
        wal._file = FlakyDisk(wal._file, short=3)
        assert [wal.append(b"x" * 1000) for _ in range(3)] == [0, 1, 2]
    assert [seq for seq, _ in scan(path)[0]] == [0, 1, 2] and scan(path)[1].torn_bytes == 0


def test_a_full_disk_fails_the_appends_in_flight_and_the_log_works_again_when_space_returns(tmp_path):
    path = tmp_path / "a.wal"
    with WriteAheadLog(path) as wal:
        assert wal.append(b"before") == 0
        wal._file = FlakyDisk(wal._file, refuse=2)
        for _ in range(2):
            with pytest.raises(RuntimeError, match="No space left"):
                wal.append(b"refused")  # not acknowledged: the caller answers 503
        assert wal.append(b"after") == 1  # the refused ones' sequence numbers are given out again
        assert wal.write_failures == 2
    records, report = scan(path)
    assert [(s, p) for s, p in records] == [(0, b"before"), (1, b"after")] and report.torn_bytes == 0


def test_a_kept_log_hands_back_what_is_on_disk_and_nothing_once_an_append_came_without_objects(tmp_path):
    with WriteAheadLog(tmp_path / "a.wal", first_sequence=5, keep=True) as wal:
        wal.append_many([b"x", b"y"], ["X", "Y"])
        wal.append_many([b"z"], ["Z"])
    assert wal.kept() == (5, [b"x", b"y", b"z"], ["X", "Y", "Z"])
    with WriteAheadLog(tmp_path / "b.wal", keep=True) as wal:
        wal.append_many([b"x"], ["X"])
        wal.append(b"y")  # no object: the file must be read back
    assert wal.kept() is None
    with WriteAheadLog(tmp_path / "a.wal", keep=True) as wal:  # reopened over frames on disk: nothing in memory
        wal.append_many([b"w"], ["W"])
    assert wal.kept() is None
