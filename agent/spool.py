"""On-disk spool of summaries waiting for the store: append-only, fsynced, size-bounded.

The spool is a folder of segment files ``seg-<n>.spool``, each a run of records
``length u32 | crc32 u32 | seq u64 | payload`` (big-endian; the CRC covers seq and
payload), and a ``cursor`` file naming the first record not yet taken by the store
(segment, offset, and the highest sequence number ever acknowledged). Appends are
fsynced before they return. Acknowledging rewrites the cursor in place without fsync:
a killed process loses nothing, and after a power cut the few summaries sent again are
dropped by the store as duplicates of their sequence numbers.

- Full (``max_bytes``): ``drop-oldest`` deletes the oldest segment (its unsent records
  counted in ``spool_dropped_oldest``); ``drop-newest`` refuses the new record
  (``spool_dropped_newest``).
- Crash: on open every segment is checked from its start; a torn or corrupt tail is cut
  off and counted (``spool_torn_records``).
- Disk errors (ENOSPC, EIO): the record is kept in memory, within ``memory_bytes``, and
  written out in order once the disk takes writes again (``spool_write_errors``).

The spool is shared by the event loop (append) and the sender thread (peek, ack).
"""

import logging
import os
import struct
import threading
import zlib
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct(">IIQ")
CURSOR = struct.Struct(">QQQI")
SEGMENTS_PER_SPOOL = 8


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "big")))


