"""Tests of the daemon end to end: UDP in, summaries out, faults, signals, restarts.

Uses the real decoder, features, tiny compiled bundle, spool and (where named) the real
store on SQLite; the daemon itself runs in-process or as a real subprocess.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import datasets, synthetic_flows, tiny_bundle, tiny_options  # noqa: F401

from agent.app import Agent
from agent.bundle import load_bundle
from agent.config import load_config
from agent.errors import BundleError
from agent.features import feature_matrix
from agent.flows import pack_address
from agent.ipfix.writer import yaf_messages
from agent.spool import HEADER
from agent.summaries import decode
from compile.train import fit_bundle

ROOT = Path(__file__).resolve().parent.parent
SECRET = "agent-app-test-secret-0123456789"
HOMES = ["100.64.0.7", "100.64.0.9", "100.64.3.1"]


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_flows(n_per_class=30, seed=3):
    """Synthetic device flows of three homes, ending within the last minutes."""
    flows, _ = synthetic_flows(n_per_class, 1_584_662_400_000, 1, seed)
    now_ms = int(time.time() * 1000)
    flows["flowStartMilliseconds"] = now_ms - 300_000 + np.arange(len(flows)) * 50
    flows["flowEndMilliseconds"] = flows["flowStartMilliseconds"] + 400
    for i, home in enumerate(HOMES):
        flows["sourceAddress"][i :: len(HOMES)] = pack_address(home)
    return flows


def datagrams(flows):
    return list(yaf_messages(flows, mtu=1400))


def write_config(
    tmp_path,
    bundle,
    *,
    url="",
    udp_port=0,
    tcp_port=0,
    metrics_port=0,
    batch_size=64,
    batch_timeout_ms=20,
    window=None,
) -> Path:
    (tmp_path / "secret").write_text(SECRET + "\n")
    lines = [
        "[agent]",
        'id = "bng-test"',
        "[listen]",
        'address = "127.0.0.1"',
        f"udp_port = {udp_port}",
        f"tcp_port = {tcp_port}",
        'exporters = ["127.0.0.1"]',
        "[model]",
        f'bundle = "{bundle}"',
        f"batch_size = {batch_size}",
        f"batch_timeout_ms = {batch_timeout_ms}",
        "[homes]",
        'prefixes = ["100.64.0.0/10"]',
        "[upstream]",
        f'url = "{url}"',
        'secret_file = "secret"',
        "timeout = 2.0",
        "detection_interval = 0.2",
        "[spool]",
        'path = "spool"',
        "[metrics]",
        f"port = {metrics_port}",
    ]
    if window:
        lines += ["[trust]", f"window = {window}"]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def send_udp(port, payloads, pause=0.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", port))
            if pause:
                time.sleep(pause)


def read_jsonl(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def test_udp_and_tcp_to_summaries_with_malformed_input(tmp_path, tiny_bundle):  # noqa: F811
    """Flows over UDP and TCP become detection and trust summaries; junk is counted, survived."""
    out = tmp_path / "summaries.jsonl"
    config = load_config(
        write_config(tmp_path, tiny_bundle, url=f"file://{out}", tcp_port=free_port())
    )
    flows = current_flows()
    by_tcp = flows[1::4]
    by_udp = np.delete(flows, np.s_[1::4])

    async def scenario():
        agent = Agent(config)
        await agent.start()
        ticker = asyncio.ensure_future(agent._ticker())
        port = agent.bound["udp"][1]
        messages = datagrams(by_udp)
        junk = [b"\x00\x0a\x00\x08abcd", messages[0][:20], b"\x00\x0a" + b"\xff" * 40]
        send_udp(port, messages[:2] + junk + messages[2:])
        _, writer = await asyncio.open_connection("127.0.0.1", agent.bound["tcp"][1])
        writer.write(b"".join(yaf_messages(by_tcp, templates="once")))
        await writer.drain()
        assert await wait_for(lambda: agent.metrics.counters["scored"] == len(flows))
        assert await wait_for(lambda: read_jsonl(out))
        writer.close()
        agent.stopping.set()
        ticker.cancel()
        await agent.shutdown()
        return agent.metrics.snapshot()

    counters = asyncio.run(scenario())
    assert counters["records_in"] == len(flows)
    assert counters["decode_errors"] >= 3
    docs = read_jsonl(out)
    assert [d["seq"] for d in docs] == list(range(1, len(docs) + 1))
    events = [e for d in docs if d["kind"] == "detections" for e in d["events"]]
    assert len({e["home"] for e in events}) == len(HOMES)
    trust = [d for d in docs if d["kind"] == "trust"]
    assert len(trust) == len(HOMES)
    counted = sum(x["accepted"] + x["discarded"] for d in trust for x in d["devices"])
    assert counted == len(flows)


def replace_file(path: Path, data: bytes) -> None:
    """Swap a file by rename, as a bundle update should (a loaded library stays mapped)."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def test_reload_with_bad_bundle_keeps_the_running_model(tmp_path, tiny_bundle):  # noqa: F811
    """A bundle failing its digest is refused on reload; the old model keeps scoring."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    config = load_config(write_config(tmp_path, bundle, url=f"file://{tmp_path}/s.jsonl"))
    flows = current_flows()

    async def scenario():
        agent = Agent(config)
        await agent.start()
        digest = agent.bundle.digest
        library = next(bundle.glob("lib/*/model.so"))
        original = library.read_bytes()
        replace_file(library, original + b"tampered")
        assert not await agent.reload()
        assert agent.bundle.digest == digest
        send_udp(agent.bound["udp"][1], datagrams(flows))
        assert await wait_for(lambda: agent.metrics.counters["scored"] == len(flows))
        replace_file(library, original)
        assert await agent.reload()
        agent.stopping.set()
        await agent.shutdown()
        return agent.metrics.snapshot()

    counters = asyncio.run(scenario())
    assert counters["bundle_reload_failures"] == 1
    assert counters["bundle_reloads"] == 1


def test_reload_of_replaced_bundle_uses_new_model(tmp_path, tiny_bundle):  # noqa: F811
    """After the bundle folder is replaced by another model, SIGHUP's reload scores with it."""
    train, test = datasets(n_per_class=120, seed=7)
    fit_bundle(train, test, tmp_path / "other", tiny_options(grid="6x5", max_leaves=8))
    live = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, live)
    config = load_config(write_config(tmp_path, live))
    X = feature_matrix(test.flows[:200])
    expected = load_bundle(tmp_path / "other").predictor.predict_proba(X)

    async def scenario():
        agent = Agent(config)
        await agent.start()
        before = agent.bundle.predictor.predict_proba(X)
        shutil.rmtree(live)
        shutil.copytree(tmp_path / "other", live)
        assert await agent.reload()
        after = agent.bundle.predictor.predict_proba(X)
        agent.stopping.set()
        await agent.shutdown()
        return before, after

    before, after = asyncio.run(scenario())
    assert not np.array_equal(before, expected)
    np.testing.assert_array_equal(after, expected)


