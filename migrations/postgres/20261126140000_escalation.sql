-- Hybrid inference: a deployment may send hard inputs to a server model (EscalationPolicy JSON).
ALTER TABLE deployments ADD COLUMN escalation JSONB;