class Spool:
    """A crash-safe FIFO of (seq, payload) records in a folder."""

    def __init__(self, path, max_bytes: int, when_full: str, metrics, memory_bytes=4 << 20):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.segment_bytes = max(max_bytes // SEGMENTS_PER_SPOOL, 1024)
        self.when_full = when_full
        self.metrics = metrics
        self.memory_bytes = memory_bytes
        self.memory: deque[tuple[int, bytes]] = deque()
        self._memory_size = 0
        self._lock = threading.RLock()
        self.path.mkdir(parents=True, exist_ok=True)

        self.sizes: dict[int, int] = {}
        self.depth = 0
        self.last_seq = 0
        self._open()
        metrics.gauge("spool_depth", lambda: self.depth + len(self.memory))
        metrics.gauge("spool_bytes", lambda: sum(self.sizes.values()))

    def _segment(self, number: int) -> Path:
        return self.path / f"seg-{number:012d}.spool"

    def _open(self) -> None:
        numbers = sorted(int(p.name[4:16]) for p in self.path.glob("seg-*.spool"))
        self.cursor_segment, self.cursor_offset, self.acked_seq = self._read_cursor(numbers)
        for number in numbers:
            if number < self.cursor_segment:
                self._segment(number).unlink()
                continue
            self.sizes[number] = self._check_segment(number)
        if not self.sizes:
            self.cursor_segment = max(numbers, default=0) + 1
            self.cursor_offset = 0
            self.sizes[self.cursor_segment] = 0
            self._segment(self.cursor_segment).touch()
        if self.cursor_segment not in self.sizes:
            self.cursor_segment, self.cursor_offset = min(self.sizes), 0
        self.writing = max(self.sizes)
        self.last_seq = max(self.last_seq, self.acked_seq)
        self._cursor_fd = os.open(self.path / "cursor", os.O_RDWR | os.O_CREAT, 0o600)
        self._write_cursor()
        log.info(
            "spool %s opened: %d summaries waiting, last seq %d",
            self.path,
            self.depth,
            self.last_seq,
        )

    def _read_cursor(self, numbers) -> tuple[int, int, int]:
        first = min(numbers, default=1)
        try:
            raw = (self.path / "cursor").read_bytes()
        except FileNotFoundError:
            return first, 0, 0
        if len(raw) == CURSOR.size:
            segment, offset, acked, crc = CURSOR.unpack(raw)
            if zlib.crc32(raw[:-4]) == crc:
                return segment, offset, acked
        log.warning("spool cursor in %s is damaged; resending from the oldest segment", self.path)
        self.metrics.inc("spool_cursor_damaged")
        return first, 0, 0

    def _check_segment(self, number: int) -> int:
        """Validate records, count the unsent ones, cut a damaged tail; the good size."""
        path = self._segment(number)
        data = path.read_bytes()
        offset = 0
        while offset + HEADER.size <= len(data):
            length, crc, seq = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + length
            if end > len(data) or _crc(seq, data[offset + HEADER.size : end]) != crc:
                break
            self.last_seq = max(self.last_seq, seq)
            if number > self.cursor_segment or offset >= self.cursor_offset:
                self.depth += 1
            offset = end
        if offset != len(data):
            log.warning(
                "spool segment %s: damaged tail of %d bytes cut at offset %d",
                path.name,
                len(data) - offset,
                offset,
            )
            self.metrics.inc("spool_torn_records")
            with open(path, "r+b") as f:
                f.truncate(offset)
                os.fsync(f.fileno())
        if number == self.cursor_segment:
            self.cursor_offset = min(self.cursor_offset, offset)
        return offset

    def _write_cursor(self, sync: bool = True) -> None:
        raw = CURSOR.pack(self.cursor_segment, self.cursor_offset, self.acked_seq, 0)[:-4]
        os.pwrite(self._cursor_fd, raw + zlib.crc32(raw).to_bytes(4, "big"), 0)
        if sync:
            os.fsync(self._cursor_fd)

    def append(self, records: list[tuple[int, bytes]]) -> None:
        """Store records (seq, payload) durably, in order; one fsync for the lot."""
        with self._lock:
            for seq, _ in records:
                self.last_seq = max(self.last_seq, seq)
            if self.memory:
                self._to_memory(records)
                self._drain_memory()
                return
            try:
                self._write(records)
            except OSError as exc:
                self._disk_failed(exc)
                self._to_memory(records)

    def _write(self, records: list[tuple[int, bytes]]) -> None:
        """Append to segment files, fsynced; on failure they are cut back, OSError raised."""
        touched = {}
        written = 0
        f, f_segment = None, None
        try:
            for seq, payload in records:
                blob = HEADER.pack(len(payload), _crc(seq, payload), seq) + payload
                if not self._make_room(len(blob)):
                    continue
                size = self.sizes[self.writing]
                if size and size + len(blob) > self.segment_bytes:
                    self._rotate()
                if f is not None and f_segment != self.writing:
                    f = self._sync_close(f)
                if f is None:
                    touched.setdefault(self.writing, self.sizes[self.writing])
                    f = open(self._segment(self.writing), "ab")  # noqa: SIM115 - closed below
                    f_segment = self.writing
                f.write(blob)
                self.sizes[self.writing] += len(blob)
                self.depth += 1
                written += 1
            self._sync_close(f)
        except OSError:
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
            for number, size in touched.items():
                self._cut(number, size)
            self.depth -= written
            raise

    @staticmethod
    def _sync_close(f) -> None:
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()

    def _cut(self, number: int, size: int) -> None:
        try:
            with open(self._segment(number), "r+b") as f:
                f.truncate(size)
        except OSError:
            pass
        if number in self.sizes:
            self.sizes[number] = size

    def _rotate(self) -> None:
        self.writing += 1
        self._segment(self.writing).touch()
        self.sizes[self.writing] = 0
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _make_room(self, size: int) -> bool:
        """Apply the full policy; False when the record must be refused."""
        if size > self.max_bytes:
            log.error("summary of %d bytes is larger than the whole spool; dropped", size)
            self.metrics.inc("spool_dropped_newest")
            return False
        while sum(self.sizes.values()) + size > self.max_bytes:
            if self.when_full == "drop-newest":
                self.metrics.inc("spool_dropped_newest")
                return False
            if len(self.sizes) == 1:
                self._rotate()
            self._drop_oldest_segment()
        return True

    def _drop_oldest_segment(self) -> None:
        oldest = min(self.sizes)
        start = self.cursor_offset if oldest == self.cursor_segment else 0
        lost = self._count_records(oldest, start)
        self._segment(oldest).unlink()
        del self.sizes[oldest]
        self.depth -= lost
        self.metrics.inc("spool_dropped_oldest", lost)
        log.warning("spool full: dropped %d oldest summaries", lost)
        if oldest >= self.cursor_segment:
            self.cursor_segment, self.cursor_offset = min(self.sizes), 0
            self._write_cursor()

    def _count_records(self, number: int, offset: int) -> int:
        count = 0
        with open(self._segment(number), "rb") as f:
            f.seek(offset)
            while header := f.read(HEADER.size):
                if len(header) < HEADER.size:
                    break
                f.seek(HEADER.unpack(header)[0], os.SEEK_CUR)
                count += 1
        return count

    def _to_memory(self, records) -> None:
        for seq, payload in records:
            if self._memory_size + len(payload) > self.memory_bytes:
                self.metrics.inc("spool_memory_dropped")
                continue
            self.memory.append((seq, payload))
            self._memory_size += len(payload)

    def _disk_failed(self, exc: OSError) -> None:
        self.metrics.inc("spool_write_errors")
        log.error("spool %s cannot write (%s); keeping summaries in memory", self.path, exc)

    def _drain_memory(self) -> None:
        while self.memory:
            try:
                self._write([self.memory[0]])
            except OSError as exc:
                self._disk_failed(exc)
                return
            _, payload = self.memory.popleft()
            self._memory_size -= len(payload)

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest record the store has not taken, or None."""
        with self._lock:
            if self.memory:
                self._drain_memory()
            while True:
                size = self.sizes.get(self.cursor_segment, 0)
                if self.cursor_offset < size:
                    break
                if self.cursor_segment >= self.writing:
                    return self.memory[0] if self.memory else None
                self._advance_segment()
            with open(self._segment(self.cursor_segment), "rb") as f:
                f.seek(self.cursor_offset)
                length, _, seq = HEADER.unpack(f.read(HEADER.size))
                return seq, f.read(length)

    def _advance_segment(self) -> None:
        self._segment(self.cursor_segment).unlink(missing_ok=True)
        self.sizes.pop(self.cursor_segment, None)
        self.cursor_segment = min(n for n in self.sizes if n > self.cursor_segment)
        self.cursor_offset = 0
        self._write_cursor()

    def ack(self, seq: int) -> None:
        """The store took (or refused for good) record ``seq``: never send it again."""
        with self._lock:
            head = self.peek()
            if head is None or head[0] != seq:
                return
            if self.cursor_offset < self.sizes.get(self.cursor_segment, 0):
                self.cursor_offset += HEADER.size + len(head[1])
                self.depth -= 1
            else:
                _, payload = self.memory.popleft()
                self._memory_size -= len(payload)
            self.acked_seq = max(self.acked_seq, seq)
            self._write_cursor(sync=False)

    def close(self) -> None:
        """Sync and release the cursor file."""
        with self._lock:
            os.fsync(self._cursor_fd)
            os.close(self._cursor_fd)
