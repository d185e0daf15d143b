"""How fast the IPFIX writer turns a flow table into YAF-layout messages (and SM JSON).

``python -m benchmarks --only writer``: records per second for ``yaf_messages`` as a file
(templates once, 65535-octet messages) and as UDP (templates in every 1472-octet
message), plus Super Mediator JSON writing and reading for comparison.
"""

import tempfile
import time
from pathlib import Path

import numpy as np

from agent.flows import FLOW_STATS_FIELDS, empty
from agent.ipfix.smjson import read_smjson, write_smjson
from agent.ipfix.writer import yaf_messages


def synthetic_flows(n: int, seed: int = 1) -> np.ndarray:
    """A mixed table: 90 % IPv4, 60 % TCP, 80 % biflows, every statistic filled."""
    rng = np.random.default_rng(seed)
    flows = empty(n)
    start = 1_561_451_807_096 + np.sort(rng.integers(0, 86_400_000, n))
    flows["flowStartMilliseconds"] = start
    flows["flowEndMilliseconds"] = start + rng.integers(0, 120_000, n)
    flows["ipVersion"] = np.where(rng.random(n) < 0.1, 6, 4)
    flows["protocolIdentifier"] = np.where(rng.random(n) < 0.6, 6, 17)
    flows["sourceAddress"] = rng.integers(0, 256, (n, 16))
    flows["destinationAddress"] = rng.integers(0, 256, (n, 16))
    v4 = flows["ipVersion"] == 4
    for side in ("sourceAddress", "destinationAddress"):
        flows[side][v4, :12] = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)
    flows["sourceTransportPort"] = rng.integers(1024, 65536, n)
    flows["destinationTransportPort"] = rng.choice([53, 80, 123, 443, 8883], n)
    flows["sourceMacAddress"] = rng.integers(0, 1 << 48, n, dtype=np.uint64)
    flows["packetTotalCount"] = rng.integers(1, 500, n)
    flows["octetTotalCount"] = rng.integers(40, 500_000, n)
    biflow = rng.random(n) < 0.8
    flows["reversePacketTotalCount"] = np.where(biflow, rng.integers(1, 500, n), 0)
    flows["reverseOctetTotalCount"] = np.where(biflow, rng.integers(40, 500_000, n), 0)
    for name, _ in FLOW_STATS_FIELDS:
        flows[name] = rng.integers(0, 200, n)
        flows["reverse" + name[0].upper() + name[1:]] = np.where(
            biflow, rng.integers(0, 200, n), 0
        )
    return flows


def _writer_rate(flows: np.ndarray, repeat: int, **kw) -> dict:
    """Best of ``repeat`` runs, by wall clock and by this process's CPU time."""
    wall = cpu = float("inf")
    octets = messages = 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        octets = messages = 0
        for message in yaf_messages(flows, export_time=0, **kw):
            octets += len(message)
            messages += 1
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return {
        "records_per_s": len(flows) / wall,
        "records_per_cpu_s": len(flows) / cpu,
        "octets_per_record": octets / len(flows),
        "messages": messages,
    }


def run(quick: bool) -> dict:
    """Records per second of the writer (file and UDP layouts) and of SM JSON I/O."""
    n = 20_000 if quick else 1_000_000
    flows = synthetic_flows(n)
    repeat = 1 if quick else 3
    list(yaf_messages(flows[:100], export_time=0))
    rows = [
        {"case": "yaf file (mtu 65535)", "records": n, **_writer_rate(flows, repeat)},
        {"case": "yaf udp (mtu 1472)", "records": n, **_writer_rate(flows, repeat, mtu=1472)},
    ]

    small = flows[: min(n, 100_000)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.json"
        for case, work in (("smjson write", write_smjson), ("smjson read", None)):
            start, start_cpu = time.perf_counter(), time.process_time()
            if work is None:
                read_smjson(path)
            else:
                work(path, small)
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            rows.append({
                "case": case, "records": len(small), "records_per_s": len(small) / wall,
                "records_per_cpu_s": len(small) / cpu,
            })  # fmt: skip
    return {
        "rows": rows,
        "writer_records_per_s": rows[0]["records_per_s"],
        "writer_records_per_cpu_s": rows[0]["records_per_cpu_s"],
    }