def test_bundle_with_wrong_features_is_refused_at_start(tmp_path, tiny_bundle):  # noqa: F811
    """A bundle whose feature list differs from the agent's stops start-up with BundleError."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["feature_names"] = list(reversed(manifest["feature_names"]))
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    config = load_config(write_config(tmp_path, bundle))
    with pytest.raises(BundleError, match="feature_names"):
        Agent(config)


def test_bad_config_exits_with_the_key_named(tmp_path, tiny_bundle):  # noqa: F811
    """`agent run` with an unknown key exits 2 and names the key on stderr."""
    path = write_config(tmp_path, tiny_bundle)
    path.write_text(path.read_text() + "bogus = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(path)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "metrics.bogus" in done.stderr


def spool_bodies(folder: Path) -> list[dict]:
    """Every summary in a spool's segment files, in order (read without consuming)."""
    bodies = []
    for segment in sorted(folder.glob("seg-*.spool")):
        data = segment.read_bytes()
        offset = 0
        while offset < len(data):
            length, _, _ = HEADER.unpack_from(data, offset)
            offset += HEADER.size
            bodies.append(decode(data[offset : offset + length]))
            offset += length
    return bodies


def scrape(port) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    values = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.removeprefix("iotwatch_agent_").removesuffix("_total")] = int(value)
    return values


def start_daemon(config_path):
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_metrics(port, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            values = scrape(port)
            if predicate(values):
                return values
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("daemon metrics never reached the expected state")


def stored_seqs(db: Path) -> tuple[list[int], int]:
    with sqlite3.connect(db) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM ingest_log WHERE agent_id = 'bng-test' ORDER BY seq"
            )
        ]
        gaps = conn.execute("SELECT COUNT(*) FROM seq_gaps").fetchone()[0]
    return seqs, gaps


