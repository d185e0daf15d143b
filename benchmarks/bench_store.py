"""Store ingest speed: summaries/s from 50 concurrent simulated agents, SQLite and PostgreSQL.

The store runs as its own process (``python -m store serve``), as deployed; this process
plays the agents: each sends its summaries one after the other (signed, msgpack, waiting
for the answer), all 50 at once. A summary is one home-window with three device types
(every tenth a detections summary with three events). Afterwards the rows are counted in
the database: every summary must be in the ingest log once, with all its rows.

SQLite runs in WAL mode with synchronous=NORMAL; PostgreSQL is a throwaway local cluster
with fsync on (Debian's server binaries), default synchronous_commit.

    .venv/bin/python benchmarks/bench_store.py            # 50 agents x 200 summaries
    .venv/bin/python benchmarks/bench_store.py --quick    # 50 agents x 20

Each backend is measured with one store process and with two sharing the port.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgpack
import psutil

from store.auth import signed_headers
from store.database import Database
from store.pgcluster import PgCluster, find_pg_bin, free_port

ROOT = Path(__file__).resolve().parent.parent
AGENTS = 50
INGEST = "/api/v1/ingest"
TYPES = ["Amazon Echo", "Belkin Wemo switch", "TP-Link plug"]
T0 = 1_760_000_000.0


def summary(agent: str, seq: int) -> bytes:
    """One summary: a trust home-window, or every tenth a detections summary."""
    home = f"{agent}-home-{seq % 40}"
    common = {
        "v": 1,
        "agent": agent,
        "seq": seq,
        "sent_at": T0 + seq * 60,
        "model": "bench",
        "counters": {"flows": seq * 100, "summaries": seq},
    }
    if seq % 10 == 0:
        events = [
            {
                "home": f"{home}-{t}",
                "device_type": t,
                "first_seen": T0,
                "detected": T0 + 9,
                "hit_time": 9.0,
                "hit_flow": 2,
            }
            for t in TYPES
        ]
        return msgpack.packb({**common, "kind": "detections", "events": events})
    start = T0 + seq * 60
    devices = [
        {"device_type": t, "accepted": 40, "discarded": 3, "raw_trust": 0.98, "trust": 0.95}
        for t in TYPES
    ]
    return msgpack.packb(
        {
            **common,
            "kind": "trust",
            "home": home,
            "window": {"start": start, "end": start + 60},
            "devices": devices,
        }
    )


def serve(
    db_url: str, agents_file: Path, types_file: Path, port: int, processes: int
) -> subprocess.Popen:
    """Start ``python -m store serve`` and wait until it answers."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "store",
            "serve",
            "--db",
            db_url,
            "--agents",
            str(agents_file),
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
            "--processes",
            str(processes),
            "--device-types",
            str(types_file),
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/homes", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("store process exited") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("store process did not start")


async def post(reader, writer, host: str, agent: str, secret: bytes, data: bytes):
    """One signed POST on a kept-alive connection; (status, answer body)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(agent, secret, data).items())
    writer.write(
        f"POST {INGEST} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n"
        f"{head}\r\n".encode()
        + data
    )
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


async def agents_run(host: str, port: int, secrets: dict[str, bytes], per_agent: int) -> dict:
    """All agents at once, each on its own connection (a lean HTTP/1.1 client, so that
    the load generator leaves the cores to the store); counts of answers by status."""
    answers: dict[str, int] = {}
    bodies = {a: [summary(a, seq) for seq in range(1, per_agent + 1)] for a in secrets}

    async def agent(name: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for data in bodies[name]:
            while True:
                status, answer = await post(reader, writer, host, name, secrets[name], data)
                key = json.loads(answer)["status"] if status == 200 else str(status)
                answers[key] = answers.get(key, 0) + 1
                if status == 200:
                    break
                await asyncio.sleep(0.05)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(agent(name) for name in secrets))
    answers["seconds"] = time.perf_counter() - started
    return answers


def count(db_url: str) -> dict:
    """Rows in the ingest log, trust and inventory tables."""
    conn = Database(db_url).connect(autocommit=True)
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("ingest_log", "trust", "inventory")
        }
    finally:
        conn.close()


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a process and its children so far."""
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            total += sum(one.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def measure(backend: str, db_url: str, folder: Path, per_agent: int, processes: int) -> dict:
    """One backend: run the agents against a fresh store; the figures."""
    secrets = {
        f"agent-{i:02d}": f"bench-secret-{i:02d}-0123456789".encode() for i in range(AGENTS)
    }
    agents_file = folder / "agents.toml"
    agents_file.write_text(
        "".join(f'[agents."{a}"]\nsecret = "{s.decode()}"\n' for a, s in secrets.items())
    )
    types_file = folder / "device-types.txt"
    types_file.write_text("\n".join(TYPES) + "\n")
    port = free_port()
    process = serve(db_url, agents_file, types_file, port, processes)
    try:
        server = psutil.Process(process.pid)
        time.sleep(0.5 if processes > 1 else 0.0)
        cpu_before = cpu_seconds(server)
        answers = asyncio.run(agents_run("127.0.0.1", port, secrets, per_agent))
        server_cpu = cpu_seconds(server) - cpu_before
    finally:
        process.terminate()
        process.wait(30)

    sent = AGENTS * per_agent
    detections = AGENTS * (per_agent // 10)
    rows = count(db_url)
    return {
        "backend": backend,
        "store_processes": processes,
        "agents": AGENTS,
        "summaries": sent,
        "seconds": round(answers["seconds"], 3),
        "summaries_per_s": round(sent / answers["seconds"]),
        "store_cpu_us_per_summary": round(server_cpu / sent * 1e6),
        "retried_5xx": sum(v for k, v in answers.items() if k.startswith("5")),
        "ingest_log_rows": rows["ingest_log"],
        "lost_or_doubled": rows["ingest_log"] - sent,
        "trust_rows_ok": rows["trust"] == (sent - detections) * len(TYPES),
    }


def run(quick: bool) -> dict:
    """Ingest figures on both backends (PostgreSQL skipped when its server is missing)."""
    per_agent = 20 if quick else 200
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        folder = Path(tmp)
        for processes in (1, 2):
            url = f"sqlite:///{folder}/store-{processes}.db"
            rows.append(measure("sqlite", url, folder, per_agent, processes))

        bin_dir = find_pg_bin()
        if bin_dir is None:
            return {"rows": rows, "postgresql": "skipped: server binaries not installed"}
        cluster = PgCluster(bin_dir, fsync=True)
        try:
            cluster.init()
            cluster.start()
            for processes in (1, 2):
                url = cluster.new_database()
                rows.append(measure("postgresql", url, folder, per_agent, processes))
        finally:
            cluster.remove()
    return {"rows": rows, "target_summaries_per_s": 2000}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
