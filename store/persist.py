"""Storing a batch of validated summaries in one transaction, idempotent on (agent, seq).

Rows are locked in one global order (agents, ingest log, homes, inventory, trust, gaps;
each sorted by key) so that several store processes writing to one PostgreSQL wait for
each other instead of deadlocking. The agent's row is locked first; that serializes the
sequence bookkeeping of one agent across processes.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from store.database import Database
from store.summary import Summary

MAX_PARAMS = 30_000


@dataclass(frozen=True)
class Insert:
    """A multi-row INSERT: the table, its columns with PostgreSQL types, and what follows
    the rows (ON CONFLICT ..., RETURNING ...). SQLite gets one VALUES list; PostgreSQL
    gets one array per column and ``unnest``, so the statement text stays the same
    whatever the number of rows."""

    table: str
    columns: tuple[tuple[str, str], ...]
    tail: str

    def sqlite(self, n_rows: int) -> str:
        row = "(" + ", ".join(["?"] * len(self.columns)) + ")"
        names = ", ".join(name for name, _ in self.columns)
        return f"INSERT INTO {self.table} ({names}) VALUES {', '.join([row] * n_rows)} {self.tail}"

    @cached_property
    def postgresql(self) -> str:
        names = ", ".join(name for name, _ in self.columns)
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in self.columns)
        return f"INSERT INTO {self.table} ({names}) SELECT * FROM unnest({arrays}) {self.tail}"


UPSERT_AGENTS = Insert(
    "agents",
    (("agent_id", "text"), ("first_seen", "float8"), ("last_seen", "float8")),
    """
ON CONFLICT (agent_id) DO UPDATE SET last_seen = excluded.last_seen
RETURNING agent_id, max_seq""",
)

UPDATE_AGENT = """
UPDATE agents SET max_seq = ?, summaries = summaries + ?, model = COALESCE(?, model),
  counters = COALESCE(?, counters)
WHERE agent_id = ?"""

UPDATE_AGENTS_PG = """
UPDATE agents a SET max_seq = u.max_seq, summaries = a.summaries + u.n,
  model = COALESCE(u.model, a.model), counters = COALESCE(u.counters, a.counters)
FROM unnest(%b::int8[], %b::int8[], %b::text[], %b::text[], %b::text[])
  AS u(max_seq, n, model, counters, agent_id)
WHERE a.agent_id = u.agent_id"""

INSERT_LOG = Insert(
    "ingest_log",
    (
        ("agent_id", "text"),
        ("seq", "int8"),
        ("kind", "text"),
        ("received", "float8"),
        ("sent_at", "float8"),
        ("model", "text"),
        ("items", "int4"),
    ),
    """
ON CONFLICT (agent_id, seq) DO NOTHING RETURNING agent_id, seq""",
)

UPSERT_HOMES = Insert(
    "homes",
    (("home", "text"), ("agent_id", "text"), ("first_seen", "float8"), ("last_seen", "float8")),
    """
ON CONFLICT (home) DO UPDATE SET agent_id = excluded.agent_id,
  first_seen = CASE WHEN excluded.first_seen < homes.first_seen
                    THEN excluded.first_seen ELSE homes.first_seen END,
  last_seen = CASE WHEN excluded.last_seen > homes.last_seen
                   THEN excluded.last_seen ELSE homes.last_seen END""",
)

UPSERT_INVENTORY = Insert(
    "inventory",
    (
        ("home", "text"),
        ("device_type", "text"),
        ("first_seen", "float8"),
        ("detected", "float8"),
        ("hit_time", "float8"),
        ("hit_flow", "int8"),
        ("agent_id", "text"),
        ("seq", "int8"),
        ("model", "text"),
    ),
    """
ON CONFLICT (home, device_type) DO UPDATE SET first_seen = excluded.first_seen,
  detected = excluded.detected, hit_time = excluded.hit_time, hit_flow = excluded.hit_flow,
  agent_id = excluded.agent_id, seq = excluded.seq, model = excluded.model
WHERE excluded.detected < inventory.detected""",
)

UPSERT_TRUST = Insert(
    "trust",
    (
        ("home", "text"),
        ("device_type", "text"),
        ("window_start", "float8"),
        ("window_end", "float8"),
        ("accepted", "int8"),
        ("discarded", "int8"),
        ("raw_trust", "float8"),
        ("trust", "float8"),
        ("agent_id", "text"),
        ("seq", "int8"),
    ),
    """
