"""Capture files (pcap and pcapng) as chunks of packet index arrays.

A chunk is ``(ts_ns, offset, caplen, linktype)``: one row per packet record, offsets into
the memory-mapped file, timestamps in nanoseconds since the epoch (YAF 2.16 asks libpcap
for nanosecond precision too). The file is mapped, not read, and pages behind the last
chunk are released, so memory stays bounded by the chunk size whatever the capture's
length.

A record that runs past the end of the file, or claims an impossible length, ends the
reading with a counter (``capture_truncated`` / ``capture_corrupt``) instead of an
error: what was read before it still counts. Only a file that is not a capture at all
raises ``CaptureError``.
"""

import logging
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compile.meter import native

log = logging.getLogger(__name__)

#: Largest packet record accepted (libpcap's own bound for a savefile record).
MAX_RECORD = 262144

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PCAPNG_BYTE_ORDER = 0x1A2B3C4D

#: Scanner outcomes shared with the C scanner.
SCAN_MORE = 0
SCAN_END = 1
SCAN_TRUNCATED = 2
SCAN_CORRUPT = 3
SCAN_BLOCK = 4


class CaptureError(ValueError):
    """The file is not a pcap or pcapng capture that can be read."""


@dataclass
class Chunk:
    """Up to ``chunk`` packet records: where each is in the mapped file and when."""

    ts_ns: np.ndarray
    offset: np.ndarray
    caplen: np.ndarray
    linktype: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass
class _Interfaces:
    """pcapng interfaces of the current section: link type and timestamp exponent."""

    linktype: list[int] = field(default_factory=list)
    tsexp: list[int] = field(default_factory=list)


def _to_ns(ts: int, tsexp: int) -> int:
    """A pcapng timestamp in nanoseconds, wrapped to int64 as the C scanner computes it."""
    if tsexp >= 0:
        if tsexp >= 9:
            ns = ts // 10 ** (tsexp - 9) if tsexp - 9 <= 19 else 0
        else:
            ns = ts * 10 ** (9 - tsexp)
    else:
        shift = -tsexp
        ns = (ts >> shift) * 10**9 + (((ts & ((1 << shift) - 1)) * 10**9) >> shift)
    return ((ns + 2**63) % 2**64) - 2**63


def _idb_tsexp(body: bytes, order: str) -> int:
    """if_tsresol of an interface description block (decimal exponent, or -binary)."""
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = body[pos + 4]
            return -min(value & 0x7F, 63) if value & 0x80 else value
        pos += 4 + ((length + 3) & ~3)
    return 6


