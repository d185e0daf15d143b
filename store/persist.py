"""Storing a batch of validated summaries in one transaction, idempotent on (agent, seq).

Rows are locked in one global order (agents, ingest log, homes, inventory, trust, gaps;
each sorted by key) so that several store processes writing to one PostgreSQL wait for
each other instead of deadlocking. The agent's row is locked first; that serializes the
sequence bookkeeping of one agent across processes.
"""

import json
from collections import defaultdict

from store.database import Database
from store.summary import Summary

VALUES_CHUNK = 400

UPSERT_AGENT = """
INSERT INTO agents (agent_id, first_seen, last_seen) VALUES (?, ?, ?)
ON CONFLICT (agent_id) DO UPDATE SET last_seen = excluded.last_seen
RETURNING max_seq"""

UPDATE_AGENT = """
UPDATE agents SET max_seq = ?, summaries = summaries + ?, model = ?, counters = ?
WHERE agent_id = ?"""

UPDATE_AGENT_COUNT = "UPDATE agents SET summaries = summaries + ? WHERE agent_id = ?"

INSERT_LOG = """
INSERT INTO ingest_log (agent_id, seq, kind, received, sent_at, model, items) VALUES {rows}
ON CONFLICT (agent_id, seq) DO NOTHING RETURNING agent_id, seq"""

UPSERT_HOME = """
INSERT INTO homes (home, agent_id, first_seen, last_seen) VALUES (?, ?, ?, ?)
ON CONFLICT (home) DO UPDATE SET agent_id = excluded.agent_id,
  first_seen = CASE WHEN excluded.first_seen < homes.first_seen
                    THEN excluded.first_seen ELSE homes.first_seen END,
  last_seen = CASE WHEN excluded.last_seen > homes.last_seen
                   THEN excluded.last_seen ELSE homes.last_seen END"""

UPSERT_INVENTORY = """
INSERT INTO inventory (home, device_type, first_seen, detected, hit_time, hit_flow,
                       agent_id, seq, model)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (home, device_type) DO UPDATE SET first_seen = excluded.first_seen,
  detected = excluded.detected, hit_time = excluded.hit_time, hit_flow = excluded.hit_flow,
  agent_id = excluded.agent_id, seq = excluded.seq, model = excluded.model
WHERE excluded.detected < inventory.detected"""

UPSERT_TRUST = """
INSERT INTO trust (home, device_type, window_start, window_end, accepted, discarded,
                   raw_trust, trust, agent_id, seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (home, device_type, window_start) DO UPDATE SET
  window_end = excluded.window_end, accepted = excluded.accepted,
  discarded = excluded.discarded, raw_trust = excluded.raw_trust, trust = excluded.trust,
  agent_id = excluded.agent_id, seq = excluded.seq"""

INSERT_GAP = "INSERT INTO seq_gaps (agent_id, first_seq, last_seq, recorded) VALUES (?, ?, ?, ?)"

GAPS_AROUND = """
SELECT first_seq, last_seq FROM seq_gaps
WHERE agent_id = ? AND first_seq <= ? AND last_seq >= ? ORDER BY first_seq"""

DELETE_GAP = "DELETE FROM seq_gaps WHERE agent_id = ? AND first_seq = ?"


def write_batch(db: Database, conn, batch: list[tuple[Summary, float]]) -> list[str]:
    """Store ``batch`` (summary, received time) in one transaction; "stored"/"duplicate"
    per item. Raises what the driver raises; the caller rolls back."""
    first_index: dict[tuple[str, int], int] = {}
    for i, (summary, _) in enumerate(batch):
        first_index.setdefault((summary.agent, summary.seq), i)
    unique = sorted(first_index.items())

    db.begin(conn)
    earliest: dict[str, float] = {}
    for summary, received in batch:
        earliest[summary.agent] = min(received, earliest.get(summary.agent, received))
    prior = {}
    for agent in sorted(earliest):
        now = earliest[agent]
        prior[agent] = conn.execute(db.sql(UPSERT_AGENT), (agent, now, now)).fetchone()[0]

    new_keys = _insert_log(db, conn, [batch[i] for _, i in unique])
    stored = [batch[i] for key, i in unique if key in new_keys]
    _store_homes(db, conn, stored)
    _store_rows(db, conn, stored)
    _update_agents(db, conn, stored, prior)
    conn.commit()

    return ["stored" if first_index[(s.agent, s.seq)] == i
            and (s.agent, s.seq) in new_keys else "duplicate"
            for i, (s, _) in enumerate(batch)]


