-- The `inference` role: tokens that may only run inference on the server's models and read
-- model metadata. SQLite cannot alter a CHECK constraint, so the table is rebuilt (nothing
-- references it, and the migration runs in one transaction).
CREATE TABLE api_tokens_new (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'operator', 'viewer', 'inference')),
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);
INSERT INTO api_tokens_new (id, name, role, secret_hash, prefix, created_at, expires_at, revoked_at, last_used_at)
    SELECT id, name, role, secret_hash, prefix, created_at, expires_at, revoked_at, last_used_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
