"""Tests of the on-disk spool: order, restart, torn tails, full policies, disk errors."""

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.spool import HEADER, Spool


def records(first, n, size=100):
    return [(seq, bytes([seq % 251]) * size) for seq in range(first, first + n)]


def drain(spool, limit=10_000):
    out = []
    while (head := spool.peek()) is not None and len(out) < limit:
        out.append(head)
        spool.ack(head[0])
    return out


def test_fifo_order_and_ack(tmp_path):
    """Records come out oldest first, each once, and ack removes only the head."""
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", Metrics())
    spool.append(records(1, 5))
    spool.ack(3)
    assert spool.peek()[0] == 1
    got = drain(spool)
    assert [s for s, _ in got] == [1, 2, 3, 4, 5]
    assert got[2][1] == bytes([3]) * 100
    assert spool.peek() is None and spool.depth == 0


def test_survives_restart_and_remembers_acks(tmp_path):
    """After a reopen the unacknowledged records remain, acked ones never come back."""
    metrics = Metrics()
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", metrics)
    spool.append(records(1, 10))
    for _ in range(4):
        spool.ack(spool.peek()[0])
    spool.close()
    again = Spool(tmp_path, 1 << 20, "drop-oldest", Metrics())
    assert again.depth == 6
    assert [s for s, _ in drain(again)] == list(range(5, 11))
    assert again.last_seq == 10


def test_last_seq_survives_an_empty_spool(tmp_path):
    """With every record acknowledged, a reopen still knows the highest sequence number."""
    spool = Spool(tmp_path, 1 << 16, "drop-oldest", Metrics())
    spool.append(records(1, 3000, size=40))
    drain(spool)
    spool.close()
    assert Spool(tmp_path, 1 << 16, "drop-oldest", Metrics()).last_seq == 3000


def test_torn_tail_is_cut_and_counted(tmp_path):
    """A half-written last record (crash) is dropped at open; earlier records stay."""
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", Metrics())
    spool.append(records(1, 3))
    spool.close()
    segment = max(tmp_path.glob("seg-*.spool"))
    whole = segment.read_bytes()
    segment.write_bytes(whole + HEADER.pack(100, 0, 4) + b"x" * 30)
    metrics = Metrics()
    again = Spool(tmp_path, 1 << 20, "drop-oldest", metrics)
    assert metrics.counters["spool_torn_records"] == 1
    assert segment.stat().st_size == len(whole)
    assert [s for s, _ in drain(again)] == [1, 2, 3]


def test_corrupt_record_cuts_the_rest(tmp_path):
    """A record whose checksum fails ends the segment there, counted."""
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", Metrics())
    spool.append(records(1, 3))
    spool.close()
    segment = max(tmp_path.glob("seg-*.spool"))
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 100 + HEADER.size + 5] ^= 0xFF
    segment.write_bytes(bytes(data))
    metrics = Metrics()
    again = Spool(tmp_path, 1 << 20, "drop-oldest", metrics)
    assert [s for s, _ in drain(again)] == [1]
    assert metrics.counters["spool_torn_records"] == 1


def test_drop_oldest_keeps_newest_within_bound(tmp_path):
    """When full, drop-oldest deletes old segments, counts them, and stays under max_bytes."""
    metrics = Metrics()
    spool = Spool(tmp_path, 16384, "drop-oldest", metrics)
    for first in range(1, 401, 20):
        spool.append(records(first, 20))
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("seg-*.spool"))
    assert on_disk <= 16384
    left = [s for s, _ in drain(spool)]
    assert left == list(range(left[0], 401))
    assert metrics.counters["spool_dropped_oldest"] == 400 - len(left) > 0


def test_drop_newest_refuses_and_counts(tmp_path):
    """When full, drop-newest keeps the oldest records and counts the refused ones."""
    metrics = Metrics()
    spool = Spool(tmp_path, 8192, "drop-newest", metrics)
    spool.append(records(1, 200))
    left = [s for s, _ in drain(spool)]
    assert left == list(range(1, len(left) + 1))
    assert metrics.counters["spool_dropped_newest"] == 200 - len(left) > 0


def test_write_error_keeps_records_in_memory_in_order(tmp_path, monkeypatch):
    """ENOSPC on append keeps the records in memory; they go to disk, in order, later."""
    metrics = Metrics()
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", metrics)
    spool.append(records(1, 2))
    real_write = Spool._write

    def full(self, recs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "_write", full)
    spool.append(records(3, 2))
    assert metrics.counters["spool_write_errors"] >= 1
    assert len(spool.memory) == 2
    assert metrics.snapshot()["spool_depth"] == 4
    monkeypatch.setattr(Spool, "_write", real_write)
    spool.append(records(5, 1))
    assert not spool.memory
    assert [s for s, _ in drain(spool)] == [1, 2, 3, 4, 5]


def test_memory_fallback_is_bounded(tmp_path, monkeypatch):
    """While the disk refuses writes, memory holds at most memory_bytes; the rest counted."""
    metrics = Metrics()
    spool = Spool(tmp_path, 1 << 20, "drop-oldest", metrics, memory_bytes=1000)
    monkeypatch.setattr(
        Spool, "_write", lambda self, recs: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    spool.append(records(1, 30))
    assert len(spool.memory) == 10
    assert metrics.counters["spool_memory_dropped"] == 20
    assert [s for s, _ in drain(spool)] == list(range(1, 11))


def test_real_full_disk_on_tmpfs():
    """On a 64 KiB tmpfs the spool hits ENOSPC, keeps serving from memory, loses nothing."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="spool-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode().strip()}")
    try:
        metrics = Metrics()
        spool = Spool(mount / "spool", 1 << 20, "drop-oldest", metrics)
        for first in range(1, 121, 10):
            spool.append(records(first, 10, size=1000))
        assert metrics.counters["spool_write_errors"] >= 1
        assert spool.memory
        assert [s for s, _ in drain(spool)] == list(range(1, 121))
        spool.close()
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