ON CONFLICT (home, device_type, window_start) DO UPDATE SET
  window_end = excluded.window_end, accepted = excluded.accepted,
  discarded = excluded.discarded, raw_trust = excluded.raw_trust, trust = excluded.trust,
  agent_id = excluded.agent_id, seq = excluded.seq""",
)

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

    earliest: dict[str, float] = {}
    for summary, received in batch:
        earliest[summary.agent] = min(received, earliest.get(summary.agent, received))
    with db.pipeline(conn):
        db.begin(conn)
        agent_rows = [(agent, earliest[agent], earliest[agent]) for agent in sorted(earliest)]
        agents_sent = _insert(db, conn, UPSERT_AGENTS, agent_rows)

        log_rows = []
        for _, i in unique:
            s, received = batch[i]
            items = len(s.events) if s.kind == "detections" else len(s.devices)
            log_rows.append((s.agent, s.seq, s.kind, received, s.sent_at, s.model, items))
        log_sent = _insert(db, conn, INSERT_LOG, log_rows)
        prior = dict(_fetch(agents_sent))
        new_keys = set(_fetch(log_sent))

        stored = [batch[i] for key, i in unique if key in new_keys]
        _store_homes(db, conn, stored)
        _store_rows(db, conn, stored)
        _update_agents(db, conn, stored, prior)
        conn.commit()

    return [
        "stored"
        if first_index[(s.agent, s.seq)] == i and (s.agent, s.seq) in new_keys
        else "duplicate"
        for i, (s, _) in enumerate(batch)
    ]


def _insert(db: Database, conn, insert: Insert, rows: list[tuple]) -> list:
    """Send ``rows`` in as few statements as the dialect allows; the cursors, whose
    returned rows ``_fetch`` collects (in pipeline mode, after all are sent)."""
    if not rows:
        return []
    if db.dialect == "postgresql":
        return [conn.execute(insert.postgresql, [list(column) for column in zip(*rows)])]

    cursors = []
    chunk = max(1, MAX_PARAMS // len(insert.columns))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        cursors.append(conn.execute(insert.sqlite(len(part)), [v for row in part for v in row]))
    return cursors


def _fetch(cursors: list) -> list[tuple]:
    """The rows the statements behind ``cursors`` returned."""
    return [row for cursor in cursors for row in cursor.fetchall()]


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
    _insert(db, conn, UPSERT_HOMES, [(home, *span[home]) for home in sorted(span)])


def _store_rows(db: Database, conn, stored: list[tuple[Summary, float]]) -> None:
    """Inventory entries (the earliest detection per key wins) and trust rows (the highest
    sequence number per window wins) of the stored summaries."""
    inventory: dict[tuple, tuple] = {}
    trust: dict[tuple, tuple] = {}
    for s, _ in stored:
        for e in s.events:
            key = (e.home, e.device_type)
            if key not in inventory or e.detected < inventory[key][3]:
                inventory[key] = (
                    e.home,
                    e.device_type,
                    e.first_seen,
                    e.detected,
                    e.hit_time,
                    e.hit_flow,
                    s.agent,
                    s.seq,
                    s.model,
                )
        for d in s.devices:
            key = (s.home, d.device_type, s.window_start)
            if key not in trust or s.seq > trust[key][9]:
                trust[key] = (
                    s.home,
                    d.device_type,
                    s.window_start,
                    s.window_end,
                    d.accepted,
                    d.discarded,
                    d.raw_trust,
                    d.trust,
                    s.agent,
                    s.seq,
                )
    _insert(db, conn, UPSERT_INVENTORY, [inventory[key] for key in sorted(inventory)])
    _insert(db, conn, UPSERT_TRUST, [trust[key] for key in sorted(trust)])


def _update_agents(db: Database, conn, stored, prior: dict[str, int]) -> None:
    """Each agent's highest sequence number, counters, and the gaps opened or filled."""
    by_agent: dict[str, list[tuple[Summary, float]]] = defaultdict(list)
    for item in stored:
        by_agent[item[0].agent].append(item)

    updates, gaps = [], []
    for agent in sorted(by_agent):
        items = sorted(by_agent[agent], key=lambda item: item[0].seq)
        expected, received = prior[agent] + 1, items[-1][1]
        for s, _ in items:
            if s.seq < expected:
                _fill_gap(db, conn, agent, s.seq, received)
            elif s.seq > expected:
                gaps.append((agent, expected, s.seq - 1, received))
            expected = max(expected, s.seq + 1)

        latest = max(items[-1][0].seq, prior[agent])
        newest = items[-1][0] if items[-1][0].seq > prior[agent] else None
        model = newest.model if newest else None
        counters = json.dumps(newest.counters, sort_keys=True) if newest else None
        updates.append((latest, len(items), model, counters, agent))
    if gaps:
        conn.cursor().executemany(db.sql(INSERT_GAP), gaps)
    if updates and db.dialect == "postgresql":
        conn.execute(UPDATE_AGENTS_PG, [list(column) for column in zip(*updates)])
    elif updates:
        conn.cursor().executemany(UPDATE_AGENT, updates)


def _fill_gap(db: Database, conn, agent: str, seq: int, received: float) -> None:
    """A late summary arrived: shrink or split the recorded gap that held its number."""
    rows = conn.execute(db.sql(GAPS_AROUND), (agent, seq, seq)).fetchall()
    for first, last in rows:
        conn.execute(db.sql(DELETE_GAP), (agent, first))
        if first < seq:
            conn.execute(db.sql(INSERT_GAP), (agent, first, seq - 1, received))
        if seq < last:
            conn.execute(db.sql(INSERT_GAP), (agent, seq + 1, last, received))
