"""Reading the store: the query command line (tables and JSON) and the JSON API, with
filters, and alerts that say since when trust has been low."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from store_fixtures import (
    ROOT_DIR,
    T0,
    detections,
    device,
    event,
    get,
    post,
    trust,
)

from store import queries
from store.__main__ import main
from store.database import Database

pytest_plugins = ["store_fixtures"]

HOUR = 3600.0


def fill(url: str) -> None:
    """Two homes: home-1 with an Echo whose trust fell, home-2 with a plug that is fine."""
    events = [
        event("home-1", "Amazon Echo", T0, 20.0, 4),
        event("home-2", "TP-Link plug", T0 + 60, 5.0, 1),
    ]
    assert post(url, detections(seq=1, events=events))[0] == 200
    echo = [0.9, 0.003, 0.8, 0.004, 0.002]
    for i, value in enumerate(echo):
        body = trust(
            seq=2 + i, home="home-1", start=T0 + i * HOUR, devices=[device("Amazon Echo", value)]
        )
        assert post(url, body)[0] == 200
    body = trust(seq=10, home="home-2", start=T0, devices=[device("TP-Link plug", 0.95)])
    assert post(url, body)[0] == 200


def run_cli(*args: str) -> str:
    """The query command's standard output, run in this process."""
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        assert main(["query", *args]) == 0
    return out.getvalue()


def test_api_lists_homes_and_devices(store):
    """The JSON API lists the homes and each home's device types with detection data."""
    fill(store.url)
    _, homes = get(store.url, "/api/v1/homes")
    assert [(h["home"], h["devices"]) for h in homes] == [("home-1", 1), ("home-2", 1)]

    _, devices = get(store.url, "/api/v1/homes/home-1/devices")
    assert len(devices) == 1
    echo = devices[0]
    assert (echo["device_type"], echo["hit_flow"], echo["hit_time"]) == ("Amazon Echo", 4, 20)
    assert echo["detected"] == T0 + 20
    assert echo["trust"] == 0.002


def test_api_trust_filters(store):
    """Trust can be filtered by home, device type and start time, oldest first."""
    fill(store.url)
    _, rows = get(store.url, "/api/v1/trust?home=home-1")
    assert [r["trust"] for r in rows] == [0.9, 0.003, 0.8, 0.004, 0.002]
    _, rows = get(store.url, f"/api/v1/trust?home=home-1&since={T0 + 2 * HOUR}")
    assert [r["trust"] for r in rows] == [0.8, 0.004, 0.002]
    _, rows = get(store.url, "/api/v1/trust?device_type=TP-Link%20plug")
    assert [(r["home"], r["trust"]) for r in rows] == [("home-2", 0.95)]
    assert get(store.url, "/api/v1/trust?since=last%20tuesday")[0] == 400


def test_alerts_say_since_when(store):
    """An alert starts at the first window of the latest run below the level."""
    fill(store.url)
    _, alerts = get(store.url, "/api/v1/alerts")
    assert [(a["home"], a["device_type"]) for a in alerts] == [("home-1", "Amazon Echo")]
    assert alerts[0]["since"] == T0 + 3 * HOUR
    assert alerts[0]["trust"] == 0.002

    _, alerts = get(store.url, "/api/v1/alerts?level=0.001")
    assert alerts == []
    _, alerts = get(store.url, "/api/v1/alerts?level=0.99")
    assert sorted(a["home"] for a in alerts) == ["home-1", "home-2"]
    since = {a["home"]: a["since"] for a in alerts}
    assert since == {"home-1": T0, "home-2": T0}


def test_cli_tables_and_json(store, db_url):
    """The query command prints the same rows as a table or as JSON."""
    fill(store.url)
    homes = json.loads(run_cli("homes", "--json", "--db", db_url))
    assert [h["home"] for h in homes] == ["home-1", "home-2"]

    table = run_cli("devices", "--db", db_url, "--home", "home-2")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["home", "device_type"]
    assert len(lines) == 2 and "TP-Link plug" in lines[1]

    rows = json.loads(
        run_cli(
            "trust",
            "--json",
            "--db",
            db_url,
            "--device-type",
            "Amazon Echo",
            "--since",
            "2025-10-09T10:53:20",
        )
    )
    assert [r["trust"] for r in rows] == [0.8, 0.004, 0.002]

    alerts = run_cli("alerts", "--db", db_url, "--level", "0.5")
    assert "Amazon Echo" in alerts and "TP-Link plug" not in alerts
    assert run_cli("alerts", "--db", db_url, "--level", "0.001").strip() == "(none)"

    agents = json.loads(run_cli("agents", "--json", "--db", db_url))
    assert agents[0]["gaps"] == [[7, 9]]


