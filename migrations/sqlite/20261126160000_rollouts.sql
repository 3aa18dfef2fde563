-- SQLite twin of the Postgres migration: UUIDs are BLOBs, times RFC 3339 TEXT, JSON TEXT.
CREATE TABLE rollouts (
    id               BLOB PRIMARY KEY,
    model_id         BLOB NOT NULL REFERENCES models (id),
    version          TEXT NOT NULL,
    selector         TEXT NOT NULL,
    selector_text    TEXT NOT NULL,
    policy           TEXT NOT NULL,
    policy_name      TEXT,
    state            TEXT NOT NULL CHECK (state IN ('running', 'waiting_approval', 'paused', 'completed', 'rolled_back', 'aborted')),
    stage            INTEGER NOT NULL,
    bucket_limit     INTEGER NOT NULL,
    shadow           INTEGER NOT NULL,
    stage_started_at TEXT NOT NULL,
    revision         INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX rollouts_state ON rollouts (state);

CREATE TABLE rollout_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id BLOB NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    event      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    stage      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    numbers    TEXT NOT NULL
);
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);

CREATE TABLE rollout_policies (
    name       TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE webhooks (
    id         BLOB PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX device_reports_received ON device_reports (received_at);
