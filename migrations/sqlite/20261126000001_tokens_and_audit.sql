-- API tokens: only the sha256 of the secret is stored. UUIDs are 16-byte BLOBs, times RFC 3339 TEXT.
CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'operator', 'viewer')),
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);

-- Every call that changes (or tries to change) state.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    token_id BLOB,
    method   TEXT NOT NULL,
    route    TEXT NOT NULL,
    path     TEXT NOT NULL,
    status   INTEGER NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    detail   TEXT
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
