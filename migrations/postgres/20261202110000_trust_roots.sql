-- Rotated trust roots (TUF's root chain): each a DSSE envelope signed by the publishers,
-- distributed to agents as is. Serial 1 is the root agents were provisioned with and is never
-- stored; rotations start at 2.
CREATE TABLE trust_roots (
    serial     BIGINT PRIMARY KEY,
    envelope   TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
