"""The C engine (``compile.meter._native``, built by cffi from ``_meter.c``), when built.

``available()`` tells whether the extension imported; callers fall back to the Python
engine otherwise, with identical results.
"""

import logging

import numpy as np

from compile.meter.decode import DROP_REASONS
from compile.meter.fragments import FRAGMENT_COUNTERS
from compile.meter.records import RAW_DTYPE

log = logging.getLogger(__name__)

try:
    from compile.meter._native import ffi, lib
except ImportError:
    ffi = lib = None

COUNTER_NAMES = DROP_REASONS + ("out_of_sequence",) + FRAGMENT_COUNTERS


def available() -> bool:
    """Whether the compiled engine can be used (and its record layout is ``RAW_DTYPE``)."""
    return lib is not None and ffi.sizeof("struct meter_flow") == RAW_DTYPE.itemsize


def _ptr(ctype: str, array: np.ndarray):
    return ffi.cast(ctype, ffi.from_buffer(array))


def scan_pcap(buf, pos: int, big_endian: bool, nanos: bool, linktype: int, out):
    """Fill ``out`` (a capture Chunk) with pcap records from ``pos``; (n, pos, status)."""
    cpos, status = ffi.new("size_t *", pos), ffi.new("int *")
    n = lib.meter_scan_pcap(
        ffi.from_buffer(buf),
        len(buf),
        cpos,
        big_endian,
        nanos,
        linktype,
        len(out),
        _ptr("int64_t *", out.ts_ns),
        _ptr("int64_t *", out.offset),
        _ptr("uint32_t *", out.caplen),
        _ptr("uint16_t *", out.linktype),
        status,
    )
    return n, cpos[0], status[0]


def scan_pcapng(buf, pos: int, big_endian: bool, linktypes: list, tsexps: list, out):
    """Fill ``out`` with pcapng packet blocks from ``pos``; stops at any other block."""
    cpos, status = ffi.new("size_t *", pos), ffi.new("int *")
    if_linktype = np.array(linktypes or [0], np.uint16)
    if_tsexp = np.array(tsexps or [6], np.int8)
    n = lib.meter_scan_pcapng(
        ffi.from_buffer(buf),
        len(buf),
        cpos,
        big_endian,
        _ptr("uint16_t *", if_linktype),
        _ptr("int8_t *", if_tsexp),
        len(linktypes),
        len(out),
        _ptr("int64_t *", out.ts_ns),
        _ptr("int64_t *", out.offset),
        _ptr("uint32_t *", out.caplen),
        _ptr("uint16_t *", out.linktype),
        status,
    )
    return n, cpos[0], status[0]


class NativeMeter:
    """The C flow table, with the same calls as ``table.PyMeter``."""

    def __init__(self, idle_ns: int, active_ns: int):
        self._meter = ffi.gc(lib.meter_new(idle_ns, active_ns), lib.meter_free)
        if self._meter == ffi.NULL:
            raise MemoryError("cannot allocate the flow table")

    def feed(self, buf, ts_ns, offset, caplen, linktype) -> None:
        """Decode and meter one chunk of packet records."""
        ts_ns, offset = np.ascontiguousarray(ts_ns), np.ascontiguousarray(offset)
        caplen, linktype = np.ascontiguousarray(caplen), np.ascontiguousarray(linktype)
        rc = lib.meter_feed(
            self._meter,
            ffi.from_buffer(buf),
            len(ts_ns),
            _ptr("int64_t *", ts_ns),
            _ptr("int64_t *", offset),
            _ptr("uint32_t *", caplen),
            _ptr("uint16_t *", linktype),
        )
        if rc < 0:
            raise MemoryError("the flow table ran out of memory")

    def finish(self) -> None:
        """Close every open flow, as YAF does at the end of its input."""
        if lib.meter_finish(self._meter) < 0:
            raise MemoryError("the flow table ran out of memory")

    def drain(self) -> np.ndarray:
        """The flows closed since the last call, as ``RAW_DTYPE`` rows."""
        out = np.zeros(lib.meter_pending(self._meter), RAW_DTYPE)
        if len(out):
            lib.meter_drain(self._meter, _ptr("struct meter_flow *", out), len(out))
        return out

    @property
    def counters(self) -> dict[str, int]:
        """Packets metered and skipped, by reason."""
        values = np.zeros(len(COUNTER_NAMES), np.uint64)
        lib.meter_counters(self._meter, _ptr("uint64_t *", values))
        return {name: int(v) for name, v in zip(COUNTER_NAMES, values)}
