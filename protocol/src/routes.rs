//! Route paths shared by the server (which serves them) and clients (which call them).

/// Liveness: the process is up.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: the database answers.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The OpenAPI document of the management API.
pub const OPENAPI: &str = "/api/openapi.json";
/// Prefix of the versioned management and agent API.
pub const API_V1: &str = "/api/v1";
/// API tokens (admin only).
pub const TOKENS: &str = "/api/v1/tokens";
/// The audit log.
pub const AUDIT: &str = "/api/v1/audit";
/// Who the presented token belongs to.
pub const WHOAMI: &str = "/api/v1/whoami";
