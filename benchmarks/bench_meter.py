"""Flow meter throughput: packets per second on one core, C engine and Python fallback.

The capture is made here, in a temporary folder, by replicating the packets of the shared
IoT Sentinel sample: each copy is shifted in time and has both ports of every TCP/UDP
packet moved by the copy's number (so a copy's packets form new flows, and a reply still
matches its request). Gaps longer than a second are cut to one second, so the flow table
holds many flows at once.

    .venv/bin/python -m benchmarks.bench_meter [--quick]
"""

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compile.meter import meter_pcap, native
from compile.meter.capture import Capture

SAMPLE = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "ipfix-samples"
    / "yaf-2.16.4-local"
    / "iot_sentinel_setup_subset.pcap"
)


def _ports_offset(buf: bytes, off: int, n: int) -> int | None:
    """Where a TCP/UDP packet's ports start, from its Ethernet header (no VLAN tags)."""
    if n < 54:
        return None
    ethertype = struct.unpack_from(">H", buf, off + 12)[0]
    if ethertype == 0x0800 and buf[off + 23] in (6, 17):
        return 14 + (buf[off + 14] & 0x0F) * 4
    if ethertype == 0x86DD and buf[off + 20] in (6, 17):
        return 54
    return None


def _template(path: Path):
    """The sample's records as one byte block, with where to patch times and ports."""
    capture = Capture(path, use_native=False)
    part = next(capture.chunks(1 << 20))
    buf = bytes(capture.buf)
    capture.close()

    block, ts_at, port_at = bytearray(), [], []
    gaps = np.minimum(np.diff(part.ts_ns, prepend=part.ts_ns[0]), 1_000_000_000)
    times = np.cumsum(np.maximum(gaps, 0))
    for off, n, t in zip(part.offset.tolist(), part.caplen.tolist(), times.tolist()):
        record_at = len(block)
        block += struct.pack("<IIII", t // 10**9, (t % 10**9) // 1000, n, n)
        block += buf[off : off + n]
        ts_at.append(record_at)
        l4 = _ports_offset(buf, off, n)
        if l4 is not None:
            port_at.append(record_at + 16 + l4)
    span = int(times[-1]) + 1_000_000_000
    return bytes(block), np.array(ts_at), np.array(port_at), int(times[0]), span


def make_capture(path: Path, packets: int, sample: Path = SAMPLE) -> int:
    """Write a pcap of about ``packets`` records replicated from ``sample``."""
    block, ts_at, port_at, _, span = _template(sample)
    per_copy = len(ts_at)
    copies = max(1, packets // per_copy)
    base = np.frombuffer(block, np.uint8)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k in range(copies):
            data = base.copy()
            seconds = data[ts_at[:, None] + np.arange(4)].copy().view("<u4").ravel()
            seconds += np.uint32((k * span) // 10**9 + 1_600_000_000)
            data[ts_at[:, None] + np.arange(4)] = seconds.view(np.uint8).reshape(-1, 4)
            for at in (port_at, port_at + 2):
                ports = data[at[:, None] + np.arange(2)].copy().view(">u2").ravel()
                ports = ((ports.astype(np.uint32) + k) % 65536).astype(">u2")
                data[at[:, None] + np.arange(2)] = ports.view(np.uint8).reshape(-1, 2)
            out.write(data.tobytes())
    return copies * per_copy


def _measure(path: Path, engine: str) -> dict:
    start, wall = time.process_time(), time.perf_counter()
    flows, counters = meter_pcap(path, engine=engine)
    seconds, wall = time.process_time() - start, time.perf_counter() - wall
    return {
        "engine": engine,
        "records": counters["records"],
        "flows": len(flows),
        "cpu_seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "packets_per_second": round(counters["records"] / seconds),
    }


def run(quick: bool) -> dict:
    """Meter a replicated capture with each engine; throughput in CPU time of one core."""
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.pcap"
        packets = make_capture(big, 300_000 if quick else 3_000_000)
        results["capture_packets"] = packets
        results["capture_bytes"] = big.stat().st_size
        if native.available():
            rows.append(_measure(big, "native"))
        small = Path(folder) / "small.pcap"
        make_capture(small, 30_000)
        rows.append(_measure(small, "python"))
    results["rows"] = rows
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    json.dump(run(args.quick), sys.stdout, indent=2)
    print()
