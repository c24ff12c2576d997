"""The audit log: append, seal, verify; every kind of tampering is named; crashes lose nothing acknowledged."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tether.audit.log import AuditLog, AuditRecord, apply_policy, digest_of
from tether.audit.merkle import verify_inclusion
from tether.core import InvalidInputError, NotFoundError, SigningKey


@pytest.fixture
def keyed(settings):
    SigningKey.generate().save(settings.resolved_signing_key)
    return settings


def _record(i, kind="prediction"):
    inputs, outputs = {"amount": 10.0 + i, "country": "US"}, {"probability": i / 100}
    return AuditRecord(
        kind=kind,
        trace_id=f"trace-{i:05d}",
        at=datetime(2026, 11, 27, tzinfo=UTC) + timedelta(seconds=i),
        model="fraud",
        version_id="v" * 64,
        input_digest=digest_of(inputs),
        output_digest=digest_of(outputs),
        payload={"input": inputs, "output": outputs},
    )


def _filled(settings, n=50, seals=(20, 50)):
    with AuditLog(settings) as log:
        for i in range(n):
            log.append(_record(i, "prediction" if i % 5 else "alias"))
            if i + 1 in seals:
                log.seal()
        return log.root


def test_append_seal_verify_query_and_trace(keyed):
    root = _filled(keyed)
    with AuditLog(keyed) as log:
        report = log.verify()
        assert report.ok, report.problems
        assert (report.records, report.segments, report.checkpoints, report.verified_through) == (50, 2, 2, 49)
        names, rows = log.query("SELECT kind, count(*) AS n FROM records GROUP BY kind ORDER BY kind")
        assert names == ["kind", "n"] and rows == [("alias", 10), ("prediction", 40)]
        t = log.trace("trace-00007")
        assert t["proof_verifies"] and t["record"]["seq"] == 7 and t["checkpoint"]["tree_size"] == 50
        assert verify_inclusion(7, 50, bytes.fromhex(t["leaf"]), [bytes.fromhex(p) for p in t["proof"]],
                                bytes.fromhex(t["checkpoint"]["root"]))  # fmt: skip
        with pytest.raises(NotFoundError, match="no sealed audit record"):
            log.trace("nope")
        with pytest.raises(InvalidInputError, match="the audit query failed"):
            log.query("SELECT nonsense FROM records")
    assert len(list((root / "segments").glob("*.parquet"))) == 2


def _rewrite(path, change):
    rows = pq.read_table(path).to_pylist()
    rows = change(rows)
    schema = pq.read_schema(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda rows: [{**r, "payload": r["payload"].replace("US", "FR")} if r["seq"] == 3 else r for r in rows],
         "record 3 was changed"),
        (lambda rows: [r for r in rows if r["seq"] != 4], "record 5 where 4 was expected (missing)"),
        (lambda rows: [rows[1], rows[0], *rows[2:]], "record 1 where 0 was expected"),
        (lambda rows: [*rows[:6], {**rows[6], "trace_id": "slipped-in"}, *rows[6:]],
         "record 6 where 7 was expected (out of order or inserted)"),
    ],
)  # fmt: skip
def test_tampering_with_records_is_named(keyed, change, expected):
    root = _filled(keyed)
    _rewrite(sorted((root / "segments").glob("*.parquet"))[0], change)
    with AuditLog(keyed) as log:
        report = log.verify()
    assert not report.ok and any(expected in p for p in report.problems), report.problems
    assert any("no longer hash to its root" in p for p in report.problems) or "out of order" in expected
    assert report.records >= 49  # it went on past the first problem


def test_checkpoint_tampering_removal_and_a_wrong_key_are_named(keyed):
    root = _filled(keyed)
    cps = sorted((root / "checkpoints").glob("*.json"))
    cps[0].write_text(cps[0].read_text().replace('"tree_size": 20', '"tree_size": 19'))
    cps[1].unlink()
    with AuditLog(keyed) as log:
        problems = log.verify().problems
    assert any(
        "000000000020.json: the signature does not match" in p or "000000000020.json: its fields differ" in p
        for p in problems
    ), problems
    assert any("no checkpoint covers the last 50 records" in p for p in problems), problems
    SigningKey.generate().save(keyed.resolved_signing_key)  # someone else's key
    with AuditLog(keyed) as log:
        assert any("signed by another key" in p for p in log.verify().problems)


def test_a_corrupt_segment_is_reported_and_verification_goes_on(keyed):
    root = _filled(keyed)
    first = sorted((root / "segments").glob("*.parquet"))[0]
    first.write_bytes(b"not parquet at all")
    from tether.audit.verify import verify_log

    report = verify_log(root, SigningKey.load(keyed.resolved_signing_key).public_key_hex)
    assert any("is unreadable" in p for p in report.problems)
    assert report.segments == 2 and report.records == 30


def test_appends_during_seals_are_never_lost_or_duplicated(keyed):
    with AuditLog(keyed) as log:
        done = threading.Event()

        def sealer():
            while not done.is_set():
                log.seal()
                time.sleep(0.005)

        t = threading.Thread(target=sealer)
        t.start()
        seqs = []
        for i in range(400):
            seqs.append(log.append(_record(i)))
        done.set()
        t.join()
        log.seal()
        report = log.verify()
    assert report.ok and report.records == 400 and seqs == list(range(400)), report.problems


def test_a_read_during_a_seal_sees_it_whole_or_not_at_all(keyed):
    """A seal renames its segment into place, then signs the checkpoint naming it. A read between the two (a
    dashboard page in the writing process, the CLI beside it) used to find a segment no checkpoint names and
    fail as if it had been planted: a 500 on a loaded machine. Here the seal is held between the two steps."""
    with AuditLog(keyed) as log:
        log.append(_record(0))
        log.seal()
        log.append(_record(1))
        signing, sign = threading.Event(), threading.Event()
        real = log._checkpoint

        def held(segment):  # the segment is in place; its checkpoint waits for the readers to be in the window
            signing.set()
            assert sign.wait(30)
            real(segment)

        log._checkpoint = held
        sealer = threading.Thread(target=log.seal)
        sealer.start()
        assert signing.wait(30)
        with AuditLog(keyed) as beside:  # another process's view: not the writer
            assert not beside.writer
            polls = []
            real_checkpoints = beside.checkpoints

            def counted():
                polls.append(1)
                if len(polls) == 2:  # it has seen the unsigned newest segment and is waiting: let the seal finish
                    sign.set()
                return real_checkpoints()

            beside.checkpoints = counted
            seen_beside = beside.verified_segments()
        sealer.join(30)
        seen_here = log.verified_segments()  # under the seal's lock: after the seal, whole
    # Its first look found the newest segment unsigned (the seal was held), so it looked again: it waited.
    assert len(seen_beside) == len(seen_here) == 2 and len(polls) >= 2


def test_payload_policies():
    payload = {"input": {"name": "Ada", "amount": 3}, "output": {"p": 0.1}}
    assert apply_policy(payload, "full") == payload
    assert apply_policy(payload, "hashed") is None
    red = apply_policy(payload, "redact", ("name",))
    assert red["input"]["name"].startswith("redacted:") and red["input"]["amount"] == 3
    with pytest.raises(InvalidInputError, match="unknown payload policy"):
        apply_policy(payload, "some")
    with pytest.raises(InvalidInputError, match="unknown audit record kind"):
        AuditRecord(kind="guess", trace_id="t", at=datetime.now(UTC))


CHILD = """
import sys
from datetime import UTC, datetime
from tether.core import Settings
from tether.audit.log import AuditLog, AuditRecord
log = AuditLog(Settings(home=sys.argv[1], database_url="", blob_url=""))
i = 0
while True:
    seq = log.append(AuditRecord(kind="prediction", trace_id=f"t{i}", at=datetime.now(UTC), payload={"i": i}))
    print(seq, flush=True)
    i += 1
    if i % 300 == 0:
        log.seal()
