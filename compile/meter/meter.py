"""``meter_pcap`` / ``iter_meter``: a capture file in, YAF-format biflow records out."""

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent.flows import FLOW_DTYPE
from compile.meter import native
from compile.meter.capture import Capture
from compile.meter.records import finalize
from compile.meter.table import PyMeter

log = logging.getLogger(__name__)

#: YAF's defaults, in seconds.
IDLE_TIMEOUT = 300.0
ACTIVE_TIMEOUT = 1800.0


def _engine(name: str, idle_ns: int, active_ns: int):
    if name not in ("auto", "native", "python"):
        raise ValueError(f"engine must be auto, native or python, not {name!r}")
    if name == "native" and not native.available():
        raise RuntimeError("the compiled flow meter is not built (pip install -e .)")
    if name != "python" and native.available():
        return native.NativeMeter(idle_ns, active_ns)
    if name == "auto":
        log.warning("compiled flow meter not built; using the slower Python engine")
    return PyMeter(idle_ns, active_ns)


def iter_meter(
    path: str | Path,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    active_timeout: float = ACTIVE_TIMEOUT,
    engine: str = "auto",
    chunk: int = 1 << 18,
    counters: dict | None = None,
) -> Iterator[np.ndarray]:
    """Meter a capture chunk by chunk: ``FLOW_DTYPE`` arrays of the flows as they close.

    Memory stays bounded by the open flows and one chunk of packet records, so a capture
    of any length can be written out as it is read. ``counters``, when given, receives
    the counters of ``meter_pcap`` once the capture is done.
    """
    idle_ns, active_ns = round(idle_timeout * 1e9), round(active_timeout * 1e9)
    if idle_ns <= 0 or active_ns <= 0:
        raise ValueError("timeouts must be positive")
    meter = _engine(engine, idle_ns, active_ns)
    capture = Capture(path, use_native=not isinstance(meter, PyMeter))

    flows = 0
    try:
        for part in capture.chunks(chunk):
            meter.feed(capture.buf, part.ts_ns, part.offset, part.caplen, part.linktype)
            raw = meter.drain()
            flows += len(raw)
            if len(raw):
                yield finalize(raw)
        meter.finish()
        raw = meter.drain()
        flows += len(raw)
        if len(raw):
            yield finalize(raw)
    finally:
        capture.close()

    totals = dict(capture.counters)
    totals.update(meter.counters)
    totals["flows"] = flows
    log.info("metered %s: %s", path, " ".join(f"{k}={v}" for k, v in totals.items() if v))
    if counters is not None:
        counters.update(totals)


def meter_pcap(
    path: str | Path,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    active_timeout: float = ACTIVE_TIMEOUT,
    engine: str = "auto",
    chunk: int = 1 << 18,
) -> tuple[np.ndarray, dict[str, int]]:
    """Meter a pcap or pcapng capture into biflow records and counters.

    Timeouts are in seconds (YAF's defaults: idle 300, active 1800). ``engine`` picks the
    C engine (``native``), the Python one (``python``) or the C one when built (``auto``).
    Returns the records in the order YAF closes them, and counters. Each record read
    lands in one of ``metered``, a skip reason (``decode.DROP_REASONS``),
    ``out_of_sequence``, ``fragments`` or ``fragment_out_of_sequence``; ``reassembled``
    counts the datagrams rebuilt from fragments and metered, ``fragments_unassembled``
    those never completed; ``capture_truncated`` / ``capture_corrupt`` tell whether the
    file ended early; ``flows`` is the number of records.
    """
    counters: dict[str, int] = {}
    parts = list(
        iter_meter(
            path,
            idle_timeout=idle_timeout,
            active_timeout=active_timeout,
            engine=engine,
            chunk=chunk,
            counters=counters,
        )
    )
    flows = np.concatenate(parts) if parts else np.zeros(0, FLOW_DTYPE)
    return flows, counters
