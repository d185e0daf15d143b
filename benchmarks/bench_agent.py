"""The edge agent end to end over UDP loopback: throughput, loss, latency, memory.

A sender process paces YAF biflow records with flow statistics (UDP-sized messages;
templates in a message of their own, refreshed before each pass over the flows) at a
target rate to an agent running in a worker process. The worker timestamps each
datagram as the event loop takes it and again when its batch has been scored (homes
and inventories are learnt from one pass over the same flows first, so the figures are
the steady state), and reports records received and scored, latency percentiles, the
predictor's share of the busy time, the CPU time it used (its share of one core and
per record: on a shared machine loss often means the worker was not given the CPU),
each stage's own rows/s on the same records (wall clock and CPU time, best of three)
with the pipeline's rate as a share of the predictor's, and its peak resident memory.

The records are the testbed's test-period remote flows (demo scale, generated once and
cached), each given one of 20,000 subscriber addresses, and the bundle is what
``compile train`` makes of the testbed's training period with its default options,
trained once in a separate process (so scikit-learn never inflates the worker's
memory). ``IOTWATCH_BENCH_BUNDLE`` names another bundle to use. With ``quick``: a tiny
forest and synthetic flows.

    python -m benchmarks.bench_agent [--quick | --full]
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "iotwatch-bench-agent-bundle"
N_HOMES = 20_000
#: Latencies are kept as a histogram (bounded memory): 50 us bins up to 2 s.
LATENCY_STEP = 50e-6
LATENCY_BINS = 40_000
SEED = 5
#: The rate search: each run sends this much more than the last, at most this many runs.
SEARCH_STEP = 1.25
SEARCH_TRIES = 8
#: Datagrams per ``decode_datagrams`` call in the decode stage alone: the receiver takes
#: every datagram waiting (up to 256) per wakeup, and under load that is tens of them.
BURST = 64
#: Rounds of predictor, pipeline and decoding timed back to back for the shares.
SHARE_ROUNDS = 15


@dataclass
class Setup:
    """What every run uses: the bundle, and the ``.npy`` file of the testbed's flows to
    send (empty: synthetic flows)."""

    bundle: Path
    flows_file: str = ""


def bench_flows(n: int, seed: int = 11, flows_file: str = "") -> np.ndarray:
    """``n`` device flows spread over ``N_HOMES`` subscriber addresses in 100.64/10: the
    testbed's flows in turn when ``flows_file`` names their ``.npy`` file (all started by the
    device, so the device's end becomes the home's), else synthetic ones."""
    if flows_file:
        base = np.load(flows_file)
        flows = base[np.arange(n) % len(base)]
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from model_fixtures import MAR_TEST, synthetic_flows

        flows, _ = synthetic_flows(n // 4 + 1, MAR_TEST, 1, seed)
        flows = flows[:n]
    rng = np.random.default_rng(seed)
    home = rng.integers(0, N_HOMES, n)
    flows["sourceAddress"][:, :10] = 0
    flows["sourceAddress"][:, 10:12] = 0xFF
    flows["sourceAddress"][:, 12] = 100
    flows["sourceAddress"][:, 13] = 64 + (home >> 16)
    flows["sourceAddress"][:, 14] = (home >> 8) & 0xFF
    flows["sourceAddress"][:, 15] = home & 0xFF
    now_ms = int(time.time() * 1000)
    flows["flowStartMilliseconds"] = now_ms - 60_000 + np.arange(n) % 50_000
    flows["flowEndMilliseconds"] = flows["flowStartMilliseconds"] + 500
    return flows


def _setup(quick: bool) -> Setup:
    """The bundle and flows; the testbed and its default bundle are made once and cached."""
    given = os.environ.get("IOTWATCH_BENCH_BUNDLE")
    if quick:
        return Setup(Path(given) if given else _tiny_bundle())
    testbed = CACHE / "testbed"
    if not (testbed / "devices.csv").exists():
        subprocess.run(
            [sys.executable, "-m", "compile", "testbed", "--out", str(testbed)]
            + ["--scale", "0.02", "--seed", "1"],
            cwd=ROOT,
            check=True,
        )
    bundle = Path(given) if given else CACHE / "testbed-bundle"
    if not (bundle / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "compile", "train", "--data", str(testbed)]
            + ["--out", str(bundle)],
            cwd=ROOT,
            check=True,
        )
    flows = CACHE / "testbed-test-flows.npy"
    if not flows.exists():
        from compile import dataset

        np.save(flows, dataset.load(testbed, "test").flows)
    return Setup(bundle, str(flows))


def _tiny_bundle() -> Path:
    folder = CACHE / "tiny"
    if (folder / "bundle" / "manifest.json").exists():
        return folder / "bundle"
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from pathlib import Path; from model_fixtures import datasets, tiny_options;"
        "from compile.train import fit_bundle;"
        "train, test = datasets(n_per_class=300);"
        f"fit_bundle(train, test, Path({str(folder / 'bundle')!r}), tiny_options())"
    )
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return folder / "bundle"


def sender(port: int, rate: float, seconds: float, seed: int, flows_file: str) -> dict:
    """Send paced datagrams to ``port`` for ``seconds``; records and datagrams sent.

    Templates go in a message of their own, sent again before each pass over the
    flows (as a UDP exporter refreshes them), not in every message.
    """
    from agent.ipfix import Decoder
    from agent.ipfix.writer import yaf_messages

    flows = bench_flows(20_000, seed, flows_file)
    messages = list(yaf_messages(flows, mtu=1400, templates="once"))
    decoder = Decoder()
    rows = [len(decoder.decode_message(m, "count").flows) for m in messages]
    per_message = len(flows) / len(messages)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent, records = 0, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate / per_message) + 1 if rate else sent + 64
        while sent < due:
            sock.sendto(messages[sent % len(messages)], ("127.0.0.1", port))
            records += rows[sent % len(messages)]
            sent += 1
        if rate:
            time.sleep(0.0005)
    return {"records": records, "datagrams": sent, "seconds": elapsed}


def worker(bundle: Path, port: int, seconds: float, flows_file: str) -> dict:
    """Run the agent in this process for ``seconds`` and report what it measured."""
    import psutil

    from agent.app import Agent
    from agent.config import build_config

    folder = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    config = build_config(
        {
            "agent": {"id": "bench", "log_level": "WARNING"},
            "listen": {
                "address": "127.0.0.1",
                "udp_port": port,
                "tcp_port": 0,
                "exporters": ["127.0.0.1"],
            },
            "model": {"bundle": str(bundle)},
            "homes": {"prefixes": ["100.64.0.0/10"]},
            "spool": {"path": str(folder / "spool")},
        },
        base=folder,
    )
    agent = Agent(config)
    agent.pipeline.roll(time.time())
    agent.pipeline.process(bench_flows(20_000, SEED, flows_file))
    arrivals: list[float] = []
    latency_hist = np.zeros(LATENCY_BINS + 1, dtype=np.int64)
    sizes: list[int] = []
    busy = {"pipeline": 0.0, "predictor": 0.0}

    on_message, on_burst, flush = agent.on_message, agent.on_burst, agent.batcher.flush
    predict = agent.bundle.predictor.predict_proba

    def timed_message(message, session):
        arrivals.append(time.perf_counter())
        on_message(message, session)

    def timed_burst(datagrams, sessions):
        arrivals.extend([time.perf_counter()] * len(datagrams))
        on_burst(datagrams, sessions)

    def timed_flush():
        sizes.append(agent.batcher.rows)
        started = time.perf_counter()
        flush()
        done = time.perf_counter()
        busy["pipeline"] += done - started
        if arrivals:
            waited = done - np.array(arrivals)
            bins = np.minimum((waited / LATENCY_STEP).astype(np.int64), LATENCY_BINS)
            np.add.at(latency_hist, bins, 1)
        arrivals.clear()

    def timed_predict(X):
        started = time.perf_counter()
        out = predict(X)
        busy["predictor"] += time.perf_counter() - started
        return out

    agent.on_message = timed_message
    agent.receiver.handler = timed_message
    agent.receiver.on_burst = timed_burst
    agent.batcher.flush = timed_flush
    agent.bundle.predictor.predict_proba = timed_predict

    process = psutil.Process()
    peak = {"rss": 0}
    cpu = {"start": 0.0, "run": 0.0}

    async def main():
        await agent.start()
        cpu["start"] = time.process_time()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            await asyncio.sleep(0.2)
        cpu["run"] = time.process_time() - cpu["start"]
        agent.stopping.set()
        await agent.shutdown()

    asyncio.run(main())
    shutil.rmtree(folder, ignore_errors=True)
    counters = agent.metrics.snapshot()
    cumulative = np.cumsum(latency_hist)

    def percentile(q):
        rank = np.searchsorted(cumulative, q / 100 * max(cumulative[-1], 1))
        return (rank + 0.5) * LATENCY_STEP * 1000

    return {
        "records_in": counters.get("records_in", 0),
        "scored": counters.get("scored", 0),
        "decode_errors": counters.get("decode_errors", 0),
        "latency_p50_ms": percentile(50),
        "latency_p99_ms": percentile(99),
        "pipeline_s": busy["pipeline"],
        "predictor_s": busy["predictor"],
        "rss_mb": peak["rss"] / 2**20,
        "cpu_s": cpu["run"],
        "run_s": seconds,
        "batch_rows_mean": float(np.mean(sizes)) if sizes else 0.0,
        **stages(agent, predict, flows_file),
    }


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _timed(step, rows: int):
    """A step that times itself: runs ``step()`` and returns (wall s, CPU s, rows)."""

    def run():
        started = _clock()
        step()
        done = _clock()
        return done[0] - started[0], done[1] - started[1], rows

    return run


def _best_rate(run, repeat: int = 3) -> tuple[float, float]:
    """(wall, CPU) rows/s of a self-timed step, best of ``repeat`` runs: on a shared
    machine the best run is the one least disturbed by other processes."""
    wall = cpu = 0.0
    for _ in range(repeat):
        wall_s, cpu_s, rows = run()
        wall = max(wall, rows / max(wall_s, 1e-9))
        cpu = max(cpu, rows / max(cpu_s, 1e-9))
    return wall, cpu


def _decoding(messages: list, session, burst: int):
    """A self-timed step decoding ``messages`` with a new decoder (one message at a time
    when ``burst`` is 0, else ``decode_datagrams`` on bursts of that many), timing all
    but the first message (the templates) and the first burst or message after it: a
    decoder lives as long as the agent, so its set-up (learning the templates and
    compiling their plans, once per exporter) is left out of the steady-state rate."""
    from agent.ipfix import Decoder

    def run():
        decoder = Decoder()
        decoder.decode_message(messages[0], session)
        step = max(burst, 1)
        first = messages[1 : 1 + step]
        decoder.decode_datagrams(first, [session] * len(first))
        rows = 0
        started = _clock()
        for at in range(1 + step, len(messages), step):
            if burst:
                part = messages[at : at + burst]
                rows += len(decoder.decode_datagrams(part, [session] * len(part)).flows)
            else:
                rows += len(decoder.decode_message(messages[at], session).flows)
        done = _clock()
        return done[0] - started[0], done[1] - started[1], rows

    return run


def stages(agent, predict, flows_file: str) -> dict:
    """Rows/s of each stage alone on the same records (wall clock and CPU time, best of
    three): decoding one message at a time and in bursts of ``BURST`` datagrams (in the
    steady state: see ``_decoding``), the predictor and the pipeline in batches of the
    agent's ``batch_size``; and the pipeline's rate, alone and with decoding in bursts,
    as a share of the predictor's.

    The shares come from ``SHARE_ROUNDS`` rounds that each time the predictor, the
    pipeline and the decoding back to back (CPU time per row): the median round's share,
    and the lowest and highest, since on a shared machine the three best-of-three rates
    may come from moments of different load."""
    from agent.features import feature_matrix
    from agent.ipfix.writer import yaf_messages

    flows = bench_flows(20_480, SEED, flows_file)
    session = ("udp", "127.0.0.1", 1)
    rates, bursts = {}, None
    for mode in ("every", "once"):
        messages = list(yaf_messages(flows, mtu=1400, templates=mode))
        wall, cpu = _best_rate(_decoding(messages, session, 0))
        rates[f"decode_templates_{mode}_rows_per_s"] = wall
        rates[f"decode_templates_{mode}_cpu_rows_per_s"] = cpu
        bursts = _decoding(messages, session, BURST)
        wall, cpu = _best_rate(bursts)
        rates[f"decode_bursts_templates_{mode}_rows_per_s"] = wall
        rates[f"decode_bursts_templates_{mode}_cpu_rows_per_s"] = cpu

    batch = agent.config.model["batch_size"]
    parts = [flows[at : at + batch] for at in range(0, len(flows), batch)]
    X = [feature_matrix(part) for part in parts]
    agent.bundle.predictor.predict_proba = predict
    predictor = _timed(lambda: [predict(x) for x in X], len(flows))
    pipeline = _timed(lambda: [agent.pipeline.process(p) for p in parts], len(flows))

    wall, cpu = _best_rate(predictor)
    rates["predictor_rows_per_s"], rates["predictor_cpu_rows_per_s"] = wall, cpu
    wall, cpu = _best_rate(pipeline)
    rates["pipeline_rows_per_s"], rates["pipeline_cpu_rows_per_s"] = wall, cpu

    alone, with_decode = [], []
    for _ in range(SHARE_ROUNDS):
        per_row = []
        for step in (predictor, pipeline, bursts):
            _, cpu_s, rows = step()
            per_row.append(cpu_s / max(rows, 1))
        alone.append(per_row[0] / per_row[1])
        with_decode.append(per_row[0] / (per_row[1] + per_row[2]))
    for name, shares in (("pipeline", alone), ("pipeline_with_decode", with_decode)):
        rates[f"{name}_share_of_predictor"] = float(np.median(shares))
        rates[f"{name}_share_of_predictor_range"] = [min(shares), max(shares)]
    return rates


def scenario(setup: Setup, rate: float, seconds: float) -> dict:
    """One run: a worker and a paced sender; merged figures."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    me = [sys.executable, "-m", "benchmarks.bench_agent"]
    agent = subprocess.Popen(
        me + ["worker", str(setup.bundle), str(port), str(seconds + 6), setup.flows_file],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    sent = json.loads(
        subprocess.run(
            me + ["sender", str(port), str(rate), str(seconds), str(SEED), setup.flows_file],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    got = json.loads(agent.communicate(timeout=seconds + 120)[0])
    lost = sent["records"] - got["records_in"]
    return {
        "target_rate": rate or "unpaced",
        "sent_rate": round(sent["records"] / sent["seconds"]),
        "records_sent": sent["records"],
        "records_lost": lost,
        "scored": got["scored"],
        "latency_p50_ms": round(got["latency_p50_ms"], 3),
        "latency_p99_ms": round(got["latency_p99_ms"], 3),
        "predictor_share_live": round(got["predictor_s"] / max(got["pipeline_s"], 1e-9), 3),
        "rss_mb": round(got["rss_mb"], 1),
        "worker_cpu_share": round(got["cpu_s"] / got["run_s"], 3),
        "cpu_us_per_record": round(got["cpu_s"] / max(got["records_in"], 1) * 1e6, 2),
        "batch_rows_mean": round(got["batch_rows_mean"], 1),
        **{key: round(value) for key, value in got.items() if key.endswith("_rows_per_s")},
        **{
            key: _rounded(value, 3)
            for key, value in got.items()
            if key.startswith("pipeline") and "_share_of_predictor" in key
        },
    }


def _rounded(value, digits: int):
    if isinstance(value, list):
        return [round(v, digits) for v in value]
    return round(value, digits)


def search(setup: Setup, seconds: float, start: float, step: float, tries: int) -> tuple:
    """Runs at ``start``, ``start * step``, ... until one loses a record (or ``tries``
    runs): the rows, and the highest rate held with zero loss (None if ``start`` lost)."""
    rows, best, rate = [], None, start
    for _ in range(tries):
        row = scenario(setup, rate, seconds)
        rows.append(row)
        if row["records_lost"] > 0:
            break
        best = row["sent_rate"]
        rate = round(rate * step)
    return rows, best


def run(quick: bool) -> dict:
    """Latency at 10k records/s; rates from 100k records/s up by a quarter until a run
    loses records (the highest held with zero loss); then unpaced."""
    setup = _setup(quick)
    seconds = 2.0 if quick else 60.0
    rows = [scenario(setup, 10_000, seconds)]
    found, best = search(setup, seconds, 100_000, SEARCH_STEP, 1 if quick else SEARCH_TRIES)
    rows += found + [scenario(setup, 0, seconds)]
    return {
        "bundle": str(setup.bundle),
        "flows": "testbed scale 0.02, test period" if setup.flows_file else "synthetic",
        "seconds_per_run": seconds,
        "highest_zero_loss_rate": best,
        "rows": rows,
    }


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "--quick"
    if command == "worker":
        flows_file = sys.argv[5] if len(sys.argv) > 5 else ""
        print(
            json.dumps(worker(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), flows_file))
        )
    elif command == "sender":
        rate, seconds = float(sys.argv[3]), float(sys.argv[4])
        flows_file = sys.argv[6] if len(sys.argv) > 6 else ""
        print(json.dumps(sender(int(sys.argv[2]), rate, seconds, int(sys.argv[5]), flows_file)))
    else:
        print(json.dumps(run(quick=command == "--quick"), indent=2))
