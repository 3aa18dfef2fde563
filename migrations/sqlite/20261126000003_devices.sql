-- SQLite twin of the Postgres migration: UUIDs are BLOBs, times RFC 3339 TEXT, JSON TEXT.
-- One-time (or few-time) tokens that let a device enroll.
CREATE TABLE enrollment_tokens (
    id               BLOB PRIMARY KEY,
    name             TEXT NOT NULL,
    secret_hash      TEXT NOT NULL UNIQUE,
    prefix           TEXT NOT NULL,
    labels           TEXT NOT NULL,
    require_approval INTEGER NOT NULL,
    max_uses         INTEGER NOT NULL,
    uses             INTEGER NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    revoked_at       TEXT
);

CREATE TABLE devices (
    id                  BLOB PRIMARY KEY,
    name                TEXT NOT NULL,
    public_key          TEXT NOT NULL,
    credential_hash     TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL CHECK (status IN ('active', 'pending', 'revoked')),
    labels              TEXT NOT NULL,
    hardware            TEXT NOT NULL,
    agent_version       TEXT NOT NULL,
    enrollment_token_id BLOB,
    enrolled_at         TEXT NOT NULL,
    last_seen_at        TEXT,
    -- The signed desired state last issued to the device.
    desired_sequence    INTEGER NOT NULL,
    desired_hash        TEXT,
    desired_envelope    TEXT,
    desired_expires_at  TEXT,
    -- What the device last reported.
    applied_sequence    INTEGER NOT NULL,
    last_report_seq     INTEGER NOT NULL,
    slot_status         TEXT NOT NULL,
    last_health         TEXT
);

-- Which version of a model the devices matching a label selector run (without a rollout).
CREATE TABLE deployments (
    id            BLOB PRIMARY KEY,
    model_id      BLOB NOT NULL REFERENCES models (id),
    version       TEXT NOT NULL,
    selector      TEXT NOT NULL,
    selector_text TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (model_id, selector_text)
);

-- Every report a device sent (history).
CREATE TABLE device_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   BLOB NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    report_seq  INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    report      TEXT NOT NULL,
    UNIQUE (device_id, report_seq)
);