def _insert_log(db: Database, conn, items: list[tuple[Summary, float]]) -> set:
    """Insert the ingest log rows; the (agent, seq) keys that were new."""
    new_keys = set()
    for start in range(0, len(items), VALUES_CHUNK):
        chunk = items[start:start + VALUES_CHUNK]
        params = []
        for s, received in chunk:
            items_count = len(s.events) if s.kind == "detections" else len(s.devices)
            params += [s.agent, s.seq, s.kind, received, s.sent_at, s.model, items_count]
        rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        cursor = conn.execute(db.sql(INSERT_LOG.format(rows=rows)), params)
        new_keys.update((agent, seq) for agent, seq in cursor.fetchall())
    return new_keys


def _store_homes(db: Database, conn, stored: list[tuple[Summary, float]]) -> None:
    """Create or widen the homes the stored summaries mention."""
    span: dict[str, list] = {}
    for s, _ in stored:
        if s.kind == "trust":
            seen = [(s.home, s.window_start, s.window_end)]
        else:
            seen = [(e.home, e.first_seen, e.detected) for e in s.events]
        for home, first, last in seen:
            entry = span.setdefault(home, [s.agent, first, last])
            entry[0] = s.agent
            entry[1] = min(entry[1], first)
            entry[2] = max(entry[2], last)
    if span:
        rows = [(home, *span[home]) for home in sorted(span)]
        conn.cursor().executemany(db.sql(UPSERT_HOME), rows)


def _store_rows(db: Database, conn, stored: list[tuple[Summary, float]]) -> None:
    """Inventory entries and trust rows of the stored summaries."""
    inventory, trust = [], []
    for s, _ in stored:
        for e in s.events:
            inventory.append((e.home, e.device_type, e.first_seen, e.detected, e.hit_time,
                              e.hit_flow, s.agent, s.seq, s.model))
        for d in s.devices:
            trust.append((s.home, d.device_type, s.window_start, s.window_end, d.accepted,
                          d.discarded, d.raw_trust, d.trust, s.agent, s.seq))
    if inventory:
        inventory.sort(key=lambda row: (row[0], row[1], row[3]))
        conn.cursor().executemany(db.sql(UPSERT_INVENTORY), inventory)
    if trust:
        trust.sort(key=lambda row: (row[0], row[1], row[2], row[9]))
        conn.cursor().executemany(db.sql(UPSERT_TRUST), trust)


def _update_agents(db: Database, conn, stored, prior: dict[str, int]) -> None:
    """Each agent's highest sequence number, counters, and the gaps opened or filled."""
    by_agent: dict[str, list[tuple[Summary, float]]] = defaultdict(list)
    for item in stored:
        by_agent[item[0].agent].append(item)

    for agent in sorted(by_agent):
        items = sorted(by_agent[agent], key=lambda item: item[0].seq)
        expected, received = prior[agent] + 1, items[-1][1]
        for s, _ in items:
            if s.seq < expected:
                _fill_gap(db, conn, agent, s.seq, received)
            elif s.seq > expected:
                conn.execute(db.sql(INSERT_GAP), (agent, expected, s.seq - 1, received))
            expected = max(expected, s.seq + 1)

        latest = items[-1][0]
        if latest.seq > prior[agent]:
            counters = json.dumps(latest.counters, sort_keys=True)
            conn.execute(db.sql(UPDATE_AGENT),
                         (latest.seq, len(items), latest.model, counters, agent))
        else:
            conn.execute(db.sql(UPDATE_AGENT_COUNT), (len(items), agent))


def _fill_gap(db: Database, conn, agent: str, seq: int, received: float) -> None:
    """A late summary arrived: shrink or split the recorded gap that held its number."""
    rows = conn.execute(db.sql(GAPS_AROUND), (agent, seq, seq)).fetchall()
    for first, last in rows:
        conn.execute(db.sql(DELETE_GAP), (agent, first))
        if first < seq:
            conn.execute(db.sql(INSERT_GAP), (agent, first, seq - 1, received))
        if seq < last:
            conn.execute(db.sql(INSERT_GAP), (agent, seq + 1, last, received))
