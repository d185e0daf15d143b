"""``python -m compile demo --out DIR``: the whole chain on built-in data, as an ISP runs it.

testbed (lab days + a multi-home post-NAT stream) -> train (tune, thresholds, baselines,
compile) -> evaluate (report) -> the store serving -> the agent as a daemon fed the stream
over UDP on loopback -> per-home inventory precision and recall against the testbed's
ground truth -> where to open the store's page.
"""

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

AGENT_ID = "demo-edge"
SEND_RATE = 20_000  # records/s offered to the agent: a mid-sized BNG's export
DATAGRAM_MTU = 1400


def _step(title: str) -> float:
    print(f"== {title}", flush=True)
    return time.perf_counter()


def _run_module(args: list[str], logfile: Path) -> None:
    """A ``python -m`` step in its own process, so its memory is returned when it ends.

    Its standard output is shown; its log goes to ``logfile``, and its tail is shown if
    the step fails.
    """
    cmd = [sys.executable, "-m", *args]
    with open(logfile, "w") as err:
        proc = subprocess.run(cmd, stderr=err, check=False)
    if proc.returncode != 0:
        tail = logfile.read_text().splitlines()[-20:]
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}; its log {logfile} ends:\n"
            + "\n".join(tail)
        )


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent_config(out: Path, bundle: Path, homes: list[dict], store_url: str) -> Path:
    """The daemon's TOML: loopback exporter, the testbed's home addresses as subscribers."""
    subscribers = out / "subscribers.csv"
    subscribers.write_text(
        "prefix,subscriber_id\n"
        + "".join(f"{h['public_address']}/32,{h['subscriber_id']}\n" for h in homes)
    )
    networks = ipaddress.collapse_addresses(
        ipaddress.ip_network(f"{h['public_address']}/24", strict=False) for h in homes
    )
    prefixes = ", ".join(f'"{n}"' for n in networks)
    udp_port, metrics_port = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    config = out / "agent.toml"
    config.write_text(
        f"""[agent]
id = "{AGENT_ID}"

[listen]
address = "127.0.0.1"
udp_port = {udp_port}
tcp_port = 0
exporters = ["127.0.0.1"]

[model]
bundle = "{bundle.resolve()}"

[homes]
prefixes = [{prefixes}]
subscribers = "{subscribers.resolve()}"

[trust]
clock = "flow"

[upstream]
url = "{store_url}"
secret_file = "{(out / "agent.secret").resolve()}"

[spool]
path = "{(out / "spool").resolve()}"

[metrics]
port = {metrics_port}
"""
    )
    return config


def _counters(metrics_port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            name = name.removeprefix("iotwatch_agent_").removesuffix("_total")
            values[name] = float(value)
    return values


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def send_stream(path: Path, port: int, rate: float) -> int:
    """Send an IPFIX file's flow records to ``port`` as YAF-style UDP datagrams at ``rate``."""
    from agent.ipfix import decode_file
    from agent.ipfix.writer import yaf_messages

    flows = decode_file(path)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    start = time.perf_counter()
    step = 2_000
    for first in range(0, len(flows), step):
        for message in yaf_messages(flows[first : first + step], mtu=DATAGRAM_MTU):
            sock.sendto(message, ("127.0.0.1", port))
        ahead = (first + step) / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)
    sock.close()
    return len(flows)


def inventory_scores(store_db: str, homes: list[dict]) -> dict:
    """Per-home precision and recall of the stored inventories against the ground truth."""
    from store import queries
    from store.database import Database

    db = Database(store_db)
    conn = db.connect(autocommit=True)
    try:
        rows = queries.devices(db, conn, limit=queries.MAX_LIMIT)
    finally:
        conn.close()
    found: dict[str, set] = {}
    for row in rows:
        found.setdefault(row["home"], set()).add(row["device_type"])

    per_home, tp, fp, fn = [], 0, 0, 0
    for home in homes:
        truth = set(home["iot_device_types"])
        got = found.get(home["subscriber_id"], set())
        hit = len(truth & got)
        tp, fp, fn = tp + hit, fp + len(got - truth), fn + len(truth - got)
        per_home.append(
            {
                "home": home["subscriber_id"],
                "precision": hit / len(got) if got else None,
                "recall": hit / len(truth) if truth else None,
            }
        )
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "homes": per_home,
    }