"""


@pytest.mark.slow
def test_kill_9_while_logging_loses_nothing_acknowledged_and_the_log_verifies(keyed):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(keyed.home)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    acked = []
    deadline = time.monotonic() + 60
    while len(acked) < 1000 and time.monotonic() < deadline:
        acked.append(int(child.stdout.readline()))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with AuditLog(keyed) as log:  # recovery seals what the write-ahead files hold
        report = log.verify()
        _, rows = log.query("SELECT seq, trace_id FROM records ORDER BY seq")
    assert report.ok, report.problems
    seqs = [s for s, _ in rows]
    assert seqs == list(range(len(seqs))), "each record exactly once, in order"
    assert set(acked) <= set(seqs)
    assert all(t == f"t{s}" for s, t in rows)


def test_decisions_join_the_trail_once(keyed, project):
    from tether.audit.bridge import Bridge
    from tether.registry import Registry
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    with Registry.open(keyed) as reg:
        v1 = project.register(reg)
        reg.set_alias("fraud", "champion", v1.ref, reason="first", force=True)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="serve", force=True)
        with AuditLog(keyed) as log:
            assert Bridge(reg, log).sync() >= 1
            log.seal()
        with AuditLog(keyed) as log:  # a new bridge reads what is already on the trail: nothing twice
            assert Bridge(reg, log).sync() == 0
            _, rows = log.query("SELECT kind, model, version_id, payload FROM records ORDER BY seq")
            assert ("alias", "fraud", v1.id) in [r[:3] for r in rows]
            assert log.verify().ok


def test_hashed_and_redacted_values_are_keyed_digests_that_guessing_cannot_reverse(keyed):
    import hashlib

    import orjson

    email = "alice@example.com"
    with AuditLog(keyed) as log:
        secret = log.secret
    assert len(secret) == 32 and (keyed.resolved_signing_key.parent / "audit.secret").stat().st_mode & 0o077 == 0
    guess = hashlib.sha256(orjson.dumps(email)).hexdigest()
    assert digest_of(email, secret) != guess  # an unsalted hash of the guess no longer finds it
    red = apply_policy({"email": email, "amount": 3}, "redact", ("email",), secret)
    assert red["email"] != f"redacted:{guess[:16]}" and red["email"] == f"redacted:{digest_of(email, secret)[:16]}"
    with AuditLog(keyed) as again:
        assert again.secret == secret  # stable: digests stay checkable by whoever holds the store's secret


def test_a_seal_from_memory_equals_a_seal_from_the_write_ahead_log(keyed, tmp_path):
    """A running log seals the records it kept in memory; after a crash it decodes the write-ahead frames. Both
    must give the same segment, byte for byte in every column: times in other zones, microseconds of zero,
    payloads with nested keys out of order, unicode, tuples and no payload at all."""
    from datetime import timezone

    records = [
        AuditRecord(
            kind="prediction" if i % 3 else "llm",
            trace_id=f"t{i}",
            at=datetime(2026, 12, 6, 3, tzinfo=timezone(timedelta(hours=-5 if i % 2 else 9))) + timedelta(
                microseconds=0 if i % 4 == 0 else i * 7919),
            model="fraud",
            version_id=f"{i:064x}",
            payload=None if i % 5 == 0 else {"z": [1, 2.5, "é"], "a": {"y": (i, None), "b": True}},
        )
        for i in range(300)
    ]  # fmt: skip
    with AuditLog(keyed) as log:
        log.append_many(records)
        log.seal()
        from_memory = pq.read_table(log.segments()[0])
    other = keyed.model_copy(update={"home": tmp_path / "crashed"})
    SigningKey.load(keyed.resolved_signing_key).save(other.resolved_signing_key)
    log = AuditLog(other)
    log.append_many(records)
    log._wal.close()  # a crash: the frames are on disk, nothing is sealed
    log.close()
    with AuditLog(other) as reopened:  # seals what the crash left by decoding the frames
        assert reopened.recovered == 300
        from_frames = pq.read_table(reopened.segments()[0])
        assert reopened.verify().ok
    assert from_memory.equals(from_frames)


def test_canonical_json_is_to_json_sorted():
    """The fast canonical form (orjson writes the time) is byte for byte the sorted JSON of `to_json`, whatever
    the time: on a whole second, in another zone, before 1970, at the ends of the calendar."""
    import random
    from datetime import timezone

    import orjson

    rng = random.Random(3)
    times = [
        datetime(2026, 12, 6, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=timezone(timedelta(hours=-4))),
    ]
    times += [
        datetime.fromtimestamp(
            rng.uniform(-2e9, 4e9), tz=timezone(timedelta(minutes=rng.randrange(-720, 840, 15)))
        ).replace(microsecond=rng.choice([0, 1, rng.randrange(10**6)]))
        for _ in range(500)
    ]
    for at in times:
        r = AuditRecord(kind="llm", trace_id="t", at=at, model="m", payload={"b": [1, "é"], "a": None})
        assert r.canonical_json() == orjson.dumps(r.to_json(), option=orjson.OPT_SORT_KEYS), at
