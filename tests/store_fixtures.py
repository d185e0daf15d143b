"""Fixtures for the store's tests: a throwaway PostgreSQL cluster, a database per test on
each backend, a running store, and summaries signed the way an agent signs them."""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import pytest
from conftest import require_tool

from store.app import Settings, StoreServer
from store.auth import signed_headers
from store.pgcluster import PgCluster, find_pg_bin, free_port  # noqa: F401
from store.summary import Rules

DEVICE_TYPES = frozenset(
    {"Amazon Echo", "Belkin Wemo switch", "Netatmo camera", "Samsung SmartCam", "TP-Link plug"}
)
SECRETS = {"bng-01": b"s3cret-for-bng-01-0123456789", "bng-02": b"another-secret-bng-02-xyz"}
T0 = 1_760_000_000.0
ROOT_DIR = Path(__file__).resolve().parent.parent


def make_cluster() -> PgCluster:
    """A new (not yet initialised) cluster; skips or fails like require_tool when the
    PostgreSQL server binaries are missing."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        require_tool("initdb")
    return PgCluster(bin_dir)


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the whole test session."""
    cluster = make_cluster()
    cluster.init()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="session")
def pg_database(pg_cluster) -> str:
    """One database the PostgreSQL-backed tests take turns on."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty database on each backend (PostgreSQL: the shared one, emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    import psycopg

    url = request.getfixturevalue("pg_database")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


def settings(db_url: str, **kwargs) -> Settings:
    """Store settings with the test agents and device types."""
    kwargs.setdefault("rules", Rules(DEVICE_TYPES))
    return Settings(db_url=db_url, secrets=dict(SECRETS), **kwargs)


@pytest.fixture
def store(db_url):
    """A running store on the test database."""
    server = StoreServer(settings(db_url))
    server.start()
    yield server
    server.stop()


def detections(agent: str = "bng-01", seq: int = 1, events: list | None = None, **top) -> dict:
    """A detections summary as an agent would build it."""
    if events is None:
        events = [event("home-1", "Amazon Echo")]
    body = {
        "v": 1,
        "agent": agent,
        "seq": seq,
        "kind": "detections",
        "sent_at": T0 + seq,
        "model": "m-1a2b3c",
        "counters": {"flows": 10 * seq},
        "events": events,
    }
    body.update(top)
    return body


def event(
    home: str, device_type: str, first_seen: float = T0, hit_time: float = 30.0, hit_flow: int = 3
) -> dict:
    """One inventory event."""
    return {
        "home": home,
        "device_type": device_type,
        "first_seen": first_seen,
        "detected": first_seen + hit_time,
        "hit_time": hit_time,
        "hit_flow": hit_flow,
    }


def trust(
    agent: str = "bng-01",
    seq: int = 1,
    home: str = "home-1",
    start: float = T0,
    devices: list | None = None,
    **top,
) -> dict:
    """A trust summary for one home-window."""
    if devices is None:
        devices = [device("Amazon Echo", 0.9)]
    body = {
        "v": 1,
        "agent": agent,
        "seq": seq,
        "kind": "trust",
        "sent_at": start + 3600,
        "model": "m-1a2b3c",
        "counters": {"flows": seq},
        "home": home,
        "window": {"start": start, "end": start + 3600},
        "devices": devices,
    }
    body.update(top)
    return body


def device(device_type: str, value: float, accepted: int = 40, discarded: int = 2) -> dict:
    """One device type's trust entry."""
    return {
        "device_type": device_type,
        "accepted": accepted,
        "discarded": discarded,
        "raw_trust": 1.0,
        "trust": value,
    }


def post(
    url: str,
    body: dict | bytes,
    agent: str = "bng-01",
    secret: bytes | None = None,
    headers: dict | None = None,
    now: float | None = None,
) -> tuple[int, dict]:
    """POST a summary signed like an agent; (status, JSON answer)."""
    data = body if isinstance(body, bytes) else msgpack.packb(body)
    signed = signed_headers(
        agent, SECRETS.get(agent, b"x") if secret is None else secret, data, now=now
    )
    if headers is not None:
        signed.update(headers)
        signed = {k: v for k, v in signed.items() if v is not None}
    request = urllib.request.Request(
        url + "/api/v1/ingest", data=data, headers=signed, method="POST"
    )
    return _send(request)


def get(url: str, path: str) -> tuple[int, object]:
    """GET a JSON API path; (status, decoded JSON)."""
    return _send(urllib.request.Request(url + path))


def _send(request) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"text": text.decode("utf-8", "replace")}


def count_rows(db_url: str, table: str) -> int:
    """Rows in one table, read straight from the database."""
    from store.database import Database

    db = Database(db_url)
    conn = db.connect(autocommit=True)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` until true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
