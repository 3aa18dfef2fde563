-- API tokens: only the sha256 of the secret is stored.
CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'operator', 'viewer')),
    secret_hash  TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Every call that changes (or tries to change) state.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    actor    TEXT NOT NULL,
    token_id UUID,
    method   TEXT NOT NULL,
    route    TEXT NOT NULL,
    path     TEXT NOT NULL,
    status   INTEGER NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    detail   JSONB
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
