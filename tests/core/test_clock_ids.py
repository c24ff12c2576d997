from datetime import UTC, datetime

import pytest

from tether.core import ManualClock, SystemClock, TraceIdGenerator, trace_id_time_ms


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    t0 = clock.now()
    assert clock.now() == t0
    clock.sleep(6 * 3600)
    assert (clock.now() - t0).total_seconds() == 6 * 3600
    assert clock.monotonic() == 6 * 3600


def test_manual_clock_refuses_to_go_back_or_be_naive():
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone"):
        ManualClock(datetime(2026, 1, 1))


def test_system_clock_is_timezone_aware():
    assert SystemClock().now().tzinfo is not None


def test_trace_ids_sort_by_time_and_are_unique_within_a_millisecond():
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    gen = TraceIdGenerator(clock)
    ids = [gen.new() for _ in range(10_000)]  # all in the same (frozen) millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    clock.advance(0.002)
    later = gen.new()
    assert later > ids[-1]


def test_trace_id_layout_is_uuid7_and_w3c_compatible():
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))
    tid = TraceIdGenerator(clock).new()
    assert len(tid) == 32
    assert int(tid, 16) != 0
    assert tid[12] == "7"  # version nibble
    assert int(tid[16], 16) >> 2 == 0b10  # variant bits
    assert trace_id_time_ms(tid) == int(clock.now().timestamp() * 1000)
