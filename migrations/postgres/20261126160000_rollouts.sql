-- Staged, health-gated rollouts (docs/rollouts.md). A rollout overlays the deployments: devices
-- of its selector whose bucket is below `bucket_limit` run `version` (or carry it in shadow).
CREATE TABLE rollouts (
    id               UUID PRIMARY KEY,
    model_id         UUID NOT NULL REFERENCES models (id),
    version          TEXT NOT NULL,
    selector         JSONB NOT NULL,
    selector_text    TEXT NOT NULL,
    policy           JSONB NOT NULL,
    policy_name      TEXT,
    state            TEXT NOT NULL CHECK (state IN ('running', 'waiting_approval', 'paused', 'completed', 'rolled_back', 'aborted')),
    stage            INTEGER NOT NULL,
    bucket_limit     INTEGER NOT NULL,
    shadow           BOOLEAN NOT NULL,
    stage_started_at TIMESTAMPTZ NOT NULL,
    revision         BIGINT NOT NULL,
    reason           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX rollouts_state ON rollouts (state);

-- Every transition of a rollout, with its reason and the numbers behind it.
CREATE TABLE rollout_events (
    id         BIGSERIAL PRIMARY KEY,
    rollout_id UUID NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    event      TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    stage      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    numbers    JSONB NOT NULL
);
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);

-- Rollout policies saved for reuse by name.
CREATE TABLE rollout_policies (
    name       TEXT PRIMARY KEY,
    policy     JSONB NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- URLs that receive rollout transitions, signed with HMAC-SHA256 of their secret.
CREATE TABLE webhooks (
    id         UUID PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX device_reports_received ON device_reports (received_at);