def run_live(out: Path, testbed: Path, bundle: Path, rate: float) -> dict:
    """Store in-process, agent daemon in a subprocess, stream over UDP; the scores."""
    from store.demo import fill_report, start_store, write_agents_file

    homes = json.loads((testbed / "isp" / "homes.json").read_text())
    store_db = f"sqlite:///{(out / 'store.db').resolve()}"
    for stale in (out / "store.db", out / "spool"):
        if stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            subprocess.run(["rm", "-rf", str(stale)], check=True)
    write_agents_file(out / "agents.toml", AGENT_ID, out / "agent.secret")
    server = start_store(store_db, out / "agents.toml", bundle=bundle)
    config = _agent_config(out, bundle, homes, server.url)
    text = config.read_text()
    udp_port = int(text.split("udp_port = ")[1].split()[0])
    metrics_port = int(text.split("[metrics]\nport = ")[1].split()[0])

    agent_log = open(out / "agent.log", "w")  # noqa: SIM115 - open while the daemon runs
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=agent_log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _counters(metrics_port) is not None, 60, "the agent to listen")
        start = time.perf_counter()
        sent = send_stream(testbed / "isp" / "stream.ipfix", udp_port, rate)
        send_seconds = time.perf_counter() - start
        _wait_for(
            lambda: _counters(metrics_port).get("records_in", 0) >= sent,
            120,
            "the agent to take every record",
        )
        _wait_for(
            lambda: _counters(metrics_port).get("spool_depth", 1) == 0,
            180,
            "the agent to deliver its summaries to the store",
        )
        counters = _counters(metrics_port)
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=120)
        agent_log.close()
    server.stop()
    if code != 0:
        raise RuntimeError(f"the agent exited with {code}; see {out / 'agent.log'}")

    scores = inventory_scores(store_db, homes)
    scores.update(
        sent=sent,
        send_seconds=send_seconds,
        received=int(counters.get("records_in", 0)),
        scored=int(counters.get("scored", 0)),
        accepted=int(counters.get("accepted", 0)),
        store_line=fill_report(store_db, out / "agents.toml"),
    )
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile demo", description=__doc__)
    parser.add_argument("--out", default="out/demo", type=Path, help="output folder")
    parser.add_argument("--scale", type=float, default=0.02, help="testbed scale")
    parser.add_argument("--homes", type=int, default=20, help="homes in the ISP stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=SEND_RATE, help="records/s to the agent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    testbed, bundle, report = out / "testbed", out / "bundle", out / "report"
    began = time.perf_counter()

    t = _step(f"testbed: scale {args.scale}, {args.homes} homes -> {testbed}")
    _run_module(
        ["compile", "testbed", "--out", str(testbed), "--scale", str(args.scale),
         "--seed", str(args.seed), "--homes", str(args.homes)],
        out / "testbed.log",
    )  # fmt: skip
    print(f"   {time.perf_counter() - t:.0f} s")

    t = _step(f"train and compile -> {bundle}")
    _run_module(
        ["compile", "train", "--data", str(testbed), "--out", str(bundle)], out / "train.log"
    )
    print(f"   {time.perf_counter() - t:.0f} s")

    t = _step(f"evaluate the test period -> {report}")
    _run_module(
        ["compile", "evaluate", "--bundle", str(bundle), "--data", str(testbed),
         "--report", str(report)],
        out / "evaluate.log",
    )  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text())
    print(f"   {time.perf_counter() - t:.0f} s")

    t = _step(f"agent daemon fed the post-NAT stream over UDP at {args.rate:,.0f} records/s")
    live = run_live(out, testbed, bundle, args.rate)
    print(f"   {time.perf_counter() - t:.0f} s")
    (out / "live.json").write_text(json.dumps(live, indent=1) + "\n")

    print()
    print("summary")
    for key in (
        "cv_macro_accuracy",
        "test_macro_accuracy_model",
        "test_macro_accuracy_lambda1",
        "test_macro_accuracy_lambda2",
        "test_discard_rate_lambda1",
    ):
        if key in metrics:
            print(f"  {key:30} {metrics[key]:.3f}")
    print(
        f"  agent: {live['sent']:,} records sent in {live['send_seconds']:.1f} s, "
        f"{live['received']:,} received, {live['scored']:,} scored, "
        f"{live['accepted']:,} accepted"
    )
    print(
        f"  per-home inventories against ground truth: precision {live['precision']:.3f}, "
        f"recall {live['recall']:.3f} over {len(live['homes'])} homes"
    )
    print(f"  report: {report / 'report.md'}")
    print(f"  {live['store_line']}")
    print(f"  total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
