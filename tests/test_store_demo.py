"""The demo helpers: an agents file for one agent, an in-process store, a closing line."""

from store_fixtures import detections, device, post, trust

from store.config import load_agents
from store.demo import fill_report, start_store, write_agents_file


def test_demo_round_trip(tmp_path):
    """A store started from a written agents file takes the agent's summaries, and the
    report counts them and says where the page is."""
    secret = write_agents_file(tmp_path / "agents.toml", "demo-agent", tmp_path / "a.secret")
    assert load_agents(tmp_path / "agents.toml") == {"demo-agent": secret}
    assert (tmp_path / "a.secret").stat().st_mode & 0o077 == 0

    db_url = f"sqlite:///{tmp_path}/store.db"
    server = start_store(db_url, tmp_path / "agents.toml")
    try:
        assert post(server.url, detections(agent="demo-agent"), "demo-agent", secret)[0] == 200
        low = trust(agent="demo-agent", seq=2, devices=[device("Amazon Echo", 0.005)])
        assert post(server.url, low, "demo-agent", secret)[0] == 200
    finally:
        server.stop()

    line = fill_report(db_url, tmp_path / "agents.toml", listen="127.0.0.1:8099")
    assert "1 homes, 1 device types detected, 1 trust windows, 1 alerts" in line
    assert "http://127.0.0.1:8099/" in line and f"--db {db_url}" in line
