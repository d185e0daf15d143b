"""Tests of the offline twins: `agent replay` and `agent score` over files."""

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_fixtures import CLASSES, synthetic_flows, tiny_bundle  # noqa: F401

from agent.flows import pack_address
from agent.ipfix.smjson import write_smjson
from agent.ipfix.writer import write_yaf_file

ROOT = Path(__file__).resolve().parent.parent
HOMES = ["100.64.0.7", "100.64.0.9"]


def flows_file(tmp_path, fmt="ipfix", recent=False):
    flows, _ = synthetic_flows(25, 1_584_662_400_000, 1, 9)
    for i, home in enumerate(HOMES):
        flows["sourceAddress"][i :: len(HOMES)] = pack_address(home)
    flows["sourceAddress"][0] = pack_address("192.168.1.5")
    flows["destinationAddress"][0] = pack_address("192.168.1.1")
    if recent:
        shift = int(time.time() * 1000) - 600_000 - int(flows["flowStartMilliseconds"].min())
        flows["flowStartMilliseconds"] += shift
        flows["flowEndMilliseconds"] += shift
    path = tmp_path / ("flows.json" if fmt == "json" else "flows.ipfix")
    (write_smjson if fmt == "json" else write_yaf_file)(path, flows)
    return path, flows


def agent(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def content(lines):
    """Summaries without the parts that depend on when they were made."""
    out = []
    for line in lines:
        doc = json.loads(line)
        doc.pop("sent_at")
        doc.pop("counters")
        out.append(doc)
    return out


def test_replay_ipfix_and_json_agree(tmp_path, tiny_bundle):  # noqa: F811
    """The same flows as IPFIX and as Super Mediator JSON replay to the same summaries."""
    ipfix, flows = flows_file(tmp_path)
    smjson, _ = flows_file(tmp_path, "json")
    key = tmp_path / "key"
    key.write_text("fixed-key\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[listen]\nexporters = ["192.0.2.1"]\n[model]\nbundle = "{tiny_bundle}"\n'
        f'[homes]\nprefixes = ["100.64.0.0/10"]\nhash_key_file = "{key}"\n'
        "[trust]\nwindow = 21600\n"
    )
    runs = [
        agent("replay", "--bundle", tiny_bundle, "--config", config, p) for p in (ipfix, smjson)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b = (content(r.stdout.splitlines()) for r in runs)
    assert a == b
    kinds = {d["kind"] for d in a}
    assert kinds == {"detections", "trust"}
    assert {d["home"] for d in a if d["kind"] == "trust"} <= {
        e["home"] for d in a if d["kind"] == "detections" for e in d["events"]
    }
    total = sum(
        x["accepted"] + x["discarded"] for d in a if d["kind"] == "trust" for x in d["devices"]
    )
    assert total == len(flows) - 1
    assert [d["seq"] for d in a] == list(range(1, len(a) + 1))


def test_score_prints_each_remote_record(tmp_path, tiny_bundle):  # noqa: F811
    """`agent score` prints one JSON line per remote record; the local one is skipped."""
    path, flows = flows_file(tmp_path)
    done = agent("score", "--bundle", tiny_bundle, path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(flows) - 1
    assert [line["index"] for line in lines] == list(range(1, len(flows)))
    assert all(line["device_type"] in CLASSES for line in lines)
    assert all(0.0 <= line["confidence"] <= 1.0 for line in lines)
    assert {type(line["accepted"]) for line in lines} == {bool}


def test_replay_with_a_missing_bundle_fails_clearly(tmp_path):
    """A bundle folder without a manifest is refused with exit 2 and the path named."""
    path, _ = flows_file(tmp_path)
    done = agent("replay", "--bundle", tmp_path / "nothing", path)
    assert done.returncode == 2
    assert "nothing" in done.stderr


def test_replay_pushes_to_the_real_store(tmp_path, tiny_bundle):  # noqa: F811
    """With --upstream, replay delivers every summary to the store and exits 0."""
    store_app = pytest.importorskip("store.app")
    path, _ = flows_file(tmp_path, recent=True)
    secret = tmp_path / "secret"
    secret.write_text("replay-secret-0123456789\n")
    settings = store_app.Settings(
        db_url=f"sqlite:///{tmp_path}/store.db",
        secrets={"replay-test": b"replay-secret-0123456789"},
    )
    server = store_app.StoreServer(settings)
    url = server.start()
    try:
        done = agent(
            "replay",
            "--bundle",
            tiny_bundle,
            "--upstream",
            url,
            "--secret-file",
            secret,
            "--agent-id",
            "replay-test",
            "--prefix",
            "100.64.0.0/10",
            path,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "store.db") as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM ingest_log ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 3


def test_replay_to_an_absent_store_reports_failure(tmp_path, tiny_bundle):  # noqa: F811
    """When the store never answers, replay exits 1 saying how many were not delivered."""
    path, _ = flows_file(tmp_path, recent=True)
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = agent(
        "replay",
        "--bundle",
        tiny_bundle,
        "--upstream",
        f"http://127.0.0.1:{port}",
        "--secret-file",
        secret,
        "--drain-timeout",
        "1",
        path,
    )
    assert done.returncode == 1
    assert "not delivered" in done.stderr
