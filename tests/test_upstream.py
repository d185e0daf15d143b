"""Tests of pushing summaries upstream: signing, order, retries, rejects, outages."""

import hmac
import json
import threading
import time
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.metrics import Metrics
from agent.spool import Spool
from agent.summaries import Summaries, decode
from agent.upstream import FileTarget, HttpTarget, Uploader, signature

SECRET = b"agent-secret-0123456789"


class FakeStore:
    """A local HTTP store that checks signatures and answers from a script."""

    def __init__(self, script=(), port=0):
        self.script = list(script)
        self.received: list[dict] = []
        self.attempts = 0
        self.bad_signatures = 0
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                store.attempts += 1
                expected = hmac.new(
                    SECRET, f"{self.headers['X-Timestamp']}.".encode() + body, sha256
                ).hexdigest()
                if self.headers["X-Signature"] != expected or self.path != "/api/v1/ingest":
                    store.bad_signatures += 1
                    return self.answer(401, {"error": "signature"})
                action = store.script.pop(0) if store.script else 200
                if action == "slow":
                    time.sleep(1.5)
                    action = 200
                if action == 200:
                    summary = decode(body)
                    seen = any(r["seq"] == summary["seq"] for r in store.received)
                    if not seen:
                        store.received.append(summary)
                    return self.answer(200, {"status": "duplicate" if seen else "stored"})
                self.answer(action, {"error": "scripted"})

            def answer(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def spooled(tmp_path, n, metrics):
    spool = Spool(tmp_path / "spool", 1 << 20, "drop-oldest", metrics)
    summaries = Summaries(
        "bng-test", "m1", metrics, lambda recs: spool.append([(s, p) for s, p, _ in recs])
    )
    t = time.time() - 100.0
    for i in range(n):
        summaries.add_events(
            [
                {
                    "home": f"h{i}",
                    "device_type": "tv",
                    "first_seen": t,
                    "detected": t + 1.0,
                    "hit_time": 1.0,
                    "hit_flow": 1,
                }
            ]
        )
        summaries.flush_detections()
    return spool


def uploader_for(url, spool, metrics, timeout=5.0):
    return Uploader(HttpTarget(url, "bng-test", SECRET, timeout), spool, metrics)


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("agent.upstream.BACKOFF_FIRST", 0.05)
    monkeypatch.setattr("agent.upstream.BACKOFF_MAX", 0.2)


def test_signature_is_hmac_of_timestamp_dot_body():
    """X-Signature is hex HMAC-SHA256(secret, '{timestamp}.' + body)."""
    expected = hmac.new(b"k", b"1700000000.abc", sha256).hexdigest()
    assert signature(b"k", 1700000000, b"abc") == expected


def test_delivers_in_order_with_valid_signatures(tmp_path):
    """Every spooled summary reaches the store once, in sequence order, signed."""
    store, metrics = FakeStore(), Metrics()
    spool = spooled(tmp_path, 6, metrics)
    up = uploader_for(store.url, spool, metrics)
    up.start()
    try:
        assert up.drain(10.0)
    finally:
        up.stop()
        store.close()
    assert [r["seq"] for r in store.received] == [1, 2, 3, 4, 5, 6]
    assert store.bad_signatures == 0
    assert metrics.counters["upstream_sent"] == 6


def test_server_errors_are_retried_without_loss_or_reordering(tmp_path, fast_backoff):
    """500s and 401/413 are retried with backoff; order holds and nothing is lost."""
    store, metrics = FakeStore([500, 503, 200, 413, 401, 200]), Metrics()
    spool = spooled(tmp_path, 4, metrics)
    up = uploader_for(store.url, spool, metrics)
    up.start()
    try:
        assert up.drain(10.0)
    finally:
        up.stop()
        store.close()
    assert [r["seq"] for r in store.received] == [1, 2, 3, 4]
    assert metrics.counters["upstream_failures"] == 4


def test_permanent_reject_is_counted_and_skipped(tmp_path, fast_backoff):
    """A 400 is logged and counted, the summary skipped, and the next ones still go."""
    store, metrics = FakeStore([400]), Metrics()
    spool = spooled(tmp_path, 3, metrics)
    up = uploader_for(store.url, spool, metrics)
    up.start()
    try:
        assert up.drain(10.0)
    finally:
        up.stop()
        store.close()
    assert [r["seq"] for r in store.received] == [2, 3]
    assert metrics.counters["upstream_rejected"] == 1


def test_slow_store_times_out_and_is_retried(tmp_path, fast_backoff):
    """An answer slower than the timeout counts as a failure; the retry is a duplicate."""
    store, metrics = FakeStore(["slow"]), Metrics()
    spool = spooled(tmp_path, 2, metrics)
    up = uploader_for(store.url, spool, metrics, timeout=0.5)
    up.start()
    try:
        assert up.drain(15.0)
    finally:
        up.stop()
        store.close()
    assert [r["seq"] for r in store.received] == [1, 2]
    assert metrics.counters["upstream_failures"] >= 1


def test_store_down_then_back(tmp_path, fast_backoff):
    """While nothing listens, summaries stay spooled; once a store appears they all go."""
    probe = FakeStore()
    port = probe.port
    probe.close()
    metrics = Metrics()
    spool = spooled(tmp_path, 5, metrics)
    up = uploader_for(f"http://127.0.0.1:{port}", spool, metrics)
    up.start()
    try:
        time.sleep(0.5)
        assert spool.depth == 5
        assert metrics.counters["upstream_failures"] >= 2
        store = FakeStore(port=port)
        assert up.drain(10.0)
    finally:
        up.stop()
    store.close()
    assert [r["seq"] for r in store.received] == [1, 2, 3, 4, 5]


def test_file_target_writes_json_lines(tmp_path):
    """A file:// upstream appends each summary as one JSON line, in order."""
    metrics = Metrics()
    spool = spooled(tmp_path, 3, metrics)
    out = tmp_path / "summaries.jsonl"
    up = Uploader(FileTarget(f"file://{out}"), spool, metrics)
    while up.step():
        pass
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[0]["events"][0]["home"] == "h0"


def test_real_store_takes_summaries_and_drops_duplicates(tmp_path):
    """Against the real store (SQLite): all stored once; a resend is a duplicate."""
    store_app = pytest.importorskip("store.app")
    settings = store_app.Settings(
        db_url=f"sqlite:///{tmp_path}/store.db", secrets={"bng-test": SECRET}
    )
    server = store_app.StoreServer(settings)
    url = server.start()
    metrics = Metrics()
    try:
        spool = spooled(tmp_path, 4, metrics)
        first = spool.peek()
        up = uploader_for(url, spool, metrics)
        while up.step():
            pass
        assert metrics.counters["upstream_sent"] == 4
        assert spool.peek() is None
        status, answer = up.target.send(first[1])
        assert status == 200 and json.loads(answer)["status"] == "duplicate"
        up.target.close()
    finally:
        server.stop()