@pytest.mark.slow
def test_sigterm_mid_stream_and_outage_lose_nothing(tmp_path, tiny_bundle):  # noqa: F811
    """SIGTERM mid-stream with the store down: every record taken in is scored and spooled;
    a restart delivers it all once, survives SIGHUP with a broken bundle, keeps scoring."""
    store_app = pytest.importorskip("store.app")
    store_port = free_port()
    udp_port, metrics_port = free_port(socket.SOCK_DGRAM), free_port()
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    config_path = write_config(
        tmp_path,
        bundle,
        url=f"http://127.0.0.1:{store_port}",
        udp_port=udp_port,
        metrics_port=metrics_port,
        batch_size=256,
    )
    flows = current_flows(n_per_class=150)

    daemon = start_daemon(config_path)
    try:
        wait_metrics(metrics_port, lambda v: "scored" not in v)
        stream = threading.Thread(target=send_udp, args=(udp_port, datagrams(flows), 0.002))
        stream.start()
        wait_metrics(metrics_port, lambda v: v.get("records_in", 0) > 0)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
        stream.join()
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, stderr
    assert "summaries stay spooled" in stderr
    spooled = spool_bodies(tmp_path / "spool")
    final = spooled[-1]["counters"]
    assert 0 < final["records_in"] < len(flows)
    assert final["scored"] == final["records_in"]
    scored_first = sum(
        d["accepted"] + d["discarded"]
        for b in spooled
        if b["kind"] == "trust"
        for d in b["devices"]
    )
    assert scored_first == final["scored"]

    db = tmp_path / "store.db"
    settings = store_app.Settings(db_url=f"sqlite:///{db}", secrets={"bng-test": SECRET.encode()})
    server = store_app.StoreServer(settings, port=store_port)
    server.start()
    try:
        daemon = start_daemon(config_path)
        wait_metrics(
            metrics_port, lambda v: v.get("upstream_sent", 0) > 0 and v.get("spool_depth", 1) == 0
        )
        manifest = bundle / "manifest.json"
        good = manifest.read_text()
        manifest.write_text(good.replace('"classes"', '"klasses"'))
        daemon.send_signal(signal.SIGHUP)
        wait_metrics(metrics_port, lambda v: v.get("bundle_reload_failures", 0) == 1)
        manifest.write_text(good)
        send_udp(udp_port, datagrams(flows[:30]), pause=0.001)
        wait_metrics(metrics_port, lambda v: v.get("records_in", 0) == 30)
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
        assert daemon.returncode == 0
        seqs, gaps = stored_seqs(db)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.stop()
    assert seqs[: len(HOMES) + 1] == list(range(1, len(HOMES) + 2))
    assert seqs == list(range(1, len(seqs) + 1))
    assert gaps == 0
    with sqlite3.connect(db) as conn:
        trust_rows = conn.execute("SELECT SUM(accepted + discarded) FROM trust").fetchone()[0]
        homes = conn.execute("SELECT COUNT(*) FROM homes").fetchone()[0]
    assert trust_rows == scored_first + 30
    assert homes == len(HOMES)
    assert os.path.exists(tmp_path / "spool" / "cursor")


def test_inventory_survives_a_restart(tmp_path, tiny_bundle):  # noqa: F811
    """After a clean stop and start, known devices are not reported as new detections."""
    out = tmp_path / "summaries.jsonl"
    config = load_config(write_config(tmp_path, tiny_bundle, url=f"file://{out}"))
    flows = current_flows()

    async def serve_once():
        agent = Agent(config)
        await agent.start()
        restored = len(agent.pipeline.homes)
        send_udp(agent.bound["udp"][1], datagrams(flows))
        assert await wait_for(lambda: agent.metrics.counters["scored"] == len(flows))
        agent.stopping.set()
        await agent.shutdown()
        return restored, agent.metrics.snapshot()

    first_restored, first = asyncio.run(serve_once())
    second_restored, second = asyncio.run(serve_once())
    assert first_restored == 0 and second_restored == len(HOMES)
    assert first["detections"] > 0
    assert second.get("detections", 0) == 0
    docs = read_jsonl(out)
    assert [d["seq"] for d in docs] == list(range(1, len(docs) + 1))