class Capture:
    """One capture file, memory-mapped; iterate ``chunks()`` for its packet records."""

    def __init__(self, path: str | Path, *, use_native: bool = True):
        self.path = Path(path)
        self.counters = {
            "records": 0,
            "capture_truncated": 0,
            "capture_corrupt": 0,
            "pcapng_skipped_blocks": 0,
        }
        self._native = native.lib if use_native and native.available() else None
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, 2)
                if size < 24:
                    raise CaptureError(f"{self.path}: {size} bytes is too short for a capture")
                self.buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot read ({exc.strerror})") from exc

        self._released = 0
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            self.buf.madvise(mmap.MADV_SEQUENTIAL)
        try:
            self._read_header()
        except CaptureError:
            self.buf.close()
            raise

    def _read_header(self) -> None:
        head = self.buf[:4]
        if head in PCAP_MAGIC:
            self.format = "pcap"
            self.order, self.nanos = PCAP_MAGIC[head]
            network = struct.unpack_from(self.order + "I", self.buf, 20)[0]
            self.pcap_linktype = network & 0xFFFF
        elif struct.unpack_from("<I", self.buf, 0)[0] == PCAPNG_SHB:
            self.format = "pcapng"
            magic = self.buf[8:12]
            if magic == b"\x4d\x3c\x2b\x1a":
                self.order = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                self.order = ">"
            else:
                raise CaptureError(f"{self.path}: pcapng section header with a bad byte order")
        else:
            raise CaptureError(f"{self.path}: not a pcap or pcapng file (magic {head.hex()})")

    def close(self) -> None:
        """Unmap the file."""
        self.buf.close()

    def chunks(self, chunk: int = 1 << 18) -> Iterator[Chunk]:
        """Packet index arrays, ``chunk`` records at a time, in file order."""
        if self.format == "pcap":
            yield from self._pcap_chunks(chunk)
        else:
            yield from self._pcapng_chunks(chunk)

    def _release(self, pos: int) -> None:
        """Let the kernel drop the mapped pages before ``pos``: the chunks using them are
        done, so resident memory does not grow with the capture."""
        end = pos - pos % mmap.PAGESIZE
        if end > self._released and hasattr(mmap, "MADV_DONTNEED"):
            self.buf.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
            self._released = end

    def _arrays(self, n: int) -> Chunk:
        return Chunk(
            np.empty(n, np.int64),
            np.empty(n, np.int64),
            np.empty(n, np.uint32),
            np.empty(n, np.uint16),
        )

    def _finish(self, status: int) -> bool:
        if status == SCAN_TRUNCATED:
            self.counters["capture_truncated"] += 1
            log.warning("capture %s ends inside a record; the rest is ignored", self.path)
        elif status == SCAN_CORRUPT:
            self.counters["capture_corrupt"] += 1
            log.warning("capture %s has a corrupt record; reading stops there", self.path)
        return status in (SCAN_END, SCAN_TRUNCATED, SCAN_CORRUPT)

    def _pcap_chunks(self, chunk: int) -> Iterator[Chunk]:
        pos = 24
        while True:
            self._release(pos)
            arrays = self._arrays(chunk)
            if self._native is not None:
                n, pos, status = native.scan_pcap(
                    self.buf, pos, self.order == ">", self.nanos, self.pcap_linktype, arrays
                )
            else:
                n, pos, status = self._scan_pcap_py(pos, arrays)
            self.counters["records"] += n
            if n:
                yield Chunk(
                    arrays.ts_ns[:n], arrays.offset[:n], arrays.caplen[:n], arrays.linktype[:n]
                )
            if self._finish(status):
                return

    def _scan_pcap_py(self, pos: int, out: Chunk) -> tuple[int, int, int]:
        buf, size, header = self.buf, len(self.buf), struct.Struct(self.order + "IIII")
        scale = 1 if self.nanos else 1000
        n = 0
        while n < len(out):
            if pos == size:
                return n, pos, SCAN_END
            if pos + 16 > size:
                return n, pos, SCAN_TRUNCATED
            sec, frac, incl, _ = header.unpack_from(buf, pos)
            if incl > MAX_RECORD:
                return n, pos, SCAN_CORRUPT
            if pos + 16 + incl > size:
                return n, pos, SCAN_TRUNCATED
            out.ts_ns[n] = sec * 1_000_000_000 + frac * scale
            out.offset[n] = pos + 16
            out.caplen[n] = incl
            out.linktype[n] = self.pcap_linktype
            n += 1
            pos += 16 + incl
        return n, pos, SCAN_MORE

    def _pcapng_chunks(self, chunk: int) -> Iterator[Chunk]:
        pos, interfaces = 0, _Interfaces()
        while True:
            self._release(pos)
            arrays = self._arrays(chunk)
            if self._native is not None:
                n, pos, status = native.scan_pcapng(
                    self.buf,
                    pos,
                    self.order == ">",
                    interfaces.linktype,
                    interfaces.tsexp,
                    arrays,
                )
            else:
                n, pos, status = self._scan_pcapng_py(pos, interfaces, arrays)
            self.counters["records"] += n
            if n:
                yield Chunk(
                    arrays.ts_ns[:n], arrays.offset[:n], arrays.caplen[:n], arrays.linktype[:n]
                )
            if status == SCAN_BLOCK:
                pos, status = self._pcapng_control_block(pos, interfaces)
            if self._finish(status):
                return

    def _pcapng_control_block(self, pos: int, interfaces: _Interfaces) -> tuple[int, int]:
        """Section headers and interface descriptions (and blocks the scanner skips)."""
        buf, size = self.buf, len(self.buf)
        if pos + 12 > size:
            return pos, SCAN_TRUNCATED
        kind = struct.unpack_from("<I", buf, pos)[0]
        if kind == PCAPNG_SHB:
            magic = buf[pos + 8 : pos + 12]
            if magic not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                return pos, SCAN_CORRUPT
            self.order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces.linktype.clear()
            interfaces.tsexp.clear()
        length = struct.unpack_from(self.order + "I", buf, pos + 4)[0]
        if length < 12 or length % 4:
            return pos, SCAN_CORRUPT
        if pos + length > size:
            return pos, SCAN_TRUNCATED
        if kind == PCAPNG_IDB and length >= 20:
            body = bytes(buf[pos + 8 : pos + length - 4])
            interfaces.linktype.append(struct.unpack_from(self.order + "H", body, 0)[0])
            interfaces.tsexp.append(_idb_tsexp(body, self.order))
        elif kind != PCAPNG_SHB:
            self.counters["pcapng_skipped_blocks"] += 1
        return pos + length, SCAN_MORE

    def _scan_pcapng_py(
        self, pos: int, interfaces: _Interfaces, out: Chunk
    ) -> tuple[int, int, int]:
        buf, size, order = self.buf, len(self.buf), self.order
        n = 0
        while n < len(out):
            if pos == size:
                return n, pos, SCAN_END
            if pos + 12 > size:
                return n, pos, SCAN_TRUNCATED
            kind, length = struct.unpack_from(order + "II", buf, pos)
            if kind == PCAPNG_SHB or kind not in (PCAPNG_EPB, PCAPNG_PB):
                return n, pos, SCAN_BLOCK
            if length < 32 or length % 4 or length > MAX_RECORD + 64:
                return n, pos, SCAN_CORRUPT
            if pos + length > size:
                return n, pos, SCAN_TRUNCATED
            if kind == PCAPNG_EPB:
                iface, high, low, incl = struct.unpack_from(order + "IIII", buf, pos + 8)
            else:
                iface, _, high, low, incl = struct.unpack_from(order + "HHIII", buf, pos + 8)
            if iface >= len(interfaces.linktype) or 28 + incl + 4 > length:
                return n, pos, SCAN_CORRUPT
            out.ts_ns[n] = _to_ns((high << 32) | low, interfaces.tsexp[iface])
            out.offset[n] = pos + 28
            out.caplen[n] = incl
            out.linktype[n] = interfaces.linktype[iface]
            n += 1
            pos += length
        return n, pos, SCAN_MORE
