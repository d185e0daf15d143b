"""The agent's own summary encoder and HTTP sender against the store: the wire format of
docs/interfaces.md section 6 as both sides implement it."""

from store_fixtures import count_rows

from agent.metrics import Metrics
from agent.summaries import Summaries
from agent.upstream import HttpTarget
from store.demo import start_store, write_agents_file

T0 = 1_584_316_800.0


def test_agent_summaries_are_stored(tmp_path):
    """Summaries built and signed by the agent's code are stored, and a resend is a
    duplicate."""
    types = tmp_path / "types.txt"
    types.write_text("Amazon Echo\nTP-Link plug\n")
    write_agents_file(tmp_path / "agents.toml", "bng-07", tmp_path / "agent.secret")
    db_url = f"sqlite:///{tmp_path}/store.db"

    sent = []
    metrics = Metrics()
    metrics.inc("records_in", 42)
    summaries = Summaries("bng-07", "abc123", metrics, sent.extend)
    event = {
        "home": "9f2c",
        "device_type": "Amazon Echo",
        "first_seen": T0,
        "detected": T0 + 12.5,
        "hit_time": 12.5,
        "hit_flow": 3,
    }
    summaries.add_events([event])
    summaries.flush_detections()
    device = {
        "device_type": "Amazon Echo",
        "accepted": 30,
        "discarded": 2,
        "raw_trust": 0.9,
        "trust": 0.97,
    }
    summaries.emit_trust([("9f2c", {"start": T0, "end": T0 + 3600.0}, [device])])

    server = start_store(db_url, tmp_path / "agents.toml", bundle=types)
    try:
        secret = (tmp_path / "agent.secret").read_bytes().strip()
        target = HttpTarget(server.url, "bng-07", secret, 5.0)
        answers = [target.send(payload) for _, payload, _ in sent]
        answers.append(target.send(sent[0][1]))
        target.close()
    finally:
        server.stop()

    assert [status for status, _ in answers] == [200, 200, 200]
    assert answers[-1][1] == b'{"status": "duplicate"}'
    assert count_rows(db_url, "inventory") == 1
    assert count_rows(db_url, "trust") == 1
