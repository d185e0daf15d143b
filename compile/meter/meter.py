"""``meter_pcap``: one capture file in, YAF-format biflow records (``FLOW_DTYPE``) out."""

import logging
from pathlib import Path

import numpy as np

from compile.meter import native
from compile.meter.capture import Capture
from compile.meter.records import RAW_DTYPE, finalize
from compile.meter.table import PyMeter

log = logging.getLogger(__name__)

#: YAF's defaults, in seconds.
IDLE_TIMEOUT = 300.0
ACTIVE_TIMEOUT = 1800.0


def _engine(name: str, idle_us: int, active_us: int):
    if name not in ("auto", "native", "python"):
        raise ValueError(f"engine must be auto, native or python, not {name!r}")
    if name == "native" and not native.available():
        raise RuntimeError("the compiled flow meter is not built (pip install -e .)")
    if name != "python" and native.available():
        return native.NativeMeter(idle_us, active_us)
    if name == "auto":
        log.warning("compiled flow meter not built; using the slower Python engine")
    return PyMeter(idle_us, active_us)


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
    Returns the records in the order YAF closes them, and counters: ``records`` read,
    ``metered`` packets, each skip reason, ``out_of_sequence``, ``flows``.
    """
    idle_us, active_us = round(idle_timeout * 1e6), round(active_timeout * 1e6)
    if idle_us <= 0 or active_us <= 0:
        raise ValueError("timeouts must be positive")
    meter = _engine(engine, idle_us, active_us)
    capture = Capture(path, use_native=not isinstance(meter, PyMeter))

    parts = []
    try:
        for part in capture.chunks(chunk):
            meter.feed(capture.buf, part.ts_us, part.offset, part.caplen, part.linktype)
            parts.append(meter.drain())
        meter.finish()
        parts.append(meter.drain())
    finally:
        capture.close()

    raw = np.concatenate(parts) if parts else np.zeros(0, RAW_DTYPE)
    counters = dict(capture.counters)
    counters.update(meter.counters)
    counters["flows"] = len(raw)
    log.info("metered %s: %s", path, " ".join(f"{k}={v}" for k, v in counters.items() if v))
    return finalize(raw), counters
