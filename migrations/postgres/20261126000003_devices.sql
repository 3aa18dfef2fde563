-- One-time (or few-time) tokens that let a device enroll.
CREATE TABLE enrollment_tokens (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL,
    secret_hash      TEXT NOT NULL UNIQUE,
    prefix           TEXT NOT NULL,
    labels           JSONB NOT NULL,
    require_approval BOOLEAN NOT NULL,
    max_uses         INTEGER NOT NULL,
    uses             INTEGER NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    revoked_at       TIMESTAMPTZ
);

CREATE TABLE devices (
    id                  UUID PRIMARY KEY,
    name                TEXT NOT NULL,
    public_key          TEXT NOT NULL,
    credential_hash     TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL CHECK (status IN ('active', 'pending', 'revoked')),
    labels              JSONB NOT NULL,
    hardware            JSONB NOT NULL,
    agent_version       TEXT NOT NULL,
    enrollment_token_id UUID,
    enrolled_at         TIMESTAMPTZ NOT NULL,
    last_seen_at        TIMESTAMPTZ,
    -- The signed desired state last issued to the device.
    desired_sequence    BIGINT NOT NULL,
    desired_hash        TEXT,
    desired_envelope    JSONB,
    desired_expires_at  TIMESTAMPTZ,
    -- What the device last reported.
    applied_sequence    BIGINT NOT NULL,
    last_report_seq     BIGINT NOT NULL,
    slot_status         JSONB NOT NULL,
    last_health         JSONB
);

-- Which version of a model the devices matching a label selector run (without a rollout).
CREATE TABLE deployments (
    id            UUID PRIMARY KEY,
    model_id      UUID NOT NULL REFERENCES models (id),
    version       TEXT NOT NULL,
    selector      JSONB NOT NULL,
    selector_text TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (model_id, selector_text)
);

-- Every report a device sent (history).
CREATE TABLE device_reports (
    id          BIGSERIAL PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    report_seq  BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    report      JSONB NOT NULL,
    UNIQUE (device_id, report_seq)
);
