-- The `inference` role: tokens that may only run inference on the server's models and read
-- model metadata. The original CHECK constraint got Postgres's default name.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'publisher', 'operator', 'viewer', 'inference'));
