"""The writer threads: bounded queue (by count and bytes), batching, draining on stop."""

import asyncio

import msgpack
import pytest
from store_fixtures import DEVICE_TYPES, T0, count_rows, trust

from store.database import Database
from store.errors import DatabaseUnavailable
from store.summary import Rules, parse
from store.writer import Writer

RULES = Rules(DEVICE_TYPES)


def summary(seq: int):
    return parse(msgpack.packb(trust(seq=seq, home=f"h{seq}")), "bng-01", RULES, now=T0)


def test_queue_is_bounded_by_bytes_and_count(tmp_path):
    """Summaries beyond the byte budget or the queue length are refused at once."""
    db = Database(f"sqlite:///{tmp_path}/s.db")
    writer = Writer(db, max_queue=2, max_queued_bytes=1000)

    async def run():
        with pytest.raises(DatabaseUnavailable, match="queue full"):
            await writer.submit(summary(1), T0, size=1001)
        waiting = [asyncio.ensure_future(writer.submit(summary(s), T0, size=10)) for s in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(DatabaseUnavailable, match="queue full"):
            await writer.submit(summary(3), T0, size=10)
        assert writer.queued_bytes == 20

        db.migrate()
        writer.start()
        assert await asyncio.gather(*waiting) == ["stored", "stored"]
        assert writer.queued_bytes == 0

    asyncio.run(run())
    writer.stop()
    assert writer.counters["queue_full"] == 2
    assert count_rows(db.url, "ingest_log") == 2


def test_writer_batches_and_drains(tmp_path):
    """Many summaries submitted at once are written in few batches, each answered."""
    db = Database(f"sqlite:///{tmp_path}/s.db")
    db.migrate()
    writer = Writer(db, max_batch=50)

    async def run():
        jobs = [writer.submit(summary(s), T0) for s in range(1, 201)]
        writer.start()
        return await asyncio.gather(*jobs)

    assert asyncio.run(run()) == ["stored"] * 200
    writer.stop()
    assert 4 <= writer.counters["batches"] < 200
    assert count_rows(db.url, "trust") == 200


def test_repeated_events_are_logged_once_per_interval(caplog, monkeypatch):
    """A flood of the same event gives one line, and the next says how many were muted."""
    import logging

    from store import logs

    clock = iter([100.0, 100.1, 100.2, 100.3, 101.5])
    monkeypatch.setattr(logs.time, "monotonic", lambda: next(clock))
    logger = logging.getLogger("store.test")
    with caplog.at_level(logging.INFO, logger="store.test"):
        for i in range(5):
            logs.quietly(logger, logging.INFO, "flood-test", "refused n=%d", i)
    assert [r.getMessage() for r in caplog.records] == [
        "refused n=0",
        "refused n=4 (and 3 more muted)",
    ]