def test_cli_on_a_database_without_schema(tmp_path, capsys):
    """Querying a database the store never created fails with a clear message."""
    assert main(["query", "homes", "--db", f"sqlite:///{tmp_path}/empty.db"]) == 2
    assert "no store schema" in capsys.readouterr().err


def test_cli_runs_as_module(tmp_path):
    """``python -m store query`` works as a separate process and rejects bad options."""
    done = subprocess.run(
        [sys.executable, "-m", "store", "query", "alerts", "--db", "mysql://nowhere"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=60,
    )
    assert done.returncode == 2
    assert "sqlite:///" in done.stderr

    done = subprocess.run(
        [sys.executable, "-m", "store", "query", "nothing"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=60,
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr


@pytest.mark.parametrize("path", ["/api/v1/homes?limit=x", "/api/v1/alerts?level=high"])
def test_api_bad_parameters_are_400(store, path):
    """A bad query parameter gets 400 naming it."""
    status, answer = get(store.url, path)
    assert status == 400 and answer["field"] in path


def test_two_low_windows_in_three_are_an_alert(store):
    """A drop of two to three sigma is an alert on its second window in three, as the
    evaluation flags it; a rise is not, nor a single low window, nor with run_level=0."""
    z = {"Amazon Echo": [0.0, -2.4, 0.0, -2.2], "TP-Link plug": [0.0, 2.4, 0.0, 2.2]}
    for i in range(4):
        devices = [
            dict(device(name, math.exp(-(v[i] ** 2) / 2)), raw_trust=1.0 + 0.1 * v[i])
            for name, v in z.items()
        ]
        body = trust(seq=1 + i, home="home-1", start=T0 + i * HOUR, devices=devices)
        assert post(store.url, body)[0] == 200

    _, alerts = get(store.url, "/api/v1/alerts")
    assert [(a["device_type"], a["since"]) for a in alerts] == [("Amazon Echo", T0 + 3 * HOUR)]
    _, alerts = get(store.url, "/api/v1/alerts?run_level=0")
    assert alerts == []


def test_alerts_agree_with_the_evaluation_flags(db_url):
    """On random trust series the store alerts exactly the device types whose latest
    window ``compile.baselines.flags`` flags, since the start of that run of flags."""
    from compile.baselines import flags

    rng = np.random.default_rng(4)
    db = Database(db_url)
    db.migrate()
    series = {}
    with db.connect() as conn:
        db.begin(conn)
        for k in range(60):
            z = rng.normal(-1.0, 1.5, size=rng.integers(1, 9))
            raw, value = 1.0 + 0.1 * z, np.exp(-(z**2) / 2)
            series[f"type-{k}"] = (raw, value)
            for w in range(len(z)):
                conn.execute(
                    db.sql(
                        "INSERT INTO trust (home, device_type, window_start, window_end, "
                        "accepted, discarded, raw_trust, trust, agent_id, seq) "
                        "VALUES (?, ?, ?, ?, 1, 0, ?, ?, 'a', 1)"
                    ),
                    ("h", f"type-{k}", T0 + w * HOUR, T0 + (w + 1) * HOUR, raw[w], value[w]),
                )
        conn.commit()

    expected = {}
    for name, (raw, value) in series.items():
        flagged = flags(raw[:, None], value[:, None])[:, 0]
        if flagged[-1]:
            first = len(flagged) - 1
            while first > 0 and flagged[first - 1]:
                first -= 1
            expected[name] = T0 + first * HOUR
    with db.connect(autocommit=True) as conn:
        got = {a["device_type"]: a["since"] for a in queries.alerts(db, conn)}
    assert got == expected and 5 < len(expected) < 55
