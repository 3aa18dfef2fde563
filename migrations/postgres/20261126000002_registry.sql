-- Publisher keys: public keys whose signatures count toward a version's threshold.
CREATE TABLE publisher_keys (
    key_id         TEXT PRIMARY KEY,          -- hex sha256 of the SPKI DER
    name           TEXT NOT NULL UNIQUE,
    algorithm      TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ
);

-- Server-wide settings (the global signing threshold, ...).
CREATE TABLE server_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE models (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    description       TEXT NOT NULL,
    labels            JSONB NOT NULL,
    signing_threshold INTEGER,
    created_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE model_versions (
    id              UUID PRIMARY KEY,
    model_id        UUID NOT NULL REFERENCES models (id),
    version         TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size   BIGINT NOT NULL,
    bundles         JSONB NOT NULL,   -- the exact signature bundle texts
    signers         JSONB NOT NULL,   -- [{key_id, name}]
    inputs          JSONB NOT NULL,
    outputs         JSONB NOT NULL,
    signed_facts    JSONB,
    published_by    TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    yanked_at       TIMESTAMPTZ,
    yank_reason     TEXT,
    UNIQUE (model_id, version)
);
CREATE INDEX model_versions_artifact ON model_versions (artifact_sha256);
