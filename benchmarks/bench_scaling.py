"""How the agent's data path scales with the number of homes and the trust window's length.

The same in-memory flow table (``FLOW_DTYPE`` rows over two days, addresses spread over N
homes of 10.0.0.0/8, one /32 each) goes through ``agent.pipeline.Pipeline`` in replay mode
(windows closed by flow end times) in batches of 1,024 rows, as the daemon's ``Batcher``
hands them on, with a small bundle (a few trees, trained here on synthetic flows). Each
(homes, window) setting runs in a child process of its own so its memory is its own:
records/s over the whole replay, resident memory growth while replaying (psutil, after
the bundle and the flows are loaded), the largest resident size seen while replaying
(sampled every 16 batches), and what came out (homes, trust summaries, detections).

    python -m benchmarks.bench_scaling --child BUNDLE HOMES WINDOW RECORDS RESULT.json
is the child's entry point (used by ``run``).
"""

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.flows import empty

log = logging.getLogger(__name__)

HOMES = (1, 10, 100, 10_000)
WINDOWS = (3_600.0, 86_400.0)
RECORDS = 200_000
SPAN_MS = 2 * 86_400_000
BATCH = 1024
PORTS = (80, 443, 53, 123, 8883, 5228)
QUICK = {"homes": (1, 100), "windows": (3_600.0,), "records": 5_000}


def synthetic_flows(
    n: int,
    homes: int = 1,
    seed: int = 0,
    start_ms: int = 1_700_000_000_000,
    span_ms: int = 3_600_000,
) -> np.ndarray:
    """``n`` biflows from ``homes`` homes (10.x.y.z, one address each) to public servers."""
    rng = np.random.default_rng(seed)
    flows = empty(n)
    flows["flowStartMilliseconds"] = start_ms + np.sort(rng.integers(0, span_ms, n))
    flows["flowEndMilliseconds"] = flows["flowStartMilliseconds"] + rng.integers(0, 60_000, n)
    flows["ipVersion"] = 4
    flows["protocolIdentifier"] = rng.choice([6, 17], n, p=[0.7, 0.3])
    flows["sourceTransportPort"] = rng.integers(1024, 65535, n)
    flows["destinationTransportPort"] = rng.choice(PORTS, n)

    home = rng.integers(0, homes, n)
    flows["sourceAddress"][:, 10:12] = 0xFF
    flows["sourceAddress"][:, 12] = 10
    flows["sourceAddress"][:, 13] = (home >> 16) & 0xFF
    flows["sourceAddress"][:, 14] = (home >> 8) & 0xFF
    flows["sourceAddress"][:, 15] = home & 0xFF
    flows["destinationAddress"][:, 10:12] = 0xFF
    flows["destinationAddress"][:, 12] = rng.choice([52, 142, 151, 185], n)
    flows["destinationAddress"][:, 13:16] = rng.integers(0, 256, (n, 3))
    flows["sourceMacAddress"] = 0x020000000000 + rng.integers(0, 1 << 20, n)

    for prefix in ("", "reverse"):

        def name(base, p=prefix):
            return p + base[0].upper() + base[1:] if p else base

        packets = rng.integers(1, 200, n)
        flows[name("packetTotalCount")] = packets
        flows[name("octetTotalCount")] = packets * rng.integers(40, 1500, n)
        flows[name("nonEmptyPacketCount")] = rng.integers(0, packets + 1)
        flows[name("smallPacketCount")] = rng.integers(0, packets + 1)
        flows[name("largePacketCount")] = rng.integers(0, packets + 1)
        flows[name("dataByteCount")] = rng.integers(0, 100_000, n)
        flows[name("averageInterarrivalTime")] = rng.integers(0, 5_000, n)
        flows[name("standardDeviationInterarrivalTime")] = rng.integers(0, 5_000, n)
        flows[name("firstNonEmptyPacketSize")] = rng.integers(0, 1460, n)
        flows[name("maxPacketSize")] = rng.integers(40, 1500, n)
        flows[name("standardDeviationPayloadLength")] = rng.integers(0, 700, n)
    flows["firstEightNonEmptyPacketDirections"] = rng.integers(0, 256, n)
    return flows


def labelled_flows(n: int, homes: int, seed: int):
    """(flows, y): synthetic biflows whose device type follows the remote port."""
    flows = synthetic_flows(n, homes=homes, seed=seed, span_ms=SPAN_MS)
    y = np.searchsorted(np.array(sorted(PORTS)), flows["destinationTransportPort"])
    return flows, y.astype(np.int32)


