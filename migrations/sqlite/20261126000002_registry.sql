-- SQLite twin of the Postgres migration: UUIDs are BLOBs, times RFC 3339 TEXT, JSON TEXT.
-- Publisher keys: public keys whose signatures count toward a version's threshold.
CREATE TABLE publisher_keys (
    key_id         TEXT PRIMARY KEY,          -- hex sha256 of the SPKI DER
    name           TEXT NOT NULL UNIQUE,
    algorithm      TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);

-- Server-wide settings (the global signing threshold, ...).
CREATE TABLE server_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE models (
    id                BLOB PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    description       TEXT NOT NULL,
    labels            TEXT NOT NULL,
    signing_threshold INTEGER,
    created_at        TEXT NOT NULL
);

CREATE TABLE model_versions (
    id              BLOB PRIMARY KEY,
    model_id        BLOB NOT NULL REFERENCES models (id),
    version         TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    artifact_size   INTEGER NOT NULL,
    bundles         TEXT NOT NULL,   -- the exact signature bundle texts
    signers         TEXT NOT NULL,   -- [{key_id, name}]
    inputs          TEXT NOT NULL,
    outputs         TEXT NOT NULL,
    signed_facts    TEXT,
    published_by    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    yanked_at       TEXT,
    yank_reason     TEXT,
    UNIQUE (model_id, version)
);
CREATE INDEX model_versions_artifact ON model_versions (artifact_sha256);
