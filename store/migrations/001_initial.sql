-- The first schema: one portable set of statements for SQLite and PostgreSQL.
-- Times are unix seconds (double precision); counters are JSON text.
-- No foreign keys: every row of a summary is written by one code path in one
-- transaction (store/persist.py), and a key check per inserted row halves ingest speed.

CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    max_seq BIGINT NOT NULL DEFAULT 0,
    summaries BIGINT NOT NULL DEFAULT 0,
    model TEXT NOT NULL DEFAULT '',
    counters TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE homes (
    home TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL
);

CREATE TABLE inventory (
    home TEXT NOT NULL,
    device_type TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    detected DOUBLE PRECISION NOT NULL,
    hit_time DOUBLE PRECISION NOT NULL,
    hit_flow BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    model TEXT NOT NULL,
    PRIMARY KEY (home, device_type)
);

CREATE INDEX inventory_by_device_type ON inventory (device_type, detected);

CREATE TABLE trust (
    home TEXT NOT NULL,
    device_type TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    window_end DOUBLE PRECISION NOT NULL,
    accepted BIGINT NOT NULL,
    discarded BIGINT NOT NULL,
    raw_trust DOUBLE PRECISION NOT NULL,
    trust DOUBLE PRECISION NOT NULL,
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (home, device_type, window_start)
);

CREATE INDEX trust_by_device_type ON trust (device_type, window_start);

CREATE TABLE ingest_log (
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    model TEXT NOT NULL,
    items INTEGER NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

CREATE TABLE seq_gaps (
    agent_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    recorded DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (agent_id, first_seq)
);