def make_bundle(root: Path, quick: bool) -> Path:
    """A small bundle (``compile.train.fit_bundle``) trained on labelled synthetic flows."""
    from compile.dataset import Dataset
    from compile.train import Options, fit_bundle

    flows, y = labelled_flows(3_000 if quick else 20_000, homes=50, seed=1)
    classes = [f"port-{p}" for p in sorted(PORTS)]
    options = Options(
        grid="4x3" if quick else "20x5",
        folds=2,
        tune_rows=0,
        max_leaves=16 if quick else 128,
        jobs=1,
        no_unbounded=True,
    )
    out = root / "bundle"
    fit_bundle(Dataset(flows, y, classes, "synthetic"), None, out, options)
    return out


def child(bundle_path: Path, homes: int, window: float, records: int, out: Path) -> None:
    """Replay ``records`` flows of ``homes`` homes; write rate and memory to ``out``."""
    import psutil

    from agent.bundle import load_bundle
    from agent.homes import Homes
    from agent.metrics import Metrics
    from agent.pipeline import Pipeline
    from agent.summaries import Summaries

    flows, _ = labelled_flows(records, homes=homes, seed=7)
    bundle = load_bundle(bundle_path)
    emitted = []
    metrics = Metrics()
    summaries = Summaries("bench", bundle.digest, metrics, lambda r: emitted.append(len(r)))
    pipeline = Pipeline(
        bundle,
        Homes(["10.0.0.0/8"], hash_key=b"bench"),
        summaries,
        metrics,
        window=window,
        by_flow_time=True,
    )
    pipeline.process(flows[:BATCH])  # warm: first calls load code paths

    process = psutil.Process()
    rss_before = peak = process.memory_info().rss
    start = time.perf_counter()
    for first in range(BATCH, len(flows), BATCH):
        pipeline.process(flows[first : first + BATCH])
        if first % (16 * BATCH) == 0:
            peak = max(peak, process.memory_info().rss)
    pipeline.finish()
    seconds = time.perf_counter() - start
    rss_after = process.memory_info().rss

    counters = metrics.snapshot()
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "records": len(flows) - BATCH,
                "rss_before_mb": rss_before / 2**20,
                "rss_growth_mb": (rss_after - rss_before) / 2**20,
                "peak_rss_mb": max(peak, rss_after) / 2**20,
                "homes_seen": counters.get("homes", 0),
                "summaries": counters.get("summaries", 0),
                "detections": counters.get("detections", 0),
                "scored": counters.get("scored", 0),
            }
        )
    )


def _run_child(bundle: Path, homes: int, window: float, records: int, workdir: Path) -> dict:
    result = workdir / f"h{homes}-w{int(window)}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_scaling",
        "--child",
        str(bundle),
        str(homes),
        str(window),
        str(records),
        str(result),
    ]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"scaling child homes={homes} window={window} failed:\n{proc.stderr[-2000:]}"
        )
    return json.loads(result.read_text())


def run(quick: bool = False) -> dict:
    """One row per (homes, window): records/s and memory of the whole data path."""
    homes_list = QUICK["homes"] if quick else HOMES
    windows = QUICK["windows"] if quick else WINDOWS
    records = QUICK["records"] if quick else RECORDS
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bundle = make_bundle(workdir, quick)
        for window in windows:
            for homes in homes_list:
                got = _run_child(bundle, homes, window, records, workdir)
                table.append(
                    {
                        "homes": homes,
                        "window s": window,
                        "records": got["records"],
                        "records/s": got["records"] / got["seconds"],
                        "RSS growth MB": got["rss_growth_mb"],
                        "RSS before MB": got["rss_before_mb"],
                        "peak RSS MB": got["peak_rss_mb"],
                        "homes seen": got["homes_seen"],
                        "summaries": got["summaries"],
                        "detections": got["detections"],
                    }
                )
                log.info(
                    "homes=%d window=%.0f records_per_s=%.0f",
                    homes,
                    window,
                    table[-1]["records/s"],
                )
    return {
        "rows": table,
        "batch": BATCH,
        "span_hours": SPAN_MS / 3_600_000,
        "bundle": "20 trees x 128 leaves" if not quick else "4 trees x 16 leaves",
    }


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        child(
            Path(sys.argv[2]),
            int(sys.argv[3]),
            float(sys.argv[4]),
            int(sys.argv[5]),
            Path(sys.argv[6]),
        )
    else:
        sys.exit(
            "usage: python -m benchmarks.bench_scaling --child BUNDLE HOMES WINDOW RECORDS OUT"
        )
