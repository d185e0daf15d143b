"""What operators ask of the store: homes, their devices, trust over time, alerts, agents.

Each function takes a ``Database`` and an open connection and returns a list of plain
dicts (times as unix seconds), shared by the command line, the JSON API and the page.
"""

import json
import math
from datetime import UTC, datetime

from store.database import Database

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
#: Trust below this is an alert: raw trust more than three sigma from 1, the level the
#: evaluation report flags at (compile/evaluate.py says why).
DEFAULT_ALERT_LEVEL = math.exp(-(3.0**2) / 2)
#: Two windows in three with raw trust under 1 and trust below this (two sigma) are an
#: alert too: a sustained drop; 0 turns this off.
DEFAULT_RUN_LEVEL = math.exp(-(2.0**2) / 2)

LATEST_TRUST = """
SELECT t.trust FROM trust t WHERE t.home = i.home AND t.device_type = i.device_type
ORDER BY t.window_start DESC LIMIT 1"""

LATEST_WINDOW = """
SELECT t.window_end FROM trust t WHERE t.home = i.home AND t.device_type = i.device_type
ORDER BY t.window_start DESC LIMIT 1"""

# Each window of a home's device type is flagged, as the evaluation report flags them
# (compile/baselines.py, ``flags``): trust below the level, or raw trust under 1 and trust
# below the run level in it and in one of the two windows before it. An alert is a device
# type whose latest window is flagged; ``since`` opens the latest unbroken run of flags.
ALERTS = """
WITH marked AS (
  SELECT home, device_type, window_start, window_end, trust,
    CASE WHEN raw_trust < 1.0 AND trust < ? THEN 1 ELSE 0 END AS low
  FROM trust WHERE {filters}),
runs AS (
  SELECT home, device_type, window_start, window_end, trust,
    CASE WHEN trust < ? OR (low = 1 AND
      LAG(low, 1, 0) OVER (PARTITION BY home, device_type ORDER BY window_start)
      + LAG(low, 2, 0) OVER (PARTITION BY home, device_type ORDER BY window_start) >= 1)
    THEN 1 ELSE 0 END AS flagged
  FROM marked),
latest AS (
  SELECT home, device_type, MAX(window_start) AS window_start FROM runs
  GROUP BY home, device_type),
last_good AS (
  SELECT home, device_type, MAX(window_start) AS window_start FROM runs
  WHERE flagged = 0 GROUP BY home, device_type)
SELECT r.home, r.device_type, r.trust, r.window_start, r.window_end,
  (SELECT MIN(b.window_start) FROM runs b
   WHERE b.home = r.home AND b.device_type = r.device_type AND b.flagged = 1
     AND b.window_start > COALESCE(g.window_start, -1.0)) AS since
FROM latest l
JOIN runs r ON r.home = l.home AND r.device_type = l.device_type
  AND r.window_start = l.window_start
LEFT JOIN last_good g ON g.home = l.home AND g.device_type = l.device_type
WHERE r.flagged = 1
ORDER BY since, r.home, r.device_type
LIMIT ?"""


def parse_time(text: str) -> float:
    """Unix seconds from a number or an ISO 8601 date/time (UTC when no zone is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: not unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _where(filters: list[tuple[str, object]]) -> tuple[str, list]:
    """A WHERE body and its parameters from (condition, value) pairs, skipping None."""
    used = [(cond, value) for cond, value in filters if value is not None]
    if not used:
        return "1 = 1", []
    return " AND ".join(cond for cond, _ in used), [value for _, value in used]


def _rows(cursor) -> list[dict]:
    """Rows of a cursor as dicts keyed by column name."""
    names = [col[0] for col in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def homes(
    db: Database,
    conn,
    *,
    home: str | None = None,
    since: float | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict]:
    """Homes with the agent that last reported them and how many device types they hold."""
    where, params = _where([("h.home = ?", home), ("h.last_seen >= ?", since)])
    sql = f"""
        SELECT h.home, h.agent_id AS agent, h.first_seen, h.last_seen,
               COUNT(i.device_type) AS devices
        FROM homes h LEFT JOIN inventory i ON i.home = h.home
        WHERE {where}
        GROUP BY h.home, h.agent_id, h.first_seen, h.last_seen
        ORDER BY h.home LIMIT ?"""
    return _rows(conn.execute(db.sql(sql), [*params, _limit(limit)]))


def devices(
    db: Database,
    conn,
    *,
    home: str | None = None,
    device_type: str | None = None,
    since: float | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict]:
    """Inventory entries (detection, hit-time, hit-flow) with each one's latest trust."""
    where, params = _where(
        [("i.home = ?", home), ("i.device_type = ?", device_type), ("i.detected >= ?", since)]
    )
    sql = f"""
        SELECT i.home, i.device_type, i.first_seen, i.detected, i.hit_time, i.hit_flow,
               i.agent_id AS agent, i.model, ({LATEST_TRUST}) AS trust,
               ({LATEST_WINDOW}) AS trust_window_end
        FROM inventory i WHERE {where}
        ORDER BY i.home, i.device_type LIMIT ?"""
    return _rows(conn.execute(db.sql(sql), [*params, _limit(limit)]))


def trust(
    db: Database,
    conn,
    *,
    home: str | None = None,
    device_type: str | None = None,
    since: float | None = None,
    limit: int = DEFAULT_LIMIT * 10,
) -> list[dict]:
    """Trust per window, oldest first within each home and device type."""
    where, params = _where(
        [("home = ?", home), ("device_type = ?", device_type), ("window_start >= ?", since)]
    )
    sql = f"""
        SELECT home, device_type, window_start, window_end, accepted, discarded,
               raw_trust, trust, agent_id AS agent
        FROM trust WHERE {where}
        ORDER BY home, device_type, window_start LIMIT ?"""
    return _rows(conn.execute(db.sql(sql), [*params, _limit(limit)]))


def alerts(
    db: Database,
    conn,
    *,
    level: float = DEFAULT_ALERT_LEVEL,
    run_level: float = DEFAULT_RUN_LEVEL,
    home: str | None = None,
    device_type: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict]:
    """Device types whose latest window is flagged (trust below ``level``, or the second
    low window in three under ``run_level``), with the window since which every window
    has been flagged."""
    where, params = _where([("home = ?", home), ("device_type = ?", device_type)])
    sql = ALERTS.format(filters=where)
    args = [run_level, *params, level, _limit(limit)]
    return _rows(conn.execute(db.sql(sql), args))


def agents(db: Database, conn) -> list[dict]:
    """Agents with their last sequence number, counters and the sequence gaps recorded."""
    rows = _rows(
        conn.execute(
            "SELECT agent_id AS agent, first_seen, last_seen, max_seq, summaries, model, counters"
            " FROM agents ORDER BY agent_id"
        )
    )
    gaps: dict[str, list] = {}
    for agent, first, last in conn.execute(
        "SELECT agent_id, first_seq, last_seq FROM seq_gaps ORDER BY agent_id, first_seq"
    ):
        gaps.setdefault(agent, []).append([first, last])
    for row in rows:
        row["counters"] = json.loads(row["counters"])
        row["gaps"] = gaps.get(row["agent"], [])
        row["missing"] = sum(last - first + 1 for first, last in row["gaps"])
    return rows


def _limit(limit: int) -> int:
    """A row limit clamped to 1..MAX_LIMIT."""
    return max(1, min(int(limit), MAX_LIMIT))
