-- Label keys a device may set itself at enrollment (a JSON array; empty: none).
ALTER TABLE enrollment_tokens ADD COLUMN allowed_device_labels JSONB NOT NULL DEFAULT '[]';

-- Credential rotation: the credential issued but not used yet (the old one stays valid until
-- the device first presents this one), and an operator's request that the device rotate.
ALTER TABLE devices ADD COLUMN next_credential_hash TEXT;
ALTER TABLE devices ADD COLUMN credential_rotation_requested_at TIMESTAMPTZ;
CREATE UNIQUE INDEX devices_next_credential_hash ON devices (next_credential_hash);
