-- SQLite twin: a deployment's hybrid inference policy (EscalationPolicy JSON), if any.
ALTER TABLE deployments ADD COLUMN escalation TEXT;
